// The BPE model of a Hugging Face tokenizer.json: a vocabulary and merges applied by rank to one pre-token at a time.
#ifndef ALIGND_COMMON_TEXT_BPE_MODEL_H_
#define ALIGND_COMMON_TEXT_BPE_MODEL_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"

namespace alignd {
namespace bpe {

// Ids above this are rejected: the id -> token table is a dense vector.
inline constexpr int32_t kMaxTokenId = (1 << 24) - 1;

class BpeModel {
 public:
  struct Options {
    // Llama-3's `ignore_merges`: a pre-token that is itself in the vocab is emitted as that one id. Default false.
    bool ignore_merges = false;
    // Id emitted for a character that is not in the vocab; without one such characters are dropped (as HF does).
    // Byte-level vocabularies hold all 256 byte characters, so neither happens there. Default none.
    std::optional<int32_t> unk_id;
    // Consecutive unknown characters give one unk id. Default false.
    bool fuse_unk = false;
  };

  // `vocab` maps token strings to ids in [0, kMaxTokenId]; `merges` are (left, right) pairs, highest priority first.
  // INVALID_ARGUMENT when an id is out of range or a merge names a token (or a merged token) missing from the vocab;
  // the message names the merge by its index, e.g. `merges[17]: "ab" is not in the vocab`.
  static absl::StatusOr<std::unique_ptr<BpeModel>> Create(
      absl::flat_hash_map<std::string, int32_t> vocab, const std::vector<std::pair<std::string, std::string>>& merges,
      const Options& options);

  // Appends the ids of one pre-token, given in the vocab's spelling (byte-level characters). Thread-safe: results
  // for short pre-tokens are cached behind a sharded mutex.
  void Tokenize(absl::string_view word, std::vector<int32_t>* ids) const;

  // The id of a vocab token (in byte-level spelling), or nullopt. Added tokens are the tokenizer's, not the model's.
  std::optional<int32_t> TokenToId(absl::string_view token) const;
  // nullptr when no token has `id`.
  const std::string* IdToToken(int32_t id) const;
  // Largest id in the vocab plus one (0 for an empty vocab).
  int32_t id_limit() const { return id_limit_; }

 private:
  struct CacheShard {
    absl::Mutex mu;
    absl::flat_hash_map<std::string, std::vector<int32_t>> entries ABSL_GUARDED_BY(mu);
  };
  static constexpr int kCacheShards = 16;
  static constexpr size_t kMaxCachedEntriesPerShard = 8192;
  static constexpr size_t kMaxCachedWordBytes = 256;

  BpeModel() = default;
  void Merge(absl::string_view word, std::vector<int32_t>* ids) const;

  absl::flat_hash_map<std::string, int32_t> vocab_;
  // A map, not a table indexed by id: ids may be sparse, and a vocab of one token with id 2^24 - 1 must not cost a
  // table of 2^24 strings (512 MiB).
  absl::flat_hash_map<int32_t, std::string> id_to_token_;
  int32_t id_limit_ = 0;
  // (left id << 32 | right id) -> (rank, merged id).
  absl::flat_hash_map<uint64_t, std::pair<int32_t, int32_t>> merges_;
  Options options_;
  mutable CacheShard cache_[kCacheShards];
};

}  // namespace bpe
}  // namespace alignd

#endif  // ALIGND_COMMON_TEXT_BPE_MODEL_H_
