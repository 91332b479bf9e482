#include "common/rpc/health_server.h"

#include <glog/logging.h>
#include <grpcpp/generic/async_generic_service.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/impl/codegen/client_unary_call.h>

#include <chrono>

#include "absl/strings/str_cat.h"
#include "common/rpc/grpc_status.h"

namespace alignd {

absl::StatusOr<std::unique_ptr<HealthServer>> HealthServer::Start(const std::string& listen) {
  if (listen.empty()) return std::unique_ptr<HealthServer>();
  grpc::EnableDefaultHealthCheckService(true);
  auto others = std::make_unique<grpc::CallbackGenericService>();
  grpc::ServerBuilder builder;
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);  // a port in use is an error, not shared
  builder.RegisterCallbackGenericService(others.get());
  int port = 0;
  builder.AddListeningPort(listen, grpc::InsecureServerCredentials(), &port);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || port == 0) {
    return absl::UnavailableError(absl::StrCat("--health-listen: cannot listen on ", listen));
  }
  LOG(INFO) << "gRPC health on " << listen << " (port " << port << ", plaintext)";
  return std::unique_ptr<HealthServer>(new HealthServer(std::move(others), std::move(server), port));
}

HealthServer::HealthServer(std::unique_ptr<grpc::CallbackGenericService> others, std::unique_ptr<grpc::Server> server,
                           int port)
    : others_(std::move(others)), server_(std::move(server)), port_(port) {}

HealthServer::~HealthServer() { server_->Shutdown(std::chrono::system_clock::now()); }

void HealthServer::SetServing(bool serving) { server_->GetHealthCheckService()->SetServingStatus(serving); }

absl::StatusOr<int> CheckHealth(const std::string& address, const std::string& service, absl::Duration timeout) {
  if (service.size() > 127) return absl::InvalidArgumentError("health: the service name is over 127 bytes");
  // HealthCheckRequest{string service = 1} and HealthCheckResponse{ServingStatus status = 1}, encoded by hand: the
  // health proto is not among the ones this build generates, and these two fields are all there is.
  std::string request_bytes;
  if (!service.empty()) {
    request_bytes.push_back('\x0a');
    request_bytes.push_back(static_cast<char>(service.size()));
    request_bytes += service;
  }
  auto channel = grpc::CreateChannel(address, grpc::InsecureChannelCredentials());
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + timeout));
  grpc::Slice slice(request_bytes);
  grpc::ByteBuffer request(&slice, 1), response;
  grpc::Status status = grpc::internal::BlockingUnaryCall<grpc::ByteBuffer, grpc::ByteBuffer>(
      channel.get(), grpc::internal::RpcMethod("/grpc.health.v1.Health/Check", grpc::internal::RpcMethod::NORMAL_RPC),
      &context, request, &response);
  if (!status.ok()) return FromGrpcStatus(status);
  std::vector<grpc::Slice> slices;
  if (!response.Dump(&slices).ok()) return absl::InternalError("health: cannot read the response");
  std::string bytes;
  for (const auto& s : slices) bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
  if (bytes.empty()) return 0;  // status UNKNOWN (0) is the default value, sent as no field at all
  if (bytes.size() == 2 && bytes[0] == '\x08' && static_cast<unsigned char>(bytes[1]) < 0x80) return bytes[1];
  return absl::InternalError(absl::StrCat("health: a response of ", bytes.size(), " bytes that is not a status"));
}

}  // namespace alignd
