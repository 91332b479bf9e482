// alignd.v1.WorkerService over the WorkerRegistry, Scheduler and a GangManager: each handler authenticates, calls
// the core and converts the status once (HandleRpc). Callers need a worker or admin token.
// Register hands out a lease (and runs a scheduling pass, so a waiting job can be placed at once). Control is the
// worker's stream: every message must carry a live lease (a stale one gets `stale_lease` and FAILED_PRECONDITION:
// register again) and renews it; after each message the coordinator sends whatever waits for that worker
// (assignments, cancellations), so workers heartbeat about once a second. When a control stream ends (the worker
// stopped or its process died), its lease ends at once. Progress and results go to GangManager (progress moves a
// scheduled job to RUNNING and is recorded as an event; a JobResult finishes the job and ends its gang).
// Thread-safe.
#ifndef ALIGND_COORDINATOR_WORKER_SERVICE_H_
#define ALIGND_COORDINATOR_WORKER_SERVICE_H_

#include "coordinator/auth.h"
#include "coordinator/gang_manager.h"
#include "coordinator/job_manager.h"
#include "coordinator/scheduler.h"
#include "coordinator/worker_registry.h"
#include "proto/alignd.grpc.pb.h"

namespace alignd::coordinator {

class WorkerServiceImpl final : public v1::WorkerService::Service {
 public:
  // None may be null; all must outlive the service.
  WorkerServiceImpl(JobManager* jobs, WorkerRegistry* workers, Scheduler* scheduler, const TokenAuthenticator* auth,
                    absl::Duration lease_ttl)
      : gangs_(jobs, workers), workers_(workers), scheduler_(scheduler), auth_(auth), lease_ttl_(lease_ttl) {}

  grpc::Status Register(grpc::ServerContext* context, const v1::RegisterWorkerRequest* request,
                        v1::RegisterWorkerResponse* response) override;
  grpc::Status Control(grpc::ServerContext* context,
                       grpc::ServerReaderWriter<v1::CoordinatorMessage, v1::WorkerMessage>* stream) override;
  grpc::Status ListWorkers(grpc::ServerContext* context, const v1::ListWorkersRequest* request,
                           v1::ListWorkersResponse* response) override;

 private:
  // Hands one message from `worker_id` to the GangManager (a heartbeat needs nothing more).
  absl::Status Apply(const std::string& worker_id, const v1::WorkerMessage& message);

  GangManager gangs_;  // what reports do to their jobs
  WorkerRegistry* const workers_;
  Scheduler* const scheduler_;
  const TokenAuthenticator* const auth_;
  const absl::Duration lease_ttl_;
};

}  // namespace alignd::coordinator

#endif  // ALIGND_COORDINATOR_WORKER_SERVICE_H_
