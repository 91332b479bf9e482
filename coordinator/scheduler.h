// Gang scheduling: a job is placed only when every role it asks for (learners, rollout workers, reward servers) can
// be given a free worker of its device kind at the same time. Jobs are considered by `resources.priority` (higher
// first), oldest first within a priority (FIFO); a job that does not fit is skipped so that smaller jobs behind it can
// run side by side (first fit). A worker serves one job in one
// role at a time.
#ifndef ALIGND_COORDINATOR_SCHEDULER_H_
#define ALIGND_COORDINATOR_SCHEDULER_H_

#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "coordinator/gang_manager.h"
#include "coordinator/job_manager.h"
#include "coordinator/job_store.h"
#include "coordinator/worker_registry.h"

namespace alignd::coordinator {

struct Placement {
  std::string job_id;
  std::vector<std::pair<std::string, v1::Role>> workers;  // (worker id, role); learners first, by rank
};

// Plans placements for `waiting` jobs (oldest first) on `free` workers; pure, for tests and for Scheduler::Tick.
// A worker with several roles is used last for each role, keeping it for jobs that need its other roles.
std::vector<Placement> PlanGangs(const std::vector<JobRecord>& waiting, const std::vector<WorkerRecord>& free);

// Drives jobs through the registry: expires leases (restarting or failing the jobs of lapsed workers), places
// waiting jobs, and refreshes why the rest wait. Call Tick periodically (the server does, once a second) or after a
// registration.
//
// Every assignment carries the job attempt's credential (common/rpc/job_credential.h), minted with this scheduler's key,
// and learner rank 0's worker address as the gang's rendezvous store (store_address); the TCP rendezvous ports are
// still filled in for workers that registered them.
class Scheduler {
 public:
  // Neither may be null; both must outlive the scheduler. Draws a fresh credential key.
  Scheduler(JobManager* jobs, WorkerRegistry* workers);

  // The key job credentials are minted with; workers get it when they register.
  const std::string& credential_key() const { return credential_key_; }

  struct TickResult {
    std::vector<Placement> placed;
    std::vector<std::string> failed_workers;  // lapsed leases
  };
  // Thread-safe: passes are serialised.
  absl::StatusOr<TickResult> Tick();

 private:
  absl::StatusOr<TickResult> TickLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  absl::Mutex mu_;
  JobManager* const jobs_;
  WorkerRegistry* const workers_;
  GangManager gangs_;  // ends the gangs of finished jobs and of lapsed workers
  const std::string credential_key_;
};

}  // namespace alignd::coordinator

#endif  // ALIGND_COORDINATOR_SCHEDULER_H_
