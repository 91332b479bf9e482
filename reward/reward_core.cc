#include "reward/reward_core.h"

#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/base/status.h"
#include "common/metrics/prometheus.h"

namespace alignd::reward {
namespace {

// The Score requests waiting in this process's reward cores (summed over them).
void TrackQueued(double delta) {
  if (delta == 0) return;
  metrics::Registry::Default().GaugeAdd("alignd_reward_queue_depth",
                                        "Score requests waiting in this process's reward servers' queues.", {}, delta);
}

}  // namespace

struct RewardCore::Pending {
  std::vector<ScoreInput> items;
  absl::Time deadline;
  bool done = false;  // guarded by the core's mu_
  absl::StatusOr<std::vector<ScoreResult>> result;
};

absl::StatusOr<std::unique_ptr<RewardCore>> RewardCore::Create(Options options) {
  RETURN_IF_ERROR(ValidateParts(options.scorers));
  if (options.max_queued_requests < 1) return absl::InvalidArgumentError("reward: max_queued_requests must be >= 1");
  if (options.max_request_items < 1) return absl::InvalidArgumentError("reward: max_request_items must be >= 1");
  if (options.max_batch_items < 1) return absl::InvalidArgumentError("reward: max_batch_items must be >= 1");
  return std::unique_ptr<RewardCore>(new RewardCore(std::move(options)));
}

RewardCore::RewardCore(Options options)
    : scorers_(std::move(options.scorers)),
      max_queued_requests_(options.max_queued_requests),
      max_request_items_(options.max_request_items),
      max_batch_items_(options.max_batch_items) {
  for (const WeightedScorer& s : scorers_) part_names_.push_back(s.name);
  batch_thread_ = std::thread([this] { BatchLoop(); });
}

RewardCore::~RewardCore() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    for (const std::shared_ptr<Pending>& p : queue_) {
      p->result = absl::UnavailableError("reward: server is shutting down");
      p->done = true;
    }
    TrackQueued(-static_cast<double>(queue_.size()));
    queue_.clear();
  }
  batch_thread_.join();
}

absl::StatusOr<std::vector<ScoreResult>> RewardCore::Score(std::vector<ScoreInput> items, absl::Time deadline) {
  if (items.empty()) return absl::InvalidArgumentError("reward: items: empty batch");
  if (static_cast<int64_t>(items.size()) > max_request_items_) {
    return absl::InvalidArgumentError(absl::StrCat("reward: items: ", items.size(), " items exceed the limit of ",
                                                   max_request_items_, " per request; split the batch"));
  }
  if (deadline <= absl::Now()) return absl::DeadlineExceededError("reward: deadline passed before queueing");
  auto pending = std::make_shared<Pending>();
  pending->items = std::move(items);
  pending->deadline = deadline;
  absl::MutexLock lock(&mu_);
  if (stopping_) return absl::UnavailableError("reward: server is shutting down");
  if (static_cast<int64_t>(queue_.size()) >= max_queued_requests_) {
    return absl::ResourceExhaustedError(
        absl::StrCat("reward: queue full (", max_queued_requests_, " requests waiting); retry later"));
  }
  queue_.push_back(pending);
  TrackQueued(1);
  Pending* p = pending.get();
  if (!mu_.AwaitWithDeadline(absl::Condition(
                                 +[](Pending* p) { return p->done; }, p),
                             deadline)) {
    // Still queued: leave the queue so that it is not scored for nobody. Being scored: its result is dropped.
    for (auto it = queue_.begin(); it != queue_.end(); ++it) {
      if (it->get() == p) {
        queue_.erase(it);
        TrackQueued(-1);
        break;
      }
    }
    return absl::DeadlineExceededError("reward: deadline exceeded before the batch was scored");
  }
  return std::move(p->result);
}

void RewardCore::AwaitQueued(int64_t n) {
  absl::MutexLock lock(&mu_);
  auto enough = [this, n]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return static_cast<int64_t>(queue_.size()) >= n; };
  mu_.Await(absl::Condition(&enough));
}

void RewardCore::BatchLoop() {
  while (true) {
    std::vector<std::shared_ptr<Pending>> batch;
    std::vector<ScoreInput> inputs;
    {
      absl::MutexLock lock(&mu_);
      auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return stopping_ || !queue_.empty(); };
      mu_.Await(absl::Condition(&ready));
      if (stopping_) return;
      absl::Time now = absl::Now();
      int64_t items = 0;
      while (!queue_.empty()) {
        std::shared_ptr<Pending> p = queue_.front();
        if (p->deadline <= now) {  // its caller has given up (or is about to)
          queue_.pop_front();
          TrackQueued(-1);
          p->result = absl::DeadlineExceededError("reward: deadline passed while queued");
          p->done = true;
          continue;
        }
        int64_t size = static_cast<int64_t>(p->items.size());
        if (!batch.empty() && items + size > max_batch_items_) break;
        queue_.pop_front();
        TrackQueued(-1);
        items += size;
        batch.push_back(std::move(p));
      }
      if (batch.empty()) continue;
    }
    for (const auto& p : batch) inputs.insert(inputs.end(), p->items.begin(), p->items.end());
    absl::StatusOr<std::vector<ScoreResult>> all = ScoreWeighted(scorers_, inputs);
    absl::MutexLock lock(&mu_);
    size_t next = 0;
    for (const auto& p : batch) {
      if (all.ok()) {
        auto first = all->begin() + static_cast<std::ptrdiff_t>(next);
        p->result = std::vector<ScoreResult>(first, first + static_cast<std::ptrdiff_t>(p->items.size()));
      } else {
        p->result = all.status();
      }
      next += p->items.size();
      p->done = true;
    }
  }
}

}  // namespace alignd::reward
