#include "common/compute_threads.h"

#include <ATen/Parallel.h>

#include <future>
#include <thread>

#include "gtest/gtest.h"

namespace alignd {
namespace {

// OpenMP's thread count is per thread: a count set on one thread leaves another's (one that already ran) alone.
TEST(ScopedComputeThreads, SetsOnlyTheCallingThreadsCountAndRestoresIt) {
  const int before = at::get_num_threads();
  const int other = before == 3 ? 2 : 3;
  std::promise<void> set, checked;
  std::shared_future<void> checked_done = checked.get_future().share();
  int inside = 0, after = 0;
  std::thread role([&] {
    {
      ScopedComputeThreads threads(other);
      inside = at::get_num_threads();
      set.set_value();
      checked_done.wait();
    }
    after = at::get_num_threads();
  });
  set.get_future().wait();
  EXPECT_EQ(at::get_num_threads(), before) << "another thread's count changed this one's";
  checked.set_value();
  role.join();
  EXPECT_EQ(inside, other);
  EXPECT_EQ(after, before) << "the guard restores the count it found";
  EXPECT_EQ(at::get_num_threads(), before);
}

TEST(ScopedComputeThreads, NestsAndIgnoresZero) {
  const int before = at::get_num_threads();
  {
    ScopedComputeThreads outer(1);
    EXPECT_EQ(at::get_num_threads(), 1);
    {
      ScopedComputeThreads inner(2);
      EXPECT_EQ(at::get_num_threads(), 2);
      ScopedComputeThreads zero(0);
      EXPECT_EQ(at::get_num_threads(), 2);
    }
    EXPECT_EQ(at::get_num_threads(), 1);
  }
  EXPECT_EQ(at::get_num_threads(), before);
}

}  // namespace
}  // namespace alignd
