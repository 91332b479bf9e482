#include "coordinator/job_client.h"

#include <grpcpp/grpcpp.h>

#include "absl/strings/str_cat.h"
#include "common/base/file_util.h"
#include "common/base/status.h"
#include "common/rpc/grpc_status.h"
#include "coordinator/address.h"

namespace alignd::coordinator {

absl::StatusOr<std::unique_ptr<JobClient>> JobClient::Connect(const Options& options) {
  if (options.address.empty()) return absl::InvalidArgumentError("coordinator address is empty");
  if (options.timeout <= absl::ZeroDuration()) return absl::InvalidArgumentError("timeout must be positive");
  const bool tls = !options.tls_ca_file.empty();
  if (!tls && !options.token.empty() && !IsLoopbackAddress(options.address)) {
    return absl::FailedPreconditionError(absl::StrCat("refusing to send a token over plaintext to ", options.address,
                                                      ", which is not a loopback address (use --tls-ca)"));
  }
  if (options.tls_cert_file.empty() != options.tls_key_file.empty()) {
    return absl::InvalidArgumentError("--tls-cert and --tls-key go together");
  }
  if (!tls && !options.tls_cert_file.empty()) return absl::InvalidArgumentError("--tls-cert needs --tls-ca");
  std::shared_ptr<grpc::ChannelCredentials> credentials = grpc::InsecureChannelCredentials();
  grpc::ChannelArguments args;
  if (tls) {
    grpc::SslCredentialsOptions ssl;
    ASSIGN_OR_RETURN(ssl.pem_root_certs, ReadFile(options.tls_ca_file));
    if (!options.tls_cert_file.empty()) {
      ASSIGN_OR_RETURN(ssl.pem_cert_chain, ReadFile(options.tls_cert_file));
      ASSIGN_OR_RETURN(ssl.pem_private_key, ReadFile(options.tls_key_file));
    }
    credentials = grpc::SslCredentials(ssl);
    if (!options.tls_server_name.empty()) args.SetSslTargetNameOverride(options.tls_server_name);
  }
  auto channel = grpc::CreateCustomChannel(options.address, credentials, args);
  return std::make_unique<JobClient>(v1::JobService::NewStub(channel), options.token, options.timeout,
                                     v1::WorkerService::NewStub(channel));
}

void JobClient::Prepare(grpc::ClientContext* context) const {
  context->set_deadline(absl::ToChronoTime(absl::Now() + timeout_));
  if (!token_.empty()) context->AddMetadata("authorization", "Bearer " + token_);
}

absl::StatusOr<v1::Job> JobClient::Submit(const std::string& spec_yaml, const std::string& request_id) {
  grpc::ClientContext context;
  Prepare(&context);
  v1::SubmitJobRequest request;
  request.set_spec_yaml(spec_yaml);
  request.set_request_id(request_id);
  v1::SubmitJobResponse response;
  grpc::Status status = stub_->SubmitJob(&context, request, &response);
  if (!status.ok()) return FromGrpcStatus(status);
  return response.job();
}

absl::StatusOr<v1::Job> JobClient::Get(const std::string& id) {
  grpc::ClientContext context;
  Prepare(&context);
  v1::GetJobRequest request;
  request.set_id(id);
  v1::Job response;
  grpc::Status status = stub_->GetJob(&context, request, &response);
  if (!status.ok()) return FromGrpcStatus(status);
  return response;
}

absl::StatusOr<v1::ListJobsResponse> JobClient::List(const std::vector<v1::JobState>& states, uint32_t page_size,
                                                     const std::string& page_token) {
  grpc::ClientContext context;
  Prepare(&context);
  v1::ListJobsRequest request;
  for (v1::JobState s : states) request.add_states(s);
  request.set_page_size(page_size);
  request.set_page_token(page_token);
  v1::ListJobsResponse response;
  grpc::Status status = stub_->ListJobs(&context, request, &response);
  if (!status.ok()) return FromGrpcStatus(status);
  return response;
}

absl::StatusOr<v1::ListWorkersResponse> JobClient::ListWorkers() {
  if (worker_stub_ == nullptr) return absl::FailedPreconditionError("this client has no WorkerService stub");
  grpc::ClientContext context;
  Prepare(&context);
  v1::ListWorkersResponse response;
  grpc::Status status = worker_stub_->ListWorkers(&context, v1::ListWorkersRequest(), &response);
  if (!status.ok()) return FromGrpcStatus(status);
  return response;
}

absl::Status JobClient::Watch(const std::string& id, absl::Duration timeout,
                              const std::function<void(const v1::JobEvent&)>& on_event, bool past_only) {
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + timeout));
  if (!token_.empty()) context.AddMetadata("authorization", "Bearer " + token_);
  v1::WatchJobRequest request;
  request.set_id(id);
  request.set_past_only(past_only);
  std::unique_ptr<grpc::ClientReaderInterface<v1::JobEvent>> reader = stub_->WatchJob(&context, request);
  v1::JobEvent event;
  while (reader->Read(&event)) on_event(event);
  return FromGrpcStatus(reader->Finish());
}

absl::StatusOr<v1::Job> JobClient::Cancel(const std::string& id) {
  grpc::ClientContext context;
  Prepare(&context);
  v1::CancelJobRequest request;
  request.set_id(id);
  v1::Job response;
  grpc::Status status = stub_->CancelJob(&context, request, &response);
  if (!status.ok()) return FromGrpcStatus(status);
  return response;
}

}  // namespace alignd::coordinator
