#include "coordinator/gang_manager.h"

#include <glog/logging.h>

#include <map>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/base/status.h"

namespace alignd::coordinator {
namespace {

const Principal kGangManager{"gang-manager", Role::kAdmin};

// A transition that raced with another (a cancel, a lapsed lease) is not the worker's error.
absl::Status IgnoreRace(const absl::Status& status) {
  return status.code() == absl::StatusCode::kFailedPrecondition ? absl::OkStatus() : status;
}

}  // namespace

std::vector<std::string> GangManager::Release(const std::string& job_id, const std::string& except_worker) {
  std::vector<std::string> freed = workers_->ReleaseJob(job_id);
  for (const std::string& worker : freed) {
    if (worker == except_worker) continue;
    v1::CoordinatorMessage cancel;
    cancel.set_cancel_job_id(job_id);
    workers_->Push(worker, std::move(cancel));
  }
  return freed;
}

absl::Status GangManager::ReportProgress(const v1::Progress& progress) {
  std::map<std::string, double> metrics(progress.metrics().begin(), progress.metrics().end());
  std::string note;
  if (progress.checkpoint_step() > 0) {
    metrics["checkpoint/step"] = static_cast<double>(progress.checkpoint_step());
    note = absl::StrCat("checkpoint step ", progress.checkpoint_step(), " in ", progress.checkpoint_path());
  }
  return IgnoreRace(jobs_->ReportProgress(progress.job_id(), progress.step(), metrics, note).status());
}

absl::Status GangManager::ReportResult(const std::string& worker_id, const v1::JobResult& result) {
  ASSIGN_OR_RETURN(JobRecord job, jobs_->GetJob(kGangManager, result.job_id()));
  if (result.attempt() != 0 && result.attempt() != job.attempt) {
    // A member of a gang that was replaced (a cancel still on its way, a partition that healed): its word on an
    // attempt that is over must neither end the job nor stop the gang that runs it now.
    LOG(INFO) << worker_id << " reported on " << job.id << " attempt " << result.attempt() << ", which is over (now "
              << job.attempt << "); ignored";
    return absl::OkStatus();
  }
  if (result.succeeded()) {
    if (job.state == v1::JOB_STATE_SCHEDULED) RETURN_IF_ERROR(IgnoreRace(jobs_->MarkRunning(job.id).status()));
    RETURN_IF_ERROR(IgnoreRace(jobs_->MarkSucceeded(job.id).status()));
  } else {
    const std::string why = absl::StrCat(worker_id, ": ", result.message());
    RETURN_IF_ERROR(IgnoreRace(jobs_->ReportFailure(job.id, why, result.retryable()).status()));
  }
  // The gang is over either way: free it and stop the other members.
  Release(job.id, worker_id);
  return absl::OkStatus();
}

}  // namespace alignd::coordinator
