#include "coordinator/worker_service.h"

#include <glog/logging.h>

#include "absl/strings/str_cat.h"
#include "common/base/status.h"
#include "common/rpc/grpc_status.h"
#include "coordinator/job_service.h"

namespace alignd::coordinator {
namespace {

const Principal kWorkerAdmin{"worker-service", Role::kAdmin};

absl::Status RequireWorker(const grpc::ServerContext& context, const TokenAuthenticator& auth) {
  ASSIGN_OR_RETURN(Principal caller, CallerOf(context, auth));
  if (caller.role == Role::kUser) {
    return absl::PermissionDeniedError(absl::StrCat("\"", caller.name,
                                                    "\" has the user role; workers need a worker "
                                                    "token"));
  }
  return absl::OkStatus();
}

// A transition that raced with another (a cancel, a lapsed lease) is not the worker's error.
absl::Status IgnoreRace(const absl::Status& status) {
  return status.code() == absl::StatusCode::kFailedPrecondition ? absl::OkStatus() : status;
}

}  // namespace

grpc::Status WorkerServiceImpl::Register(grpc::ServerContext* context, const v1::RegisterWorkerRequest* request,
                                         v1::RegisterWorkerResponse* response) {
  return ToGrpcStatus([&]() -> absl::Status {
    RETURN_IF_ERROR(RequireWorker(*context, *auth_));
    ASSIGN_OR_RETURN(WorkerRecord worker, workers_->Register(request->worker()));
    response->set_worker_id(worker.info.worker_id());
    response->set_lease_id(worker.lease_id);
    response->set_lease_ttl_ms(absl::ToInt64Milliseconds(lease_ttl_));
    response->set_credential_key(scheduler_->credential_key());
    auto tick = scheduler_->Tick();
    if (!tick.ok()) LOG(WARNING) << "scheduling after registering " << worker.info.worker_id() << ": " << tick.status();
    return absl::OkStatus();
  }());
}

absl::Status WorkerServiceImpl::Apply(const std::string& worker_id, const v1::WorkerMessage& message) {
  switch (message.body_case()) {
    case v1::WorkerMessage::kProgress: {
      const v1::Progress& progress = message.progress();
      std::map<std::string, double> metrics(progress.metrics().begin(), progress.metrics().end());
      std::string note;
      if (progress.checkpoint_step() > 0) {
        metrics["checkpoint/step"] = static_cast<double>(progress.checkpoint_step());
        note = absl::StrCat("checkpoint step ", progress.checkpoint_step(), " in ", progress.checkpoint_path());
      }
      return IgnoreRace(jobs_->ReportProgress(progress.job_id(), progress.step(), metrics, note).status());
    }
    case v1::WorkerMessage::kResult: {
      const v1::JobResult& result = message.result();
      ASSIGN_OR_RETURN(JobRecord job, jobs_->GetJob(kWorkerAdmin, result.job_id()));
      if (result.attempt() != 0 && result.attempt() != job.attempt) {
        // A member of a gang that was replaced (a cancel still on its way, a partition that healed): its word on an
        // attempt that is over must neither end the job nor stop the gang that runs it now.
        LOG(INFO) << worker_id << " reported on " << job.id << " attempt " << result.attempt()
                  << ", which is over (now " << job.attempt << "); ignored";
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
      for (const std::string& other : workers_->ReleaseJob(job.id)) {
        if (other == worker_id) continue;
        v1::CoordinatorMessage cancel;
        cancel.set_cancel_job_id(job.id);
        workers_->Push(other, std::move(cancel));
      }
      return absl::OkStatus();
    }
    default:
      return absl::OkStatus();  // a heartbeat: the lease was renewed already
  }
}

grpc::Status WorkerServiceImpl::ListWorkers(grpc::ServerContext* context, const v1::ListWorkersRequest* request,
                                            v1::ListWorkersResponse* response) {
  return ToGrpcStatus([&]() -> absl::Status {
    RETURN_IF_ERROR(CallerOf(*context, *auth_).status());
    for (const WorkerRecord& w : workers_->List()) {
      v1::WorkerStatus* status = response->add_workers();
      *status->mutable_worker() = w.info;
      status->set_job_id(w.job_id);
      status->set_assigned_role(w.assigned_role);
      status->set_lease_expires_unix_ms(w.lease_expires_ms);
    }
    return absl::OkStatus();
  }());
}

grpc::Status WorkerServiceImpl::Control(grpc::ServerContext* context,
                                        grpc::ServerReaderWriter<v1::CoordinatorMessage, v1::WorkerMessage>* stream) {
  absl::Status allowed = RequireWorker(*context, *auth_);
  if (!allowed.ok()) return ToGrpcStatus(allowed);
  v1::WorkerMessage message;
  std::string lease;  // the lease this stream renews, once known
  while (stream->Read(&message)) {
    absl::StatusOr<std::string> worker_id = workers_->Heartbeat(message.lease_id());
    if (worker_id.ok()) lease = message.lease_id();
    if (!worker_id.ok()) {
      v1::CoordinatorMessage stale;
      stale.set_stale_lease(message.lease_id());
      stream->Write(stale);
      return ToGrpcStatus(worker_id.status());
    }
    absl::Status applied = Apply(*worker_id, message);
    if (!applied.ok()) return ToGrpcStatus(applied);
    for (v1::CoordinatorMessage& out : workers_->TakeOutbox(*worker_id)) {
      if (!stream->Write(out)) break;
    }
  }
  // The stream ended: the worker closed it or its process died (the kernel closes its connections). Either way its
  // assignment cannot go on, so its lease ends now rather than after the TTL, and the scheduler's next pass (within
  // a second) restarts its gang. A worker whose connection merely broke is told its lease is stale and registers again.
  if (!lease.empty()) workers_->ExpireNow(lease);
  return grpc::Status::OK;
}

}  // namespace alignd::coordinator
