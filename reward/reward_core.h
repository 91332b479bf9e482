// The reward server's core, free of gRPC: a weighted sum of scorers behind a bounded request queue. One batch thread
// takes queued requests in arrival order, groups several into one scorer call (up to max_batch_items, so the reward
// model sees full batches), and hands each caller its own results.
//
// Back-pressure: a request that finds max_queued_requests waiting is answered RESOURCE_EXHAUSTED at once instead of
// growing the queue. Deadlines: a caller waits at most until its deadline (DEADLINE_EXCEEDED); a request whose
// deadline passed while it was queued is dropped before scoring.
//
// Thread safety: all public methods are thread-safe. The destructor answers every queued request UNAVAILABLE and
// joins the batch thread (after the batch being scored finishes).
#ifndef ALIGND_REWARD_REWARD_CORE_H_
#define ALIGND_REWARD_REWARD_CORE_H_

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "reward/scorer.h"

namespace alignd::reward {

class RewardCore {
 public:
  struct Options {
    // The parts. Required: at least one, names unique and non-empty, weights finite, scorers non-null.
    std::vector<WeightedScorer> scorers;
    // Requests waiting (not yet being scored) at most; one more is answered RESOURCE_EXHAUSTED. Default 16; >= 1.
    int64_t max_queued_requests = 16;
    // Items in one request at most; a larger request is answered INVALID_ARGUMENT (it could never be served as it
    // stands, so retrying would not help: the client must split it). Default 1024; >= 1.
    int64_t max_request_items = 1024;
    // Items scored in one scorer call at most when grouping queued requests (a single request is never split).
    // Default 64; >= 1.
    int64_t max_batch_items = 64;
  };

  // INVALID_ARGUMENT naming the field for options outside the ranges above.
  static absl::StatusOr<std::unique_ptr<RewardCore>> Create(Options options);
  ~RewardCore();
  RewardCore(const RewardCore&) = delete;
  RewardCore& operator=(const RewardCore&) = delete;

  // Scores `items`, one result per item in order, waiting until `deadline` at most. INVALID_ARGUMENT for an empty or
  // oversized request; DEADLINE_EXCEEDED when the deadline passes first (or has passed already); RESOURCE_EXHAUSTED
  // when the queue is full; a scorer's error (its message prefixed with the scorer's name) fails every request of
  // the batch it was grouped into.
  absl::StatusOr<std::vector<ScoreResult>> Score(std::vector<ScoreInput> items, absl::Time deadline)
      ABSL_LOCKS_EXCLUDED(mu_);

  // Blocks until at least `n` requests wait in the queue (not yet taken by the batch thread). For tests and drains.
  void AwaitQueued(int64_t n) ABSL_LOCKS_EXCLUDED(mu_);

  // The parts' names, in the order of Options::scorers.
  const std::vector<std::string>& part_names() const { return part_names_; }

 private:
  struct Pending;
  explicit RewardCore(Options options);
  void BatchLoop() ABSL_LOCKS_EXCLUDED(mu_);
  std::vector<WeightedScorer> scorers_;  // used by the batch thread only
  const int64_t max_queued_requests_;
  const int64_t max_request_items_;
  const int64_t max_batch_items_;
  std::vector<std::string> part_names_;

  absl::Mutex mu_;
  std::deque<std::shared_ptr<Pending>> queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread batch_thread_;  // started last in the constructor
};

}  // namespace alignd::reward

#endif  // ALIGND_REWARD_REWARD_CORE_H_
