#include "rollout/running_batch.h"

#include <torch/torch.h>

#include <utility>

namespace alignd::rollout {

void RunningBatch::Keep(const torch::Tensor& rows) {
  cache.SelectRows(rows);
  mask = mask.index_select(0, rows);
  last_logits = last_logits.index_select(0, rows);
}

void RunningBatch::Append(RunningBatch other) {
  if (rows() == 0) {
    *this = std::move(other);
    return;
  }
  if (other.rows() == 0) return;
  TORCH_CHECK(cache.keys.size() == other.cache.keys.size(), "RunningBatch::Append: ", cache.keys.size(), " vs ",
              other.cache.keys.size(), " cache layers");
  if (width() < other.width()) PadLeft(other.width() - width());
  if (other.width() < width()) other.PadLeft(width() - other.width());
  for (size_t i = 0; i < cache.keys.size(); ++i) {
    cache.keys[i] = torch::cat({cache.keys[i], other.cache.keys[i]}, 0);
    cache.values[i] = torch::cat({cache.values[i], other.cache.values[i]}, 0);
  }
  mask = torch::cat({mask, other.mask}, 0);
  last_logits = torch::cat({last_logits, other.last_logits}, 0);
}

namespace {

torch::Tensor PadTensorLeft(const torch::Tensor& t, int64_t columns) {
  std::vector<int64_t> shape = t.sizes().vec();
  shape[2] = columns;
  return torch::cat({torch::zeros(shape, t.options()), t}, 2);
}

}  // namespace

void RunningBatch::PadLeft(int64_t columns) {
  TORCH_CHECK(columns >= 0, "RunningBatch::PadLeft: ", columns, " columns");
  if (columns == 0) return;
  for (auto& k : cache.keys) k = PadTensorLeft(k, columns);
  for (auto& v : cache.values) v = PadTensorLeft(v, columns);
  mask = torch::cat({torch::zeros({mask.size(0), columns}, mask.options()), mask}, 1);
}

void RunningBatch::TrimLeft(int64_t columns) {
  TORCH_CHECK(columns >= 0 && columns <= width(), "RunningBatch::TrimLeft: ", columns, " of ", width(), " columns");
  if (columns == 0) return;
  const int64_t kept = width() - columns;
  for (auto& k : cache.keys) k = k.narrow(2, columns, kept).clone(at::MemoryFormat::Contiguous);
  for (auto& v : cache.values) v = v.narrow(2, columns, kept).clone(at::MemoryFormat::Contiguous);
  mask = mask.narrow(1, columns, kept).clone(at::MemoryFormat::Contiguous);
}

}  // namespace alignd::rollout
