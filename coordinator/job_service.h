// alignd.v1.JobService over a JobManager: each handler authenticates the caller from its bearer token, checks the
// request, calls the manager and converts the status once. WatchJob streams the job's events (every past one first)
// and ends with OK after the event that finishes the job (or, with past_only, after the events recorded so far).
// Thread-safe (the manager and authenticator are).
#ifndef ALIGND_COORDINATOR_JOB_SERVICE_H_
#define ALIGND_COORDINATOR_JOB_SERVICE_H_

#include "coordinator/auth.h"
#include "coordinator/job_manager.h"
#include "proto/alignd.grpc.pb.h"

namespace alignd::coordinator {

// Reads "authorization" from the call's metadata and authenticates it.
absl::StatusOr<Principal> CallerOf(const grpc::ServerContext& context, const TokenAuthenticator& auth);

class JobServiceImpl final : public v1::JobService::Service {
 public:
  // Neither may be null; both must outlive the service.
  JobServiceImpl(JobManager* manager, const TokenAuthenticator* auth) : manager_(manager), auth_(auth) {}

  grpc::Status SubmitJob(grpc::ServerContext* context, const v1::SubmitJobRequest* request,
                         v1::SubmitJobResponse* response) override;
  grpc::Status GetJob(grpc::ServerContext* context, const v1::GetJobRequest* request, v1::Job* response) override;
  grpc::Status ListJobs(grpc::ServerContext* context, const v1::ListJobsRequest* request,
                        v1::ListJobsResponse* response) override;
  grpc::Status CancelJob(grpc::ServerContext* context, const v1::CancelJobRequest* request, v1::Job* response) override;
  grpc::Status WatchJob(grpc::ServerContext* context, const v1::WatchJobRequest* request,
                        grpc::ServerWriter<v1::JobEvent>* writer) override;

 private:
  JobManager* const manager_;
  const TokenAuthenticator* const auth_;
};

}  // namespace alignd::coordinator

#endif  // ALIGND_COORDINATOR_JOB_SERVICE_H_
