#include "common/data/collate.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"

namespace alignd {
namespace {

// A [B, T] int64 CPU tensor from row-major values.
// A [B, T] int64 tensor on `device` from row-major values (filled on the CPU, copied once to a GPU).
at::Tensor ToTensor(std::vector<int64_t> values, int64_t rows, int64_t cols, at::Device device) {
  at::Tensor t = at::empty({rows, cols}, at::TensorOptions().dtype(at::kLong));
  std::copy(values.begin(), values.end(), t.data_ptr<int64_t>());
  return t.to(device);
}

absl::Status CheckExample(const TokenizedExample& ex, size_t index) {
  if (ex.input_ids.empty()) return absl::InvalidArgumentError(absl::StrCat("example ", index, " is empty"));
  if (ex.loss_mask.size() != ex.input_ids.size()) {
    return absl::InvalidArgumentError(absl::StrCat("example ", index, " has ", ex.input_ids.size(), " input_ids but ",
                                                   ex.loss_mask.size(), " loss_mask entries"));
  }
  return absl::OkStatus();
}

// CollatePairs' sequence order: every chosen sequence, then every rejected one.
std::vector<TokenizedExample> PairSequences(const std::vector<TokenizedPair>& pairs) {
  std::vector<TokenizedExample> examples;
  examples.reserve(2 * pairs.size());
  for (const TokenizedPair& pair : pairs) examples.push_back(pair.chosen);
  for (const TokenizedPair& pair : pairs) examples.push_back(pair.rejected);
  return examples;
}

}  // namespace

absl::StatusOr<Batch> Collate(const std::vector<TokenizedExample>& examples, const CollateOptions& options) {
  if (examples.empty()) return absl::InvalidArgumentError("no examples to collate");
  if (options.pad_to_multiple_of < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("pad_to_multiple_of must be >= 1, got ", options.pad_to_multiple_of));
  }
  int64_t longest = 0;
  for (size_t i = 0; i < examples.size(); ++i) {
    absl::Status status = CheckExample(examples[i], i);
    if (!status.ok()) return status;
    longest = std::max<int64_t>(longest, static_cast<int64_t>(examples[i].input_ids.size()));
  }
  const int64_t rows = static_cast<int64_t>(examples.size());
  const int64_t cols =
      (longest + options.pad_to_multiple_of - 1) / options.pad_to_multiple_of * options.pad_to_multiple_of;
  std::vector<int64_t> ids(rows * cols, options.pad_id), mask(rows * cols, 0), labels(rows * cols, kIgnoreIndex),
      positions(rows * cols, 0);
  for (int64_t b = 0; b < rows; ++b) {
    const TokenizedExample& ex = examples[b];
    const int64_t n = static_cast<int64_t>(ex.input_ids.size());
    const int64_t offset = options.padding_side == PaddingSide::kLeft ? cols - n : 0;
    int64_t* row_positions = &positions[b * cols];
    for (int64_t t = 0; t < n; ++t) {
      int64_t at = b * cols + offset + t;
      ids[at] = ex.input_ids[t];
      mask[at] = 1;
      if (ex.loss_mask[t] != 0) labels[at] = ex.input_ids[t];
      row_positions[offset + t] = t;
    }
    // cumsum(mask) - 1 stays at the last real position over right padding.
    for (int64_t t = offset + n; t < cols; ++t) row_positions[t] = n - 1;
  }
  try {
    Batch batch;
    batch.input_ids = ToTensor(std::move(ids), rows, cols, options.device);
    batch.attention_mask = ToTensor(std::move(mask), rows, cols, options.device);
    batch.labels = ToTensor(std::move(labels), rows, cols, options.device);
    batch.position_ids = ToTensor(std::move(positions), rows, cols, options.device);
    return batch;
  } catch (const c10::Error& e) {
    return absl::ResourceExhaustedError(
        absl::StrCat("cannot allocate a ", rows, "x", cols, " batch: ", e.what_without_backtrace()));
  }
}

