// The job API's core, without gRPC: submission (validated, idempotent), queries, cancellation and the job state
// machine, over a JobStore.
//
//   PENDING -> SCHEDULED -> RUNNING -> SUCCEEDED
//                  |           |----> FAILED        (config error, or restarts spent)
//                  |           '----> RESTARTING -> SCHEDULED ...  (worker failure, restarts left)
//                  '----------------> (the same failure paths as RUNNING)
//   any unfinished state -> CANCELLED
//
// `attempt` counts the times a job was scheduled (0 while it first waits). Every change appends an event; progress
// events and the final one (SUCCEEDED, FAILED, CANCELLED) carry the step the job reached. A job's `total_steps` is its
// spec's train.steps.
// Thread-safe: every method may be called from any thread; read-modify-write sequences are serialised.
#ifndef ALIGND_COORDINATOR_JOB_MANAGER_H_
#define ALIGND_COORDINATOR_JOB_MANAGER_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "coordinator/auth.h"
#include "coordinator/job_store.h"
#include "proto/alignd.pb.h"

namespace alignd::coordinator {

// Free workers per role on one device kind. The worker registry provides it; until one exists, nothing is free.
struct Capacity {
  uint32_t learners = 0;
  uint32_t rollout_workers = 0;
  uint32_t reward_servers = 0;
};

// Why a job asking for `wanted` cannot be placed on `free`: "waiting for resources: learners (cpu): need 2, 1 free";
// empty when it fits.
std::string PendingReason(const v1::Resources& wanted, const Capacity& free);

// Whether `state` is final (SUCCEEDED, FAILED, CANCELLED).
bool IsTerminal(v1::JobState state);

// The job as the wire shows it.
v1::Job ToProto(const JobRecord& job);
// An event as WatchJob streams it.
v1::JobEvent ToProto(const EventRecord& event);

struct JobPage {
  std::vector<JobRecord> jobs;
  std::string next_page_token;  // empty on the last page
};

class JobManager {
 public:
  struct Options {
    // Milliseconds since the Unix epoch. Default: the system clock. Tests pass a fake.
    std::function<int64_t()> now_ms;
    // Free capacity for a device kind, used to say why a pending job waits. Default: nothing free.
    std::function<Capacity(v1::DeviceKind)> capacity;
    // ListJobs page size when the request gives none (default 50), and the largest accepted (default 500).
    uint32_t default_page_size = 50;
    uint32_t max_page_size = 500;
    // Longest accepted request id (default 128 bytes).
    size_t max_request_id_bytes = 128;
    // Folders that paths in specs must stay within (see ValidateJobSpec). Default empty: no confinement.
    std::vector<std::string> path_roots;
  };

  // `store` must outlive the manager. INVALID_ARGUMENT for inconsistent options.
  static absl::StatusOr<std::unique_ptr<JobManager>> Create(JobStore* store, Options options);

  // Validates `spec_yaml` (INVALID_ARGUMENT naming the field) and stores a PENDING job owned by `caller`. With a
  // non-empty `request_id` already used by the same caller: the job made then when the spec is the same, otherwise
  // ALREADY_EXISTS. Worker principals get PERMISSION_DENIED.
  absl::StatusOr<JobRecord> SubmitJob(const Principal& caller, const std::string& spec_yaml,
                                      const std::string& request_id);

  // NOT_FOUND for an unknown id; PERMISSION_DENIED for another user's job (admins see all).
  absl::StatusOr<JobRecord> GetJob(const Principal& caller, const std::string& id);

  // The caller's jobs (every job for admins), oldest first, optionally only in `states`. `page_size` 0 means the
  // default; more than the maximum is clamped. `page_token` is empty or a previous page's next_page_token
  // (INVALID_ARGUMENT otherwise).
  absl::StatusOr<JobPage> ListJobs(const Principal& caller, const std::vector<v1::JobState>& states, uint32_t page_size,
                                   const std::string& page_token);

  // Moves an unfinished job to CANCELLED. NOT_FOUND / PERMISSION_DENIED as GetJob; FAILED_PRECONDITION when the
  // job has already finished.
  absl::StatusOr<JobRecord> CancelJob(const Principal& caller, const std::string& id);

  // The job's events, oldest first (same access rules as GetJob).
  absl::StatusOr<std::vector<EventRecord>> ListEvents(const Principal& caller, const std::string& id);

  // The job's events from position `first` on (0 = the first event). When there are none yet, waits until some job
  // changes or `timeout` passes, then answers again (possibly empty). Same access rules as GetJob.
  absl::StatusOr<std::vector<EventRecord>> WaitForEvents(const Principal& caller, const std::string& id, size_t first,
                                                         absl::Duration timeout);

  // Scheduler-facing transitions. FAILED_PRECONDITION naming both states when the move is not allowed.
  // MarkScheduled: PENDING/RESTARTING -> SCHEDULED, attempt + 1.
  absl::StatusOr<JobRecord> MarkScheduled(const std::string& id, const std::string& message);
  // MarkRunning: SCHEDULED -> RUNNING.
  absl::StatusOr<JobRecord> MarkRunning(const std::string& id);
  // Records a training step and key metrics as a progress event; a SCHEDULED job becomes RUNNING first.
  // FAILED_PRECONDITION for a job in any other state.
  // `note`, when given, is appended to the event's message ("step 12; checkpoint step 10 in DIR").
  absl::StatusOr<JobRecord> ReportProgress(const std::string& id, uint64_t step,
                                           const std::map<std::string, double>& metrics, const std::string& note = "");
  // The highest checkpoint step reported for the job (a progress event's "checkpoint/step" metric), 0 if none.
  absl::StatusOr<uint64_t> LastCheckpoint(const std::string& id);
  // MarkSucceeded: RUNNING -> SUCCEEDED.
  absl::StatusOr<JobRecord> MarkSucceeded(const std::string& id);
  // SCHEDULED/RUNNING -> RESTARTING when `retryable` and restarts remain (attempt <= max_restarts), else FAILED.
  absl::StatusOr<JobRecord> ReportFailure(const std::string& id, const std::string& message, bool retryable);

  // After a coordinator restart no worker holds an assignment, so every SCHEDULED or RUNNING job goes to RESTARTING
  // (its gang is placed again; that new attempt counts against max_restarts). Returns how many jobs moved.
  absl::StatusOr<int> RecoverAfterRestart();

  // Recomputes why each pending job waits (from Options::capacity) and stores changed messages. Returns how many
  // changed.
  absl::StatusOr<int> RefreshPendingReasons();

 private:
  JobManager(JobStore* store, Options options) : store_(store), options_(std::move(options)) {}
  absl::StatusOr<JobRecord> GetOwned(const Principal& caller, const std::string& id);
  // Loads the job, checks that its state is one of `from`, applies `to`/`message`, stores it with an event.
  absl::StatusOr<JobRecord> Transition(const std::string& id, std::vector<v1::JobState> from, v1::JobState to,
                                       const std::string& message, uint32_t attempt_delta = 0)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::string PendingMessage(const v1::Resources& wanted) const;

  JobStore* const store_;
  const Options options_;
  absl::Mutex mu_;  // serialises read-modify-write of jobs
  // Bumped on every write, so that WaitForEvents can wait for a change.
  int64_t version_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace alignd::coordinator

#endif  // ALIGND_COORDINATOR_JOB_MANAGER_H_
