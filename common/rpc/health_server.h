// A plaintext gRPC server that serves grpc.health.v1.Health alone (`--health-listen`), for probes that cannot speak
// TLS or send a token: Kubernetes' `grpc:` liveness and readiness probes. It reports the overall status (service "")
// and nothing else, so it may listen where the main port's TLS and authentication do not reach.
//
// Starting one enables gRPC's default health service for the whole process (grpc::EnableDefaultHealthCheckService
// has no narrower scope), so servers built after it serve Health too; the coordinator enables it anyway.
//
// Thread safety: SetServing and port() are thread-safe.
#ifndef ALIGND_COMMON_RPC_HEALTH_SERVER_H_
#define ALIGND_COMMON_RPC_HEALTH_SERVER_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace grpc {
class CallbackGenericService;
class Server;
}  // namespace grpc

namespace alignd {

class HealthServer {
 public:
  // Listens on `listen` (HOST:PORT, port 0: any free one) and reports SERVING. An empty `listen` starts nothing
  // (nullptr). UNAVAILABLE, naming --health-listen, when it cannot bind.
  static absl::StatusOr<std::unique_ptr<HealthServer>> Start(const std::string& listen);
  ~HealthServer();  // stops serving at once
  HealthServer(const HealthServer&) = delete;
  HealthServer& operator=(const HealthServer&) = delete;

  // SERVING or NOT_SERVING from now on (e.g. NOT_SERVING while the process drains).
  void SetServing(bool serving);
  // The port actually bound (the chosen one when `listen` asked for port 0).
  int port() const { return port_; }

 private:
  HealthServer(std::unique_ptr<grpc::CallbackGenericService> others, std::unique_ptr<grpc::Server> server, int port);

  // Answers every other method UNIMPLEMENTED; a server needs some service of its own before gRPC adds Health.
  std::unique_ptr<grpc::CallbackGenericService> others_;
  std::unique_ptr<grpc::Server> server_;
  const int port_;
};

// The client side, for `alignctl health` (the image's HEALTHCHECK) and tests: calls /grpc.health.v1.Health/Check for
// `service` ("" is the server as a whole) on `address` in plaintext, as a kubelet's grpc: probe does, within
// `timeout`. Returns the status the server reported: 1 SERVING, 2 NOT_SERVING, 3 SERVICE_UNKNOWN (0 UNKNOWN); the
// call's error (UNAVAILABLE when nothing answers, DEADLINE_EXCEEDED, NOT_FOUND for an unknown service) otherwise.
absl::StatusOr<int> CheckHealth(const std::string& address, const std::string& service, absl::Duration timeout);

}  // namespace alignd

#endif  // ALIGND_COMMON_RPC_HEALTH_SERVER_H_