absl::StatusOr<Batch> CollatePacked(const std::vector<TokenizedExample>& examples, const CollateOptions& options) {
  if (examples.empty()) return absl::InvalidArgumentError("no examples to collate");
  std::vector<int64_t> offsets{0};
  for (size_t i = 0; i < examples.size(); ++i) {
    absl::Status status = CheckExample(examples[i], i);
    if (!status.ok()) return status;
    offsets.push_back(offsets.back() + static_cast<int64_t>(examples[i].input_ids.size()));
  }
  const int64_t n = offsets.back();
  std::vector<int64_t> ids, labels, positions;
  ids.reserve(n);
  labels.reserve(n);
  positions.reserve(n);
  for (const TokenizedExample& ex : examples) {
    for (size_t t = 0; t < ex.input_ids.size(); ++t) {
      ids.push_back(ex.input_ids[t]);
      labels.push_back(t > 0 && ex.loss_mask[t] != 0 ? ex.input_ids[t] : kIgnoreIndex);
      positions.push_back(static_cast<int64_t>(t));
    }
  }
  try {
    Batch batch;
    batch.input_ids = ToTensor(std::move(ids), 1, n, options.device);
    batch.attention_mask = at::ones({1, n}, batch.input_ids.options());
    batch.labels = ToTensor(std::move(labels), 1, n, options.device);
    batch.position_ids = ToTensor(std::move(positions), 1, n, options.device);
    batch.offsets = std::move(offsets);
    return batch;
  } catch (const c10::Error& e) {
    return absl::ResourceExhaustedError(
        absl::StrCat("cannot allocate a packed batch of ", n, " tokens: ", e.what_without_backtrace()));
  }
}

absl::StatusOr<Batch> CollatePairsPacked(const std::vector<TokenizedPair>& pairs, const CollateOptions& options) {
  return CollatePacked(PairSequences(pairs), options);
}

int64_t Batch::num_sequences() const { return packed() ? static_cast<int64_t>(offsets.size()) - 1 : input_ids.size(0); }

at::Tensor Batch::SumPerSequence(const at::Tensor& x) const {
  if (!packed()) return x.sum(1);
  std::vector<int64_t> lengths;
  for (size_t i = 0; i + 1 < offsets.size(); ++i) lengths.push_back(offsets[i + 1] - offsets[i]);
  at::Tensor ids = at::repeat_interleave(at::arange(num_sequences(), x.options().dtype(at::kLong)),
                                         at::tensor(lengths, at::kLong).to(x.device()));
  return at::zeros({num_sequences()}, x.options()).index_add(0, ids, x.reshape({-1}));
}

at::Tensor Batch::LastTokenIndex() const {
  if (packed()) {
    std::vector<int64_t> last(offsets.begin() + 1, offsets.end());
    for (int64_t& l : last) l -= 1;
    return at::tensor(last, at::kLong).to(input_ids.device());
  }
  const int64_t t = input_ids.size(1);
  return at::arange(input_ids.size(0), input_ids.options()) * t + attention_mask.sum(1) - 1;
}

absl::StatusOr<Batch> CollatePairs(const std::vector<TokenizedPair>& pairs, const CollateOptions& options) {
  return Collate(PairSequences(pairs), options);
}

absl::StatusOr<Batch> CollatePrompts(const std::vector<std::vector<int32_t>>& prompts, const CollateOptions& options) {
  std::vector<TokenizedExample> examples(prompts.size());
  for (size_t i = 0; i < prompts.size(); ++i) {
    examples[i].input_ids = prompts[i];
    examples[i].loss_mask.assign(prompts[i].size(), 0);
  }
  CollateOptions left = options;
  left.padding_side = PaddingSide::kLeft;
  return Collate(examples, left);
}

absl::StatusOr<std::vector<TokenizedExample>> PackExamples(const std::vector<TokenizedExample>& examples,
                                                           int64_t seq_len, bool drop_remainder) {
  if (seq_len < 2) return absl::InvalidArgumentError(absl::StrCat("seq_len must be >= 2, got ", seq_len));
  std::vector<TokenizedExample> rows;
  TokenizedExample row;
  for (size_t i = 0; i < examples.size(); ++i) {
    const TokenizedExample& ex = examples[i];
    if (ex.loss_mask.size() != ex.input_ids.size()) return CheckExample(ex, i);
    for (size_t t = 0; t < ex.input_ids.size(); ++t) {
      row.input_ids.push_back(ex.input_ids[t]);
      row.loss_mask.push_back(t == 0 ? 0 : ex.loss_mask[t]);
      if (static_cast<int64_t>(row.input_ids.size()) == seq_len) {
        rows.push_back(std::move(row));
        row = TokenizedExample();
      }
    }
  }
  if (!row.input_ids.empty() && !drop_remainder) rows.push_back(std::move(row));
  return rows;
}

}  // namespace alignd
