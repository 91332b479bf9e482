#include "common/base/cancel.h"

#include <utility>

namespace alignd {

CancelSignal::Hook::Hook(Hook&& other) noexcept : signal_(other.signal_), id_(other.id_) { other.signal_ = nullptr; }

CancelSignal::Hook& CancelSignal::Hook::operator=(Hook&& other) noexcept {
  if (this != &other) {
    Reset();
    signal_ = other.signal_;
    id_ = other.id_;
    other.signal_ = nullptr;
  }
  return *this;
}

CancelSignal::Hook::~Hook() { Reset(); }

void CancelSignal::Hook::Reset() {
  if (signal_ != nullptr) signal_->Remove(id_);
  signal_ = nullptr;
}

void CancelSignal::Cancel() {
  absl::MutexLock lock(&mu_);
  if (cancelled_.exchange(true)) return;
  // Under the lock: a hook being destroyed meanwhile waits for its function to return.
  for (auto& [id, fn] : hooks_) fn();
  hooks_.clear();
  fired_.Notify();
}

CancelSignal::Hook CancelSignal::OnCancel(std::function<void()> fn) const {
  {
    absl::MutexLock lock(&mu_);
    if (!cancelled_.load()) {
      const uint64_t id = next_id_++;
      hooks_.emplace(id, std::move(fn));
      return Hook(this, id);
    }
  }
  fn();
  return Hook();
}

void CancelSignal::Remove(uint64_t id) const {
  absl::MutexLock lock(&mu_);
  hooks_.erase(id);
}

}  // namespace alignd
