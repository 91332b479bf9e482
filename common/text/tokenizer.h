// Tokenizers. One implementation covers both kinds alignd needs:
//  - Hugging Face `tokenizer.json` byte-level BPE (GPT-2, Llama-3, Qwen2 style): pre-tokenizer regex (run with PCRE2,
//    so the exact pattern from the file is used), byte-to-unicode mapping, merges by rank, added and special tokens.
//  - the built-in byte-level tokenizer for tiny models alignd initialises itself: the same byte-level BPE with 256 byte
//    tokens, no merges, and alignd's special tokens. It is saved as a `tokenizer.json` too, so a model folder is
//    self-contained and other tools load it.
// Tokenizer objects are immutable after construction and safe to use from several threads.
#ifndef ALIGND_COMMON_TEXT_TOKENIZER_H_
#define ALIGND_COMMON_TEXT_TOKENIZER_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace alignd {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  // Splits `text` into ids. Added/special tokens that appear literally in `text` map to their ids (as HF does).
  // With `add_special_tokens`, the BOS token is prepended when the tokenizer has one and is configured to add it.
  virtual std::vector<int32_t> Encode(absl::string_view text, bool add_special_tokens = false) const = 0;
  // Joins ids back into text. Invalid UTF-8 from partial byte sequences is kept as bytes. Unknown ids are skipped.
  virtual std::string Decode(const std::vector<int32_t>& ids, bool skip_special_tokens = false) const = 0;

  // Number of ids, including added tokens (max id + 1).
  virtual int32_t vocab_size() const = 0;
  // Id of a token string (regular or added), or nullopt.
  virtual std::optional<int32_t> TokenToId(absl::string_view token) const = 0;
  // The token string of `id` (an added token's content, else the vocab's spelling), or nullopt for an unknown id.
  virtual std::optional<std::string> IdToToken(int32_t id) const = 0;

  // The special tokens' ids, from tokenizer_config.json (BOS also from the post-processor's template); nullopt when
  // the tokenizer has none.
  std::optional<int32_t> bos_id() const { return bos_id_; }
  std::optional<int32_t> eos_id() const { return eos_id_; }
  std::optional<int32_t> pad_id() const { return pad_id_; }

  // Writes `tokenizer.json` and `tokenizer_config.json` (the files it was loaded from, as read; else one with the
  // bos/eos/pad token strings) into `dir`, made when missing, in the layout Hugging Face tokenizers read. Each file is
  // replaced atomically, the pair is not; errors are those of MakeDirs and WriteFileAtomic.
  virtual absl::Status Save(const std::string& dir) const = 0;

 protected:
  std::optional<int32_t> bos_id_, eos_id_, pad_id_;
};

// Loads `tokenizer.json` (and, when present, `tokenizer_config.json` for bos/eos/pad tokens) from `dir`.
// INVALID_ARGUMENT naming the file and field for unsupported or malformed files (e.g. a model type other than BPE,
// or a pre-tokenizer that is not ByteLevel/Split-with-regex), or a special token missing from the vocabulary;
// ReadFile's error (NOT_FOUND, ...) when tokenizer.json is missing or a file cannot be read.
absl::StatusOr<std::unique_ptr<Tokenizer>> LoadTokenizer(const std::string& dir);

// Loads a tokenizer.json given as a string (tokenizer_config.json contents optional, may be empty). INVALID_ARGUMENT
// as LoadTokenizer's.
absl::StatusOr<std::unique_ptr<Tokenizer>> TokenizerFromJson(absl::string_view tokenizer_json,
                                                             absl::string_view tokenizer_config_json = "");

// The built-in byte-level tokenizer: ids 0..255 are the bytes (in GPT-2's byte-to-unicode spelling), followed by the
// special tokens kBytePad, kByteBos, kByteEos, kByteImStart, kByteImEnd in that order (vocab size 261).
inline constexpr absl::string_view kBytePad = "<|pad|>";
inline constexpr absl::string_view kByteBos = "<|begin_of_text|>";
inline constexpr absl::string_view kByteEos = "<|end_of_text|>";
inline constexpr absl::string_view kByteImStart = "<|im_start|>";
inline constexpr absl::string_view kByteImEnd = "<|im_end|>";
// A new byte-level tokenizer; it adds BOS with add_special_tokens and cannot fail.
std::unique_ptr<Tokenizer> MakeByteTokenizer();

}  // namespace alignd

#endif  // ALIGND_COMMON_TEXT_TOKENIZER_H_
