// The decode state of the rows a continuous batch generates together: their KV cache, attention mask and last
// logits, with the operations that let rows leave and join. Rows are right-aligned: each row's real positions are
// the last ones of the mask and the columns before them are padding (mask 0), so a row joining a batch with a longer
// past is padded on the left, and columns that are padding in every row can be cut off the left.
// Not thread-safe; used by one decode loop (rollout/decode.cc).
#ifndef ALIGND_ROLLOUT_RUNNING_BATCH_H_
#define ALIGND_ROLLOUT_RUNNING_BATCH_H_

#include <torch/types.h>

#include <cstdint>

#include "common/model/transformer.h"

namespace alignd::rollout {

struct RunningBatch {
  KVCache cache;              // [A, kv_heads, W, head_dim] per layer
  torch::Tensor mask;         // [A, W]: 1 on real positions, 0 on left padding
  torch::Tensor last_logits;  // [A, vocab]: the logits that choose each row's next token

  // Rows (A); 0 for a batch that holds none (default-constructed, or after Keep with no rows).
  int64_t rows() const { return mask.defined() ? mask.size(0) : 0; }
  // Cached positions (W), padding included.
  int64_t width() const { return mask.defined() ? mask.size(1) : 0; }

  // Keeps the rows `rows` (int64 indices on the batch's device), in that order.
  void Keep(const torch::Tensor& rows);
  // Adds the rows of `other` after this batch's rows; the narrower of the two is padded on the left (zero keys and
  // values, mask 0) to the other's width. `other` must have as many cache layers (or this batch no rows).
  void Append(RunningBatch other);
  // Inserts `columns` >= 0 padding columns on the left of every row.
  void PadLeft(int64_t columns);
  // Drops the first `columns` columns (0 <= columns <= width), which must be padding in every row. The cache
  // tensors are copied into fresh storage: the KV cache's in-place append (common/model/transformer.cc) needs an
  // entry that starts its buffer, which a view past the left columns would not.
  void TrimLeft(int64_t columns);
};

}  // namespace alignd::rollout

#endif  // ALIGND_ROLLOUT_RUNNING_BATCH_H_
