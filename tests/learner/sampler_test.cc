#include "learner/sampler.h"

#include <algorithm>
#include <set>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace alignd::learner {
namespace {

using ::testing::ElementsAre;

std::vector<size_t> Sorted(std::vector<size_t> v) {
  std::sort(v.begin(), v.end());
  return v;
}

std::vector<size_t> Iota(size_t n) {
  std::vector<size_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = i;
  return v;
}

// The order of epoch `epoch` of a sampler over n items.
std::vector<size_t> Epoch(size_t n, uint64_t seed, int64_t epoch) {
  Sampler s(n, seed);
  s.Restore(epoch, 0);
  return s.Next(n);
}

TEST(Sampler, EachEpochVisitsEveryItemOnce) {
  Sampler s(10, 7);
  EXPECT_EQ(Sorted(s.Next(10)), Iota(10));
  EXPECT_EQ(s.epoch(), 0);
  EXPECT_EQ(s.position(), 10u);
  EXPECT_EQ(Sorted(s.Next(10)), Iota(10));
  EXPECT_EQ(s.epoch(), 1);
}

TEST(Sampler, TheOrderIsFixedBySeedAndEpoch) {
  EXPECT_EQ(Epoch(50, 3, 0), Epoch(50, 3, 0));
  EXPECT_EQ(Epoch(50, 3, 4), Epoch(50, 3, 4));
  EXPECT_NE(Epoch(50, 3, 0), Epoch(50, 3, 1));
  EXPECT_NE(Epoch(50, 3, 0), Epoch(50, 4, 0));
  EXPECT_NE(Epoch(50, 3, 0), Iota(50)) << "epoch 0 should be shuffled";
}

TEST(Sampler, TheOrderIsTheWrittenOutShuffle) {
  // The Fisher-Yates shuffle over mt19937_64 is spelled out in sampler.cc so that it is the same on every standard
  // library; a change of these numbers changes every run's data order.
  EXPECT_THAT(Epoch(5, 1, 0), ElementsAre(3, 1, 2, 4, 0));
}

TEST(Sampler, BatchesRollOverTheEpochEnd) {
  Sampler s(4, 11);
  std::vector<size_t> first = s.Next(3), second = s.Next(3);
  const std::vector<size_t> e0 = Epoch(4, 11, 0), e1 = Epoch(4, 11, 1);
  EXPECT_EQ(first, std::vector<size_t>(e0.begin(), e0.begin() + 3));
  EXPECT_EQ(second, (std::vector<size_t>{e0[3], e1[0], e1[1]}));
  EXPECT_EQ(s.epoch(), 1);
  EXPECT_EQ(s.position(), 2u);
}

TEST(Sampler, RestoreContinuesWhereTheStateSaysItWas) {
  Sampler a(9, 5);
  a.Next(13);  // epoch 1, position 4
  Sampler b(9, 5);
  b.Restore(a.epoch(), a.position());
  EXPECT_EQ(b.Next(20), a.Next(20));
  EXPECT_EQ(b.epoch(), a.epoch());
  EXPECT_EQ(b.position(), a.position());
}

TEST(ShardOf, RanksGetDisjointContiguousPartsCoveringTheBatch) {
  Sampler s(100, 2);
  const std::vector<size_t> batch = s.Next(12);
  std::vector<size_t> joined;
  std::set<size_t> seen;
  for (int rank = 0; rank < 4; ++rank) {
    std::vector<size_t> part = ShardOf(batch, rank, 4);
    EXPECT_EQ(part.size(), 3u);
    for (size_t i : part) EXPECT_TRUE(seen.insert(i).second) << i << " is in two shards";
    joined.insert(joined.end(), part.begin(), part.end());
  }
  EXPECT_EQ(joined, batch);
}

TEST(ShardOf, OneRankGetsTheWholeBatch) {
  const std::vector<size_t> batch = {4, 1, 3};
  EXPECT_EQ(ShardOf(batch, 0, 1), batch);
}

}  // namespace
}  // namespace alignd::learner
