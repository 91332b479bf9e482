// Collation of tokenized examples into padded int64 tensors, and packing of pretraining text into fixed-length rows.
// Pure functions; safe to call from several threads.
#ifndef ALIGND_COMMON_DATA_COLLATE_H_
#define ALIGND_COMMON_DATA_COLLATE_H_

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "common/data/example_tokenizer.h"

namespace alignd {

// Label value that the loss ignores (as in PyTorch's cross_entropy default).
inline constexpr int64_t kIgnoreIndex = -100;

// All int64 [B, T] on the CPU.
//  input_ids:      tokens, pad_id where padded
//  attention_mask: 1 on real tokens, 0 on padding
//  labels:         input_ids where loss_mask is 1, else kIgnoreIndex (padding included). Not shifted: the model
//                  shifts, logits[:, :-1] predict labels[:, 1:]
//  position_ids:   cumsum(attention_mask) - 1, clamped at 0: the first real token is at 0 whichever the padding side
//                  (right padding repeats the last real position; left padding puts 0 on the padding)
//
// A padding-free batch (CollatePacked) is one row [1, N] holding its sequences end to end, with `offsets` set:
// sequence i is columns [offsets[i], offsets[i + 1]), its positions restart at 0, and its first token is never a
// label (nothing of its own predicts it). Such a batch goes through CausalLM::forward_packed_hidden, which keeps
// attention within each sequence. `offsets` is empty for a padded batch.
struct Batch {
  at::Tensor input_ids, attention_mask, labels, position_ids;
  std::vector<int64_t> offsets;

  // Whether the batch came from CollatePacked / CollatePairsPacked.
  bool packed() const { return !offsets.empty(); }
  // Sequences in the batch: rows when padded, offsets.size() - 1 when packed.
  int64_t num_sequences() const;
  // Per-sequence sums of a [B, T] tensor laid out like input_ids ([S], differentiable): row sums when padded,
  // segment sums when packed.
  at::Tensor SumPerSequence(const at::Tensor& x) const;
  // The column of each sequence's last token (right padding), as flat indices into a [B, T] tensor's B * T entries
  // ([S] int64).
  at::Tensor LastTokenIndex() const;
};

enum class PaddingSide { kRight, kLeft };

struct CollateOptions {
  int64_t pad_id = 0;
  PaddingSide padding_side = PaddingSide::kRight;  // right for training, left for generation
  int64_t pad_to_multiple_of = 1;                  // T is rounded up to a multiple of this
  at::Device device = at::kCPU;                    // where the batch's tensors are made (the model's device)
};

// Pads `examples` to their longest length. INVALID_ARGUMENT when there are none, when one is empty, when a loss_mask
// length differs from its input_ids, or when pad_to_multiple_of < 1 (the message names the example by index);
// RESOURCE_EXHAUSTED when the tensors cannot be made on options.device.
absl::StatusOr<Batch> Collate(const std::vector<TokenizedExample>& examples, const CollateOptions& options);

// Rows 0..B-1 are the chosen sequences, rows B..2B-1 the rejected ones, padded to one common length. Collate's errors
// (an example index counts chosen sequences first, then rejected ones).
absl::StatusOr<Batch> CollatePairs(const std::vector<TokenizedPair>& pairs, const CollateOptions& options);

// Padding-free collation: the examples end to end in one row (see Batch), no padding at all; options.padding_side and
// pad_to_multiple_of do not apply. Same errors as Collate.
absl::StatusOr<Batch> CollatePacked(const std::vector<TokenizedExample>& examples, const CollateOptions& options);

// CollatePairs' order (every chosen sequence, then every rejected one), padding-free. CollatePacked's errors.
absl::StatusOr<Batch> CollatePairsPacked(const std::vector<TokenizedPair>& pairs, const CollateOptions& options);

// Prompts for generation: left padding (whatever options.padding_side says), labels all kIgnoreIndex. Collate's
// errors (an empty prompt, or no prompts, is INVALID_ARGUMENT).
absl::StatusOr<Batch> CollatePrompts(const std::vector<std::vector<int32_t>>& prompts, const CollateOptions& options);

// Packing for pretraining: the examples' tokens are laid end to end as one stream and cut into rows of exactly
// seq_len tokens (an example may continue on the next row). The first token of every example gets loss_mask 0, so no
// loss term predicts one document from the end of the previous one; attention still spans documents within a row
// and positions run 0..seq_len-1, as in GPT-2-style pretraining. A final partial row is dropped when drop_remainder,
// else returned shorter (Collate pads it). INVALID_ARGUMENT when seq_len < 2.
absl::StatusOr<std::vector<TokenizedExample>> PackExamples(const std::vector<TokenizedExample>& examples,
                                                           int64_t seq_len, bool drop_remainder = true);

}  // namespace alignd

#endif  // ALIGND_COMMON_DATA_COLLATE_H_
