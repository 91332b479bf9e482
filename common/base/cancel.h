// The cancellation of one piece of work (a job's assignment on a worker, and every call it makes): a flag to poll,
// waits that end when it fires, and hooks that run when it fires (TryCancel on a gRPC call in flight, for one), so
// that a blocking call ends at the cancel rather than at its own deadline. Thread-safe.
#ifndef ALIGND_COMMON_BASE_CANCEL_H_
#define ALIGND_COMMON_BASE_CANCEL_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"

namespace alignd {

class CancelSignal {
 public:
  // A registered hook: while it lives, its function runs when the signal fires. Destroying it removes the function,
  // after waiting for it if it is running on another thread. Move-only; the signal must outlive it.
  class Hook {
   public:
    Hook() = default;
    Hook(Hook&& other) noexcept;
    Hook& operator=(Hook&& other) noexcept;
    Hook(const Hook&) = delete;
    Hook& operator=(const Hook&) = delete;
    ~Hook();

   private:
    friend class CancelSignal;
    Hook(const CancelSignal* signal, uint64_t id) : signal_(signal), id_(id) {}
    void Reset();
    const CancelSignal* signal_ = nullptr;
    uint64_t id_ = 0;
  };

  CancelSignal() = default;
  CancelSignal(const CancelSignal&) = delete;
  CancelSignal& operator=(const CancelSignal&) = delete;

  // Fires the signal and runs the hooks registered then, each once, on this thread. Idempotent.
  void Cancel();
  bool cancelled() const { return cancelled_.load(); }
  // Blocks until Cancel.
  void Wait() const { fired_.WaitForNotification(); }
  // Blocks until Cancel, or for `timeout`; returns whether the signal has fired.
  bool WaitFor(absl::Duration timeout) const { return fired_.WaitForNotificationWithTimeout(timeout); }
  // Registers `fn` to run when the signal fires; runs it at once, on this thread, when it already has (and returns an
  // empty hook). `fn` runs with the signal's lock held: it must be quick and must not call into this signal.
  [[nodiscard]] Hook OnCancel(std::function<void()> fn) const;

 private:
  void Remove(uint64_t id) const;

  std::atomic<bool> cancelled_{false};
  absl::Notification fired_;
  mutable absl::Mutex mu_;
  mutable uint64_t next_id_ ABSL_GUARDED_BY(mu_) = 1;
  mutable std::map<uint64_t, std::function<void()>> hooks_ ABSL_GUARDED_BY(mu_);
};

}  // namespace alignd

#endif  // ALIGND_COMMON_BASE_CANCEL_H_
