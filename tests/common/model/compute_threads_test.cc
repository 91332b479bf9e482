// The node's roles share one process in `alignd local`; each sets its job's intra-op thread count on its own threads
// (ScopedComputeThreads). That holds only if LibTorch's thread count is per thread, as OpenMP's nthreads ICV is.
#include "common/model/compute_threads.h"

#include <ATen/Parallel.h>
#include <gtest/gtest.h>

#include <thread>

#include "absl/synchronization/barrier.h"
#include "absl/synchronization/notification.h"

namespace alignd {
namespace {

TEST(ScopedComputeThreadsTest, EachThreadKeepsItsOwnCount) {
  if (at::get_parallel_info().find("OpenMP") == std::string::npos) GTEST_SKIP() << "LibTorch without OpenMP";
  // Both threads set their count, then both read theirs after the other has set its own.
  absl::Barrier* set = new absl::Barrier(2);
  int seen_a = 0, seen_b = 0;
  std::thread a([&] {
    ScopedComputeThreads scope(1);
    if (set->Block()) delete set;
    seen_a = at::get_num_threads();
  });
  std::thread b([&] {
    ScopedComputeThreads scope(3);
    if (set->Block()) delete set;
    seen_b = at::get_num_threads();
  });
  a.join();
  b.join();
  EXPECT_EQ(seen_a, 1);
  EXPECT_EQ(seen_b, 3);
}

TEST(ScopedComputeThreadsTest, RestoresTheThreadsCountOnExit) {
  at::set_num_threads(2);
  {
    ScopedComputeThreads scope(1);
    EXPECT_EQ(at::get_num_threads(), 1);
  }
  EXPECT_EQ(at::get_num_threads(), 2);
}

TEST(ScopedComputeThreadsTest, TheScopeDoesNotReachTheOtherThreads) {
  if (at::get_parallel_info().find("OpenMP") == std::string::npos) GTEST_SKIP() << "LibTorch without OpenMP";
  at::set_num_threads(2);
  ASSERT_EQ(at::get_num_threads(), 2);
  absl::Notification scoped, read;
  std::thread role([&] {
    ScopedComputeThreads scope(1);
    scoped.Notify();
    read.WaitForNotification();
  });
  scoped.WaitForNotification();
  EXPECT_EQ(at::get_num_threads(), 2);  // while the role's scope is open on its thread
  read.Notify();
  role.join();
  EXPECT_EQ(at::get_num_threads(), 2);
}

TEST(ScopedComputeThreadsTest, NestsAndIgnoresZero) {
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
