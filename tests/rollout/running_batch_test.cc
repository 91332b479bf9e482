#include "rollout/running_batch.h"

#include <torch/torch.h>

#include <utility>

#include "gtest/gtest.h"

namespace alignd::rollout {
namespace {

// A batch of `rows` rows whose last `real` of `width` columns are real; one cache layer, keys = values = 1 + row.
RunningBatch Batch(int64_t rows, int64_t width, int64_t real, float first_value = 1) {
  RunningBatch b;
  b.mask = torch::zeros({rows, width}, torch::kLong);
  b.mask.narrow(1, width - real, real).fill_(1);
  torch::Tensor k = torch::zeros({rows, 2, width, 4});
  for (int64_t r = 0; r < rows; ++r) k[r].narrow(1, width - real, real).fill_(first_value + static_cast<float>(r));
  b.cache.keys = {k};
  b.cache.values = {k.clone()};
  b.last_logits = torch::arange(rows, torch::kFloat).unsqueeze(1).expand({rows, 3}).clone();
  return b;
}

TEST(RunningBatch, AppendPadsTheNarrowerOnTheLeft) {
  RunningBatch running = Batch(2, 6, 6);
  running.Append(Batch(1, 3, 3, /*first_value=*/7));
  ASSERT_EQ(running.rows(), 3);
  ASSERT_EQ(running.width(), 6);
  EXPECT_TRUE(torch::equal(running.mask[2], torch::tensor({0, 0, 0, 1, 1, 1}, torch::kLong)));
  EXPECT_EQ(running.cache.keys[0][2].narrow(1, 0, 3).abs().sum().item<float>(), 0);
  EXPECT_EQ(running.cache.keys[0][2][1][4][0].item<float>(), 7);
  EXPECT_EQ(running.cache.keys[0][1][0][0][0].item<float>(), 2);
  EXPECT_EQ(running.last_logits[2][0].item<float>(), 0);  // the joining batch's own first row

  // The wider newcomer: the running rows are padded instead.
  RunningBatch narrow = Batch(1, 2, 2);
  narrow.Append(Batch(1, 5, 4));
  EXPECT_TRUE(torch::equal(narrow.mask, torch::tensor({{0, 0, 0, 1, 1}, {0, 1, 1, 1, 1}}, torch::kLong)));
  EXPECT_EQ(narrow.cache.values[0].size(2), 5);
}

TEST(RunningBatch, AppendToAnEmptyBatchTakesTheOther) {
  RunningBatch empty;
  EXPECT_EQ(empty.rows(), 0);
  empty.Append(Batch(2, 4, 3));
  EXPECT_EQ(empty.rows(), 2);
  EXPECT_EQ(empty.width(), 4);
  RunningBatch left = Batch(2, 4, 4);
  left.Keep(torch::empty({0}, torch::kLong));
  EXPECT_EQ(left.rows(), 0);
  left.Append(Batch(1, 7, 7));
  EXPECT_EQ(left.width(), 7);
}

TEST(RunningBatch, KeepAndTrimLeft) {
  RunningBatch b = Batch(2, 6, 6);
  b.Append(Batch(1, 2, 2, /*first_value=*/9));
  b.Keep(torch::tensor({2}, torch::kLong));
  ASSERT_EQ(b.rows(), 1);
  b.TrimLeft(4);
  EXPECT_EQ(b.width(), 2);
  EXPECT_TRUE(torch::equal(b.mask, torch::ones({1, 2}, torch::kLong)));
  EXPECT_EQ(b.cache.keys[0].min().item<float>(), 9);
  // Fresh storage that starts at the trimmed entry, so the cache's in-place append can grow it.
  EXPECT_TRUE(b.cache.keys[0].is_contiguous());
  EXPECT_EQ(b.cache.keys[0].storage_offset(), 0);
  EXPECT_THROW(b.TrimLeft(3), c10::Error);
}

}  // namespace
}  // namespace alignd::rollout
