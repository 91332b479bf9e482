#include "common/base/cancel.h"

#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <thread>
#include <utility>

#include "absl/time/time.h"

namespace alignd {
namespace {

TEST(CancelSignalTest, HooksRunOnceWhenItFires) {
  CancelSignal signal;
  int runs = 0;
  CancelSignal::Hook hook = signal.OnCancel([&] { ++runs; });
  EXPECT_FALSE(signal.cancelled());
  EXPECT_EQ(runs, 0);
  signal.Cancel();
  signal.Cancel();  // idempotent
  EXPECT_TRUE(signal.cancelled());
  EXPECT_EQ(runs, 1);
}

TEST(CancelSignalTest, AHookMadeAfterItFiredRunsAtOnce) {
  CancelSignal signal;
  signal.Cancel();
  int runs = 0;
  CancelSignal::Hook hook = signal.OnCancel([&] { ++runs; });
  EXPECT_EQ(runs, 1);
}

TEST(CancelSignalTest, ADestroyedOrMovedFromHookDoesNotRun) {
  CancelSignal signal;
  int gone = 0, moved = 0;
  {
    CancelSignal::Hook hook = signal.OnCancel([&] { ++gone; });
  }
  CancelSignal::Hook from = signal.OnCancel([&] { ++moved; });
  CancelSignal::Hook to = std::move(from);
  from = CancelSignal::Hook();  // resetting the moved-from hook must not remove the live one
  signal.Cancel();
  EXPECT_EQ(gone, 0);
  EXPECT_EQ(moved, 1);
}

TEST(CancelSignalTest, WaitForEndsAtTheCancelOrTheTimeout) {
  CancelSignal signal;
  EXPECT_FALSE(signal.WaitFor(absl::Milliseconds(10)));
  std::thread canceller([&] { signal.Cancel(); });
  EXPECT_TRUE(signal.WaitFor(absl::Seconds(30)));  // the bound of a broken test; returns at the cancel
  canceller.join();
  signal.Wait();  // already fired: returns at once
}

// A hook being destroyed while another thread fires the signal either runs to completion first or not at all; its
// function never runs after the destructor has returned.
TEST(CancelSignalTest, DestroyingAHookWhileItFiresIsSafe) {
  for (int i = 0; i < 200; ++i) {
    CancelSignal signal;
    std::atomic<bool> alive{true};
    std::atomic<bool> ran_dead{false};
    auto hook = std::make_unique<CancelSignal::Hook>(signal.OnCancel([&] {
      if (!alive.load()) ran_dead = true;
    }));
    std::thread canceller([&] { signal.Cancel(); });
    hook.reset();
    alive = false;
    canceller.join();
    EXPECT_FALSE(ran_dead.load()) << "iteration " << i;
  }
}

}  // namespace
}  // namespace alignd
