// The time a node's timers run on: the real clock in production, a fake one in tests (tests/node/fake_clock.h), so
// that heartbeats, registration backoff and the peer-failure grace period are tested without sleeping.
#ifndef ALIGND_NODE_CLOCK_H_
#define ALIGND_NODE_CLOCK_H_

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace alignd::node {

// Thread safety: every method is thread-safe.
class Clock {
 public:
  virtual ~Clock() = default;
  virtual absl::Time Now() = 0;
  // Called with `mu` held: releases it until `condition` holds (re-evaluated whenever `mu` is released by another
  // thread) or this clock reaches `deadline`, and returns with `mu` held again. Returns whether `condition` holds.
  virtual bool AwaitWithDeadline(absl::Mutex& mu, const absl::Condition& condition, absl::Time deadline)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) = 0;
};

// The system clock (absl::Now, absl::Mutex::AwaitWithDeadline).
class RealClock final : public Clock {
 public:
  absl::Time Now() override { return absl::Now(); }
  bool AwaitWithDeadline(absl::Mutex& mu, const absl::Condition& condition, absl::Time deadline) override
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    return mu.AwaitWithDeadline(condition, deadline);
  }
};

}  // namespace alignd::node

#endif  // ALIGND_NODE_CLOCK_H_
