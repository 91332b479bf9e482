// The coordinator process's gRPC server: JobService over a JobManager and a store, with bearer-token auth,
// TLS or mutual TLS from PEM files, WorkerService over a worker registry and a gang scheduler that runs every `schedule_every`,
// grpc.health.v1 health checking, server reflection (when the library is available) and message size limits.
//
//   CoordinatorServer::Options options;
//   options.listen = "127.0.0.1:0";
//   options.db_path = "/var/lib/alignd/jobs.db";
//   ASSIGN_OR_RETURN(auto server, CoordinatorServer::Create(options));
//   ... server->port() ... server->Wait();
#ifndef ALIGND_COORDINATOR_COORDINATOR_SERVER_H_
#define ALIGND_COORDINATOR_COORDINATOR_SERVER_H_

#include <memory>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "common/metrics/prometheus.h"
#include "coordinator/auth.h"
#include "coordinator/job_manager.h"
#include "coordinator/job_store.h"
#include "coordinator/scheduler.h"
#include "coordinator/worker_registry.h"

namespace grpc {
class Channel;
class Server;
}  // namespace grpc

namespace alignd::coordinator {

class JobServiceImpl;
class WorkerServiceImpl;

class CoordinatorServer {
 public:
  struct Options {
    // host:port to listen on; port 0 picks a free port (see port()). Default "127.0.0.1:0".
    std::string listen = "127.0.0.1:0";
    // SQLite database file; empty keeps jobs in memory (lost on exit). Default empty.
    std::string db_path;
    // Tokens file (see auth.h). Empty: no authentication, every caller is admin; allowed only when `listen` is a
    // loopback address. Default empty.
    std::string auth_tokens_file;
    // TLS: PEM certificate chain and private key of the server. Both or neither; neither serves plaintext.
    std::string tls_cert_file;
    std::string tls_key_file;
    // Mutual TLS: PEM CA bundle that client certificates must chain to; clients without one are refused.
    // Requires tls_cert_file. Default empty (no client certificates asked for).
    std::string tls_client_ca_file;
    // Largest request and response messages, in bytes. Default 4 MiB each (a spec is at most 1 MiB).
    int max_receive_message_bytes = 4 << 20;
    int max_send_message_bytes = 4 << 20;
    // Passed to the JobManager (clock, page sizes; its capacity comes from the worker registry).
    JobManager::Options manager;
    // Worker leases (clock, lease_ttl).
    WorkerRegistry::Options workers;
    // How often the scheduler expires leases and places waiting jobs. Default 1 s.
    absl::Duration schedule_every = absl::Seconds(1);
  };

  // Opens the store, reads the tokens, binds and starts serving. INVALID_ARGUMENT for bad options (including no
  // tokens on a non-loopback address), UNAVAILABLE when the address cannot be bound, and the store's errors.
  static absl::StatusOr<std::unique_ptr<CoordinatorServer>> Create(Options options);
  ~CoordinatorServer();

  // The bound port (the chosen one when `listen` asked for port 0).
  int port() const { return port_; }
  // A channel to this server that skips the network (for tests).
  std::shared_ptr<grpc::Channel> InProcessChannel();
  // Stops accepting calls and waits up to `grace` for running ones. Idempotent.
  void Shutdown(absl::Duration grace = absl::Seconds(5));
  // Blocks until Shutdown.
  void Wait();

  JobManager* manager() { return manager_.get(); }
  // The tokens the job API accepts (the page's auth uses them too).
  const TokenAuthenticator& auth() const { return *auth_; }
  WorkerRegistry* workers() { return workers_.get(); }

 private:
  CoordinatorServer() = default;
  // Prometheus gauges read at scrape time: jobs by state, running jobs' progress, worker leases.
  void CollectMetrics(std::vector<metrics::Sample>* out);

  std::unique_ptr<JobStore> store_;
  std::unique_ptr<TokenAuthenticator> auth_;
  std::unique_ptr<JobManager> manager_;
  std::unique_ptr<JobServiceImpl> job_service_;
  std::unique_ptr<WorkerRegistry> workers_;
  std::unique_ptr<Scheduler> scheduler_;
  std::unique_ptr<WorkerServiceImpl> worker_service_;
  std::unique_ptr<grpc::Server> server_;
  absl::Notification stop_ticking_;
  std::thread ticker_;
  int port_ = 0;
  // Last: removed (and any scrape running it finished) before what it reads is destroyed.
  std::unique_ptr<metrics::Registry::CollectorHandle> metrics_;
};

}  // namespace alignd::coordinator

#endif  // ALIGND_COORDINATOR_COORDINATOR_SERVER_H_
