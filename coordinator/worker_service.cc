#include "coordinator/worker_service.h"

#include <glog/logging.h>

#include "absl/strings/str_cat.h"
#include "common/base/status.h"
#include "common/rpc/grpc_status.h"
#include "coordinator/job_service.h"

namespace alignd::coordinator {
namespace {

absl::Status RequireWorker(const grpc::ServerContext& context, const TokenAuthenticator& auth) {
  ASSIGN_OR_RETURN(Principal caller, CallerOf(context, auth));
  if (caller.role == Role::kUser) {
    return absl::PermissionDeniedError(absl::StrCat("\"", caller.name,
                                                    "\" has the user role; workers need a worker "
                                                    "token"));
  }
  return absl::OkStatus();
}

}  // namespace

grpc::Status WorkerServiceImpl::Register(grpc::ServerContext* context, const v1::RegisterWorkerRequest* request,
                                         v1::RegisterWorkerResponse* response) {
  return HandleRpc([&]() -> absl::Status {
    RETURN_IF_ERROR(RequireWorker(*context, *auth_));
    ASSIGN_OR_RETURN(WorkerRecord worker, workers_->Register(request->worker()));
    response->set_worker_id(worker.info.worker_id());
    response->set_lease_id(worker.lease_id);
    response->set_lease_ttl_ms(absl::ToInt64Milliseconds(lease_ttl_));
    response->set_credential_key(scheduler_->credential_key());
    auto tick = scheduler_->Tick();
    if (!tick.ok()) LOG(WARNING) << "scheduling after registering " << worker.info.worker_id() << ": " << tick.status();
    return absl::OkStatus();
  });
}

absl::Status WorkerServiceImpl::Apply(const std::string& worker_id, const v1::WorkerMessage& message) {
  switch (message.body_case()) {
    case v1::WorkerMessage::kProgress:
      return gangs_.ReportProgress(message.progress());
    case v1::WorkerMessage::kResult:
      return gangs_.ReportResult(worker_id, message.result());
    default:
      return absl::OkStatus();  // a heartbeat: the lease was renewed already
  }
}

grpc::Status WorkerServiceImpl::ListWorkers(grpc::ServerContext* context, const v1::ListWorkersRequest* request,
                                            v1::ListWorkersResponse* response) {
  return HandleRpc([&]() -> absl::Status {
    RETURN_IF_ERROR(CallerOf(*context, *auth_).status());
    for (const WorkerRecord& w : workers_->List()) {
      v1::WorkerStatus* status = response->add_workers();
      *status->mutable_worker() = w.info;
      status->set_job_id(w.job_id);
      status->set_assigned_role(w.assigned_role);
      status->set_lease_expires_unix_ms(w.lease_expires_ms);
    }
    return absl::OkStatus();
  });
}

grpc::Status WorkerServiceImpl::Control(grpc::ServerContext* context,
                                        grpc::ServerReaderWriter<v1::CoordinatorMessage, v1::WorkerMessage>* stream) {
  return HandleRpc([&]() -> absl::Status {
    RETURN_IF_ERROR(RequireWorker(*context, *auth_));
    v1::WorkerMessage message;
    std::string lease;  // the lease this stream renews, once known
    while (stream->Read(&message)) {
      absl::StatusOr<std::string> worker_id = workers_->Heartbeat(message.lease_id());
      if (!worker_id.ok()) {
        v1::CoordinatorMessage stale;
        stale.set_stale_lease(message.lease_id());
        stream->Write(stale);
        return worker_id.status();
      }
      lease = message.lease_id();
      RETURN_IF_ERROR(Apply(*worker_id, message));
      for (v1::CoordinatorMessage& out : workers_->TakeOutbox(*worker_id)) {
        if (!stream->Write(out)) break;
      }
    }
    // The stream ended: the worker closed it or its process died (the kernel closes its connections). Either way its
    // assignment cannot go on, so its lease ends now rather than after the TTL, and the scheduler's next pass (within
    // a second) restarts its gang. A worker whose connection merely broke is told its lease is stale and registers
    // again.
    if (!lease.empty()) workers_->ExpireNow(lease);
    return absl::OkStatus();
  });
}

}  // namespace alignd::coordinator
