#include "common/text/bpe/model.h"

#include <functional>
#include <queue>

#include "absl/hash/hash.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/text/bpe/bytes.h"

namespace alignd {
namespace bpe {
namespace {

uint64_t PairKey(int32_t left, int32_t right) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) | static_cast<uint32_t>(right);
}

}  // namespace

absl::StatusOr<std::unique_ptr<BpeModel>> BpeModel::Create(
    absl::flat_hash_map<std::string, int32_t> vocab, const std::vector<std::pair<std::string, std::string>>& merges,
    const Options& options) {
  std::unique_ptr<BpeModel> model(new BpeModel());
  int32_t limit = 0;
  for (const auto& [token, id] : vocab) {
    if (id < 0 || id > kMaxTokenId) {
      return absl::InvalidArgumentError(
          absl::StrCat("vocab: id ", id, " of \"", token, "\" is out of range [0, ", kMaxTokenId, "]"));
    }
    limit = std::max(limit, id + 1);
  }
  model->id_limit_ = limit;
  model->id_to_token_.reserve(vocab.size());
  for (const auto& [token, id] : vocab) {
    // Two tokens with one id: keep the smaller string so that the choice does not depend on hash order.
    auto [it, inserted] = model->id_to_token_.try_emplace(id, token);
    if (!inserted && token < it->second) it->second = token;
  }
  model->vocab_ = std::move(vocab);
  model->merges_.reserve(merges.size());
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const auto& [left, right] = merges[rank];
    const std::string merged = absl::StrCat(left, right);
    for (const std::string* token : {&left, &right, &merged}) {
      if (!model->vocab_.contains(*token)) {
        return absl::InvalidArgumentError(absl::StrCat("merges[", rank, "]: \"", *token, "\" is not in the vocab"));
      }
    }
    // A repeated merge keeps its first (highest-priority) rank.
    model->merges_.try_emplace(PairKey(model->vocab_.at(left), model->vocab_.at(right)), static_cast<int32_t>(rank),
                               model->vocab_.at(merged));
  }
  if (options.unk_id &&
      (*options.unk_id < 0 || *options.unk_id >= limit || !model->id_to_token_.contains(*options.unk_id))) {
    return absl::InvalidArgumentError(absl::StrCat("unk_token: id ", *options.unk_id, " is not in the vocab"));
  }
  model->options_ = options;
  return model;
}

void BpeModel::Tokenize(absl::string_view word, std::vector<int32_t>* ids) const {
  if (word.empty()) return;
  if (options_.ignore_merges) {
    if (auto it = vocab_.find(word); it != vocab_.end()) {
      ids->push_back(it->second);
      return;
    }
  }
  if (word.size() > kMaxCachedWordBytes) {
    Merge(word, ids);
    return;
  }
  CacheShard& shard = cache_[absl::Hash<absl::string_view>()(word) % kCacheShards];
  {
    absl::MutexLock lock(&shard.mu);
    if (auto it = shard.entries.find(word); it != shard.entries.end()) {
      ids->insert(ids->end(), it->second.begin(), it->second.end());
      return;
    }
  }
  size_t first = ids->size();
  Merge(word, ids);
  std::vector<int32_t> result(ids->begin() + first, ids->end());
  absl::MutexLock lock(&shard.mu);
  // A full shard starts over: simpler than LRU and bounded, and real text re-fills it with its frequent words.
  if (shard.entries.size() >= kMaxCachedEntriesPerShard) shard.entries.clear();
  shard.entries.emplace(std::string(word), std::move(result));
}

void BpeModel::Merge(absl::string_view word, std::vector<int32_t>* ids) const {
  struct Symbol {
    int32_t id;  // -1 once merged into its left neighbour
    int32_t prev;
    int32_t next;
  };
  std::vector<Symbol> symbols;
  symbols.reserve(word.size());
  bool last_was_unk = false;
  for (size_t pos = 0; pos < word.size();) {
    size_t start = pos;
    DecodeUtf8(word, &pos);
    auto it = vocab_.find(word.substr(start, pos - start));
    int32_t id;
    if (it != vocab_.end()) {
      id = it->second;
      last_was_unk = false;
    } else if (options_.unk_id) {
      if (options_.fuse_unk && last_was_unk) continue;
      id = *options_.unk_id;
      last_was_unk = true;
    } else {
      continue;
    }
    int32_t index = static_cast<int32_t>(symbols.size());
    symbols.push_back({id, index - 1, -1});
    if (index > 0) symbols[index - 1].next = index;
  }

  struct Candidate {
    int32_t rank;
    int32_t pos;
    int32_t merged_id;
    bool operator>(const Candidate& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<Candidate>> queue;
  auto push_pair = [&](int32_t left) {
    int32_t right = symbols[left].next;
    if (right < 0) return;
    auto it = merges_.find(PairKey(symbols[left].id, symbols[right].id));
    if (it != merges_.end()) queue.push({it->second.first, left, it->second.second});
  };
  for (int32_t i = 0; i + 1 < static_cast<int32_t>(symbols.size()); ++i) push_pair(i);

  // Lowest rank first, leftmost among equal ranks: the order of HF tokenizers' Word::merge_all, which gives the same
  // result as GPT-2's "merge every occurrence of the best pair" loop for merge tables learned by BPE.
  while (!queue.empty()) {
    Candidate top = queue.top();
    queue.pop();
    Symbol& left = symbols[top.pos];
    if (left.id < 0 || left.next < 0) continue;
    Symbol& right = symbols[left.next];
    auto it = merges_.find(PairKey(left.id, right.id));
    if (it == merges_.end() || it->second.second != top.merged_id) continue;  // stale: a neighbour changed
    left.id = top.merged_id;
    right.id = -1;
    left.next = right.next;
    if (left.next >= 0) symbols[left.next].prev = top.pos;
    if (left.prev >= 0) push_pair(left.prev);
    push_pair(top.pos);
  }
  for (const Symbol& s : symbols) {
    if (s.id >= 0) ids->push_back(s.id);
  }
}

std::optional<int32_t> BpeModel::TokenToId(absl::string_view token) const {
  auto it = vocab_.find(token);
  if (it == vocab_.end()) return std::nullopt;
  return it->second;
}

const std::string* BpeModel::IdToToken(int32_t id) const {
  auto it = id_to_token_.find(id);
  return it == id_to_token_.end() ? nullptr : &it->second;
}

}  // namespace bpe
}  // namespace alignd
