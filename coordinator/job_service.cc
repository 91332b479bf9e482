#include "coordinator/job_service.h"

#include <vector>

#include "common/base/status.h"
#include "common/rpc/grpc_status.h"

namespace alignd::coordinator {
namespace {

constexpr absl::Duration kWatchPoll = absl::Seconds(1);

// Runs `body(principal)` for an authenticated caller under HandleRpc.
template <typename Body>
grpc::Status Handle(const grpc::ServerContext& context, const TokenAuthenticator& auth, Body body) {
  return HandleRpc([&]() -> absl::Status {
    ASSIGN_OR_RETURN(Principal caller, CallerOf(context, auth));
    return body(caller);
  });
}

}  // namespace

absl::StatusOr<Principal> CallerOf(const grpc::ServerContext& context, const TokenAuthenticator& auth) {
  const auto& metadata = context.client_metadata();
  auto it = metadata.find("authorization");
  absl::string_view value;
  if (it != metadata.end()) value = absl::string_view(it->second.data(), it->second.size());
  return auth.Authenticate(value);
}

grpc::Status JobServiceImpl::SubmitJob(grpc::ServerContext* context, const v1::SubmitJobRequest* request,
                                       v1::SubmitJobResponse* response) {
  return Handle(*context, *auth_, [&](const Principal& caller) -> absl::Status {
    ASSIGN_OR_RETURN(JobRecord job, manager_->SubmitJob(caller, request->spec_yaml(), request->request_id()));
    *response->mutable_job() = ToProto(job);
    return absl::OkStatus();
  });
}

grpc::Status JobServiceImpl::GetJob(grpc::ServerContext* context, const v1::GetJobRequest* request, v1::Job* response) {
  return Handle(*context, *auth_, [&](const Principal& caller) -> absl::Status {
    ASSIGN_OR_RETURN(JobRecord job, manager_->GetJob(caller, request->id()));
    *response = ToProto(job);
    return absl::OkStatus();
  });
}

grpc::Status JobServiceImpl::ListJobs(grpc::ServerContext* context, const v1::ListJobsRequest* request,
                                      v1::ListJobsResponse* response) {
  return Handle(*context, *auth_, [&](const Principal& caller) -> absl::Status {
    std::vector<v1::JobState> states;
    for (int s : request->states()) states.push_back(static_cast<v1::JobState>(s));
    ASSIGN_OR_RETURN(JobPage page, manager_->ListJobs(caller, states, request->page_size(), request->page_token()));
    for (const JobRecord& job : page.jobs) *response->add_jobs() = ToProto(job);
    response->set_next_page_token(page.next_page_token);
    return absl::OkStatus();
  });
}

grpc::Status JobServiceImpl::CancelJob(grpc::ServerContext* context, const v1::CancelJobRequest* request,
                                       v1::Job* response) {
  return Handle(*context, *auth_, [&](const Principal& caller) -> absl::Status {
    ASSIGN_OR_RETURN(JobRecord job, manager_->CancelJob(caller, request->id()));
    *response = ToProto(job);
    return absl::OkStatus();
  });
}

grpc::Status JobServiceImpl::WatchJob(grpc::ServerContext* context, const v1::WatchJobRequest* request,
                                      grpc::ServerWriter<v1::JobEvent>* writer) {
  return Handle(*context, *auth_, [&](const Principal& caller) -> absl::Status {
    size_t next = 0;
    // Waits are bounded so that a cancelled call or a server shutdown is noticed within kWatchPoll.
    while (!context->IsCancelled()) {
      ASSIGN_OR_RETURN(std::vector<EventRecord> events,
                       manager_->WaitForEvents(caller, request->id(), next, kWatchPoll));
      for (const EventRecord& e : events) {
        if (!writer->Write(ToProto(e))) return absl::CancelledError("the client went away");
      }
      next += events.size();
      if (!events.empty() && IsTerminal(events.back().state)) return absl::OkStatus();
      if (request->past_only()) return absl::OkStatus();
    }
    return absl::CancelledError("watch cancelled");
  });
}

}  // namespace alignd::coordinator
