#include "common/health_server.h"

#include <glog/logging.h>
#include <grpcpp/generic/async_generic_service.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>

#include <chrono>

#include "absl/strings/str_cat.h"

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

}  // namespace alignd
