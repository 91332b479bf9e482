// `alignd worker` and `alignd local`: worker processes, and the embedded default (a coordinator and workers in one
// process on loopback).
#include <grpcpp/grpcpp.h>
#include <torch/cuda.h>

#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "cli/commands.h"
#include "cli/coordinator_command.h"
#include "common/base/file_util.h"
#include "common/base/flags.h"
#include "common/base/pod_identity.h"
#include "common/base/status.h"
#include "common/metrics/http_server.h"
#include "common/model/device.h"
#include "common/rpc/health_server.h"
#include "coordinator/address.h"
#include "coordinator/coordinator_server.h"
#include "node/node.h"

namespace alignd::cli {
namespace {

int ServeWorker(const Args& args, std::ostream& out, std::ostream& err, absl::Notification* stop) {
  FlagSet flags("alignd worker --coordinator=HOST:PORT --roles=learner,rollout,reward [--device=cpu|cuda] [flags]");
  flags.String("coordinator", "127.0.0.1:7070", "coordinator address HOST:PORT", "ALIGND_COORDINATOR");
  DeclareTokenFlags(flags, "bearer token with the worker role");
  flags.String("tls-ca", "", "PEM CA bundle to verify the coordinator and the other workers with: use TLS",
               "ALIGND_TLS_CA");
  flags.String("tls-cert", "",
               "PEM certificate of this worker (for --advertise-host), signed by --tls-ca: its server "
               "serves TLS and requires peers' certificates; also its client certificate",
               "ALIGND_TLS_CERT");
  flags.String("tls-key", "", "PEM private key of --tls-cert", "ALIGND_TLS_KEY");
  flags.String("roles", "learner,rollout,reward", "comma-separated roles this worker takes (one job at a time)");
  flags.String("device", "cpu",
               "cpu, cuda or cuda:N: where this worker's jobs run (FAILED_PRECONDITION without a GPU)");
  flags.Int("device-count", 0, "GPUs this worker advertises (cuda; 0: 1)");
  flags.String("listen", "127.0.0.1:0", "address of this worker's own Rollout/Reward server (port 0: any free)");
  flags.String("metrics-listen", "",
               "HOST:PORT to serve Prometheus metrics on, at /metrics (port 0: any free; "
               "default: none)");
  flags.String("advertise-host", "",
               "host that other workers reach this worker at (default: from the pod, "
               "see common/base/pod_identity.h: POD_NAME under ALIGND_ADVERTISE_DOMAIN, or POD_IP; else 127.0.0.1)",
               "ALIGND_ADVERTISE_HOST");
  flags.String("health-listen", "",
               "HOST:PORT to serve plaintext grpc.health.v1 alone on, for probes that cannot "
               "speak TLS (Kubernetes' grpc: probes; default: none)");
  flags.Int("threads", 0, "intra-op threads for jobs that do not set `threads` (0: the cores available)");
  flags.Int("collective-timeout-ms", 0,
            "bound on each rendezvous and collective of a job's learner and weight-broadcast groups, so a member "
            "whose peer dropped off the network is free again after it (0: 10 min learners, 2 min broadcast)");
  if (auto code = ParseFlags(flags, args,
                             "Registers with the coordinator and runs the learner, rollout or reward assignments it "
                             "sends, until SIGINT/SIGTERM.",
                             out, err)) {
    return *code;
  }
  node::NodeOptions o;
  auto roles = node::ParseRoles(flags.GetString("roles"));
  if (!roles.ok()) return ReportError(roles.status(), err);
  o.roles = *roles;
  auto device = ResolveDevice(flags.GetString("device"), "--device");
  if (!device.ok()) return ReportError(device.status(), err);
  o.device = device->is_cuda() ? v1::DEVICE_KIND_CUDA : v1::DEVICE_KIND_CPU;
  o.torch_device = *device;
  o.device_count = static_cast<uint32_t>(std::max<int64_t>(0, flags.GetInt("device-count")));
  if (device->is_cuda() && o.device_count == 0) o.device_count = 1;
  o.coordinator = flags.GetString("coordinator");
  auto token = TokenFromFlags(flags);
  if (!token.ok()) return ReportError(token.status(), err);
  o.token = *token;
  o.listen = flags.GetString("listen");
  auto identity = ResolveWorkerIdentity(flags.GetString("advertise-host"), FlagSet::ProcessEnv);
  if (!identity.ok()) return ReportError(identity.status(), err);
  o.advertise_host = identity->advertise_host;
  o.threads = static_cast<int>(flags.GetInt("threads"));
  if (flags.GetInt("collective-timeout-ms") < 0) {
    err << "error: --collective-timeout-ms must be >= 0\n";
    return 2;
  }
  o.collective_timeout = absl::Milliseconds(flags.GetInt("collective-timeout-ms"));
  const std::string ca = flags.GetString("tls-ca"), cert = flags.GetString("tls-cert"),
                    key = flags.GetString("tls-key");
  if (cert.empty() != key.empty()) {
    return ReportError(absl::InvalidArgumentError("--tls-cert and --tls-key go together"), err);
  }
  if (!cert.empty() && ca.empty()) {
    return ReportError(absl::InvalidArgumentError("--tls-cert needs --tls-ca (the CA the peers' certificates chain "
                                                  "to)"),
                       err);
  }
  if (!ca.empty() && cert.empty() && !coordinator::IsLoopbackAddress(o.listen)) {
    return ReportError(absl::FailedPreconditionError(
                           absl::StrCat("with --tls-ca the cluster runs TLS, so this worker's own server on ", o.listen,
                                        " must too: give --tls-cert and --tls-key")),
                       err);
  }
  if (!ca.empty()) {
    auto ca_pem = ReadFile(ca);
    if (!ca_pem.ok()) return ReportError(ca_pem.status(), err);
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = *ca_pem;
    if (!cert.empty()) {
      auto cert_pem = ReadFile(cert);
      if (!cert_pem.ok()) return ReportError(cert_pem.status(), err);
      auto key_pem = ReadFile(key);
      if (!key_pem.ok()) return ReportError(key_pem.status(), err);
      ssl.pem_cert_chain = *cert_pem;
      ssl.pem_private_key = *key_pem;
      grpc::SslServerCredentialsOptions server(GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
      server.pem_root_certs = *ca_pem;
      server.pem_key_cert_pairs.push_back({*key_pem, *cert_pem});
      o.server_credentials = grpc::SslServerCredentials(server);
      o.peer_credentials = grpc::SslCredentials(ssl);
    }
    o.credentials = grpc::SslCredentials(ssl);
  } else if (!o.token.empty() && !coordinator::IsLoopbackAddress(o.coordinator)) {
    return ReportError(
        absl::FailedPreconditionError(absl::StrCat("refusing to send a token over plaintext to ", o.coordinator,
                                                   ", which is not a loopback address (use --tls-ca)")),
        err);
  }
  auto node = node::WorkerNode::Start(o);
  if (!node.ok()) return ReportError(node.status(), err);
  auto metrics = StartMetricsServer(flags.GetString("metrics-listen"));
  if (!metrics.ok()) return ReportError(metrics.status(), err);
  auto health = HealthServer::Start(flags.GetString("health-listen"));
  if (!health.ok()) return ReportError(health.status(), err);
  const std::string pod = DescribePod(*identity);
  out << "worker serving on " << (*node)->address() << (pod.empty() ? "" : " (" + pod + ")") << ", coordinator "
      << o.coordinator << std::endl;
  if (*metrics)
    out << "metrics on http://" << (*metrics)->host() << ":" << (*metrics)->port() << "/metrics" << std::endl;
  if (*health) out << "health on port " << (*health)->port() << std::endl;
  stop->WaitForNotification();
  if (*health) (*health)->SetServing(false);
  (*node)->Stop();
  return 0;
}

int ServeLocal(const Args& args, std::ostream& out, std::ostream& err, absl::Notification* stop) {
  FlagSet flags("alignd local [--learners=N --rollout=N --reward=N] [--dir=PATH] [--listen=HOST:PORT]");
  flags.Int("learners", 1, "learner workers");
  flags.Int("rollout", 1, "rollout workers");
  flags.Int("reward", 1, "reward servers");
  flags.String("dir", "runs/local", "folder for the job database (alignd.db, SQLite)");
  flags.String("listen", "127.0.0.1:7070", "loopback address of the coordinator (port 0: any free)");
  flags.Int("threads", 0, "intra-op threads for jobs that do not set `threads` (0: the cores available)");
  flags.Int("lease-ttl-ms", 10000, "a worker silent for this long is dead and its job restarts");
  flags.String("device", "cpu", "cpu, cuda or cuda:N: every worker's device (cuda: they share that one GPU)");
  flags.String("metrics-listen", "",
               "HOST:PORT to serve the process's Prometheus metrics on, at /metrics (port 0: "
               "any free; default: none)");
  flags.String("http-listen", "",
               "loopback HOST:PORT to serve the page on: jobs, curves, workers (port 0: any free; "
               "default: none)");
  if (auto code = ParseFlags(flags, args,
                             "Runs a coordinator and workers in this one process on loopback, with SQLite under "
                             "--dir; alignctl talks to it like to any cluster. Stops on SIGINT/SIGTERM.",
                             out, err)) {
    return *code;
  }
  const int64_t learners = flags.GetInt("learners"), rollout = flags.GetInt("rollout"), reward = flags.GetInt("reward");
  if (learners < 1 || learners > 16 || rollout < 0 || rollout > 16 || reward < 0 || reward > 16) {
    err << "error: --learners must be in [1, 16], --rollout and --reward in [0, 16]\n";
    return 2;
  }
  if (!coordinator::IsLoopbackAddress(flags.GetString("listen"))) {
    err << "error: --listen must be a loopback address (alignd local serves without authentication)\n";
    return 2;
  }
  if (flags.GetInt("lease-ttl-ms") < 100) {
    err << "error: --lease-ttl-ms must be at least 100\n";
    return 2;
  }
  absl::StatusOr<torch::Device> device = ResolveDevice(flags.GetString("device"), "--device");
  if (!device.ok()) return ReportError(device.status(), err);
  absl::Status made = MakeDirs(flags.GetString("dir"));
  if (!made.ok()) return ReportError(made, err);
  coordinator::CoordinatorServer::Options co;
  co.listen = flags.GetString("listen");
  co.db_path = JoinPath(flags.GetString("dir"), "alignd.db");
  co.workers.lease_ttl = absl::Milliseconds(flags.GetInt("lease-ttl-ms"));
  co.max_receive_message_bytes = 16 << 20;
  co.max_send_message_bytes = 16 << 20;
  auto server = coordinator::CoordinatorServer::Create(co);
  if (!server.ok()) return ReportError(server.status(), err);
  const std::string address = absl::StrCat("127.0.0.1:", (*server)->port());
  std::vector<std::unique_ptr<node::WorkerNode>> nodes;
  auto add = [&](v1::Role role, int64_t count) -> absl::Status {
    for (int64_t i = 0; i < count; ++i) {
      node::NodeOptions o;
      o.coordinator = address;
      o.roles = {role};
      o.threads = static_cast<int>(flags.GetInt("threads"));
      o.device = device->is_cuda() ? v1::DEVICE_KIND_CUDA : v1::DEVICE_KIND_CPU;
      o.device_count = device->is_cuda() ? 1 : 0;
      o.torch_device = *device;
      ASSIGN_OR_RETURN(auto node, node::WorkerNode::Start(o));
      nodes.push_back(std::move(node));
    }
    return absl::OkStatus();
  };
  absl::Status started = add(v1::ROLE_LEARNER, learners);
  if (started.ok()) started = add(v1::ROLE_ROLLOUT, rollout);
  if (started.ok()) started = add(v1::ROLE_REWARD, reward);
  if (!started.ok()) {
    nodes.clear();
    (*server)->Shutdown();
    return ReportError(started, err);
  }
  auto metrics = StartMetricsServer(flags.GetString("metrics-listen"));
  if (!metrics.ok()) {
    nodes.clear();
    (*server)->Shutdown();
    return ReportError(metrics.status(), err);
  }
  if (*metrics)
    out << "metrics on http://" << (*metrics)->host() << ":" << (*metrics)->port() << "/metrics" << std::endl;
  coordinator::WebUi web((*server)->manager(), (*server)->workers(), &(*server)->auth(), {});
  auto page = StartPage(&web, flags.GetString("http-listen"), out);
  if (!page.ok()) {
    nodes.clear();
    (*server)->Shutdown();
    return ReportError(page.status(), err);
  }
  out << "alignd local: coordinator on " << address << " (jobs in " << co.db_path << "); " << learners << " learner, "
      << rollout << " rollout, " << reward << " reward worker(s). Submit with: alignctl submit "
      << "SPEC.yaml --wait --coordinator=" << address << std::endl;
  stop->WaitForNotification();
  page->reset();
  for (auto& n : nodes) n->Stop();
  (*server)->Shutdown();
  (*server)->Wait();
  return 0;
}

}  // namespace

int RunWorker(const Args& args, std::ostream& out, std::ostream& err) {
  return ServeUntilSignal([&](absl::Notification* stop) { return ServeWorker(args, out, err, stop); });
}

int RunLocal(const Args& args, std::ostream& out, std::ostream& err) {
  return ServeUntilSignal([&](absl::Notification* stop) { return ServeLocal(args, out, err, stop); });
}

}  // namespace alignd::cli
