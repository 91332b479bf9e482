// A Clock (node/clock.h) that moves only when a test calls Advance. Waiters registered through AwaitWithDeadline are
// woken by Advance (it locks and unlocks each waiter's mutex, which makes absl::Mutex re-evaluate their conditions);
// WaitForWaiters lets a test advance only once the code under test is waiting, so that no test sleeps.
#ifndef ALIGND_TESTS_NODE_FAKE_CLOCK_H_
#define ALIGND_TESTS_NODE_FAKE_CLOCK_H_

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <optional>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "node/clock.h"

namespace alignd::node {

class FakeClock final : public Clock {
 public:
  explicit FakeClock(absl::Time start = absl::FromUnixSeconds(1'700'000'000)) : now_ns_(absl::ToUnixNanos(start)) {}

  absl::Time Now() override { return absl::FromUnixNanos(now_ns_.load()); }

  bool AwaitWithDeadline(absl::Mutex& mu, const absl::Condition& condition, absl::Time deadline) override
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    int64_t id;
    {
      absl::MutexLock lock(&waiters_mu_);
      id = next_id_++;
      waiters_.push_back({id, &mu, deadline});
    }
    auto ready = [&]() { return condition.Eval() || Now() >= deadline; };
    mu.Await(absl::Condition(&ready));
    {
      absl::MutexLock lock(&waiters_mu_);
      waiters_.erase(std::remove_if(waiters_.begin(), waiters_.end(), [id](const Waiter& w) { return w.id == id; }),
                     waiters_.end());
    }
    return condition.Eval();
  }

  // Moves the time on by `d` and wakes the waiters whose deadline has come (they stop counting as waiters at once).
  void Advance(absl::Duration d) {
    now_ns_ += absl::ToInt64Nanoseconds(d);
    const absl::Time now = Now();
    std::vector<absl::Mutex*> touch;
    {
      absl::MutexLock lock(&waiters_mu_);
      for (const Waiter& w : waiters_) touch.push_back(w.mu);
      waiters_.erase(
          std::remove_if(waiters_.begin(), waiters_.end(), [now](const Waiter& w) { return w.deadline <= now; }),
          waiters_.end());
    }
    std::sort(touch.begin(), touch.end());
    touch.erase(std::unique(touch.begin(), touch.end()), touch.end());
    for (absl::Mutex* mu : touch) {
      mu->Lock();
      mu->Unlock();
    }
  }

  // Blocks (up to 10 s of real time, a bound for a broken test) until at least `n` threads wait on this clock.
  bool WaitForWaiters(size_t n) {
    absl::MutexLock lock(&waiters_mu_);
    auto enough = [this, n]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(waiters_mu_) { return waiters_.size() >= n; };
    return waiters_mu_.AwaitWithTimeout(absl::Condition(&enough), absl::Seconds(10));
  }

  // The earliest deadline a thread waits for; nullopt when none waits.
  std::optional<absl::Time> NextDeadline() {
    absl::MutexLock lock(&waiters_mu_);
    std::optional<absl::Time> next;
    for (const Waiter& w : waiters_) {
      if (!next || w.deadline < *next) next = w.deadline;
    }
    return next;
  }

 private:
  struct Waiter {
    int64_t id;
    absl::Mutex* mu;
    absl::Time deadline;
  };
  std::atomic<int64_t> now_ns_;
  absl::Mutex waiters_mu_;
  std::vector<Waiter> waiters_ ABSL_GUARDED_BY(waiters_mu_);
  int64_t next_id_ ABSL_GUARDED_BY(waiters_mu_) = 0;
};

}  // namespace alignd::node

#endif  // ALIGND_TESTS_NODE_FAKE_CLOCK_H_
