// The running gangs' side of the job state machine, without gRPC: what a worker's report (progress, a result) does
// to its job, and the one way a gang ends (its workers freed, every member but the one that knows told to stop).
// WorkerService translates the control stream's messages into these calls; the Scheduler releases the gangs of jobs
// that ended and of lapsed workers through Release.
//
// Thread-safe: the manager and registry are, and this class keeps no state of its own. A report racing with another
// transition (a cancel, a lapsed lease) is not the worker's error and is answered OK.
#ifndef ALIGND_COORDINATOR_GANG_MANAGER_H_
#define ALIGND_COORDINATOR_GANG_MANAGER_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "coordinator/job_manager.h"
#include "coordinator/worker_registry.h"
#include "proto/alignd.pb.h"

namespace alignd::coordinator {

class GangManager {
 public:
  // Neither may be null; both must outlive the gang manager.
  GangManager(JobManager* jobs, WorkerRegistry* workers) : jobs_(jobs), workers_(workers) {}

  // Ends `job_id`'s gang: frees every worker assigned to it and queues `cancel_job_id` for each of them but
  // `except_worker` (the member that reported the end, which knows; empty: tell them all). Returns the freed
  // workers' ids, `except_worker` included. A job without workers frees nothing.
  std::vector<std::string> Release(const std::string& job_id, const std::string& except_worker = "");

  // A worker reports `progress` on its job: a SCHEDULED job becomes RUNNING and the step and metrics are recorded as
  // an event; a checkpoint step is recorded as the metric "checkpoint/step" and a note naming the folder.
  // INVALID_ARGUMENT for an empty job id; NOT_FOUND for an unknown job; OK (nothing recorded) when the job is no
  // longer scheduled or running.
  absl::Status ReportProgress(const v1::Progress& progress);

  // `worker_id` reports how its part of the job ended. Success finishes the job (SUCCEEDED, through RUNNING when it
  // was still SCHEDULED); failure restarts it when `retryable` and restarts remain, else fails it, the message
  // naming the worker. Either way the gang is released and its other members are told to stop. A result for an
  // attempt that is over (result.attempt neither 0 nor the job's attempt) changes nothing. INVALID_ARGUMENT for an
  // empty job id; NOT_FOUND for an unknown job; OK when the job already moved on (cancelled, lease lapsed), the gang
  // released all the same.
  absl::Status ReportResult(const std::string& worker_id, const v1::JobResult& result);

 private:
  JobManager* const jobs_;
  WorkerRegistry* const workers_;
};

}  // namespace alignd::coordinator

#endif  // ALIGND_COORDINATOR_GANG_MANAGER_H_
