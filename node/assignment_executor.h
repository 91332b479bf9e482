// The assignments a node holds: a queue run one at a time, on a thread of the executor's own.
//
// Each assignment goes to the Runner of its role. Its outcome is reported through `report` (a JobResult):
//   - cancelled (Cancel, CancelAll, Stop): nothing is reported, whatever the runner returned;
//   - succeeded: reported by learner rank 0 only (it alone reports the job's success);
//   - failed with a configuration error (IsRetryable false): reported at once, retryable = false;
//   - failed otherwise: reported retryable after `peer_failure_grace` on the clock, unless cancelled meanwhile. A
//     lost peer shows up as a network or collective error a moment before the coordinator sees the peer's stream
//     close; the wait lets the coordinator learn first which member died, so that the restarted gang avoids it.
// An assignment of a role with no runner fails as INVALID_ARGUMENT.
//
// Torch-free. Thread safety: every public method is thread-safe.
#ifndef ALIGND_NODE_ASSIGNMENT_EXECUTOR_H_
#define ALIGND_NODE_ASSIGNMENT_EXECUTOR_H_

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/rpc/job_credential.h"
#include "node/clock.h"
#include "node/runner.h"
#include "proto/alignd.pb.h"

namespace alignd::node {

// Whether a failure may go away on a restart: false for configuration errors (INVALID_ARGUMENT, NOT_FOUND,
// PERMISSION_DENIED, UNIMPLEMENTED), true otherwise.
bool IsRetryable(const absl::Status& status);

// The job and attempt of `assignment`.
JobIdentity IdentityOf(const v1::Assignment& assignment);

class AssignmentExecutor {
 public:
  struct Options {
    std::string name;                                      // for logs: the node's address
    absl::Duration peer_failure_grace = absl::Seconds(2);  // >= 0, see above
  };
  using Runners = std::map<v1::Role, std::unique_ptr<Runner>>;
  // Called on the executor's thread, with no lock of the executor held.
  using ReportFn = std::function<void(const v1::JobResult&)>;

  // INVALID_ARGUMENT for a null clock or runner, no report function, or a negative grace. Does not start: see Start.
  static absl::StatusOr<std::unique_ptr<AssignmentExecutor>> Create(Runners runners, std::shared_ptr<Clock> clock,
                                                                    Options options, ReportFn report);
  ~AssignmentExecutor();  // Stop()
  AssignmentExecutor(const AssignmentExecutor&) = delete;
  AssignmentExecutor& operator=(const AssignmentExecutor&) = delete;

  // Starts the executor's thread. Call once.
  void Start();
  // Drops the queue, cancels the running assignment and joins the thread (after the runner returns). Idempotent.
  void Stop();

  // Queues `assignment` behind those held.
  void Enqueue(const v1::Assignment& assignment);
  // Drops `job_id`'s queued assignments and cancels its running one.
  void Cancel(const std::string& job_id);
  // Drops the queue and cancels the running assignment.
  void CancelAll();

  // Blocks until nothing is held (the running assignment has returned and the queue is empty), Stop, or `deadline` on
  // the clock; returns whether nothing is held.
  bool AwaitIdle(absl::Time deadline);

  // The jobs held: the running one first, then the queue in order.
  std::vector<JobIdentity> Held() const;
  // Assignments finished (successfully or not, cancelled or not) since Start.
  int64_t done() const { return done_.load(); }

 private:
  struct Task {
    v1::Assignment assignment;
    CancelSignal cancel;
  };
  AssignmentExecutor(Runners runners, std::shared_ptr<Clock> clock, Options options, ReportFn report);
  void Loop();
  absl::Status Run(const Task& task);
  void Finish(const Task& task, const absl::Status& status);

  const Runners runners_;
  const std::shared_ptr<Clock> clock_;
  const Options options_;
  const ReportFn report_;

  mutable absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::deque<v1::Assignment> pending_ ABSL_GUARDED_BY(mu_);
  std::shared_ptr<Task> current_ ABSL_GUARDED_BY(mu_);
  std::atomic<int64_t> done_{0};
  std::thread thread_;
};

}  // namespace alignd::node

#endif  // ALIGND_NODE_ASSIGNMENT_EXECUTOR_H_
