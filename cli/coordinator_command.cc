#include "cli/coordinator_command.h"

#include "absl/strings/str_split.h"
#include "common/base/flags.h"
#include "common/base/status.h"
#include "common/metrics/http_server.h"
#include "common/rpc/health_server.h"
#include "coordinator/coordinator_server.h"

namespace alignd::cli {

absl::StatusOr<std::unique_ptr<HttpServer>> StartPage(coordinator::WebUi* web, const std::string& listen,
                                                      std::ostream& out) {
  if (listen.empty()) return std::unique_ptr<HttpServer>();
  ASSIGN_OR_RETURN(std::unique_ptr<HttpServer> server, web->Serve(listen));
  const bool v6 = server->host().find(':') != std::string::npos;
  out << "page on http://" << (v6 ? "[" : "") << server->host() << (v6 ? "]" : "") << ":" << server->port() << "/"
      << std::endl;
  return server;
}

int ServeCoordinator(const Args& args, std::ostream& out, std::ostream& err, const std::function<void(int)>& ready,
                     absl::Notification* stop) {
  FlagSet flags(
      "alignd coordinator --listen=HOST:PORT --db=PATH [--auth-tokens=FILE] "
      "[--tls-cert=PEM --tls-key=PEM [--tls-client-ca=PEM]]");
  flags.String("listen", "127.0.0.1:7070", "address to serve the job API on (port 0: any free port)");
  flags.String("db", "", "SQLite database file for jobs and events (created when missing)");
  flags.String("auth-tokens", "", "file of `TOKEN NAME ROLE` lines; required unless --listen is loopback");
  flags.Int("max-message-bytes", 4 << 20, "largest request or response accepted");
  flags.String("path-roots", "", "comma-separated folders that paths in job specs must stay within (default: any)");
  flags.String("tls-cert", "", "PEM certificate chain: serve TLS (with --tls-key)");
  flags.String("tls-key", "", "PEM private key of --tls-cert");
  flags.String("tls-client-ca", "", "PEM CA bundle: require client certificates that chain to it (mutual TLS)");
  flags.String("health-listen", "",
               "HOST:PORT to serve plaintext grpc.health.v1 alone on, for probes that cannot "
               "speak TLS (Kubernetes' grpc: probes; default: none)");
  flags.Int("lease-ttl-ms", 10000, "a worker that sends nothing for this long is dead and its job restarts");
  flags.String("metrics-listen", "",
               "HOST:PORT to serve Prometheus metrics on, at /metrics (port 0: any free; "
               "default: none)");
  flags.String("http-listen", "",
               "HOST:PORT to serve the page on: jobs, curves, workers (port 0: any free; default: "
               "none). Signs in with the job API's tokens; non-loopback needs --auth-tokens");
  if (auto stop = ParseFlags(flags, args, "", out, err)) return *stop;
  if (flags.GetString("db").empty()) {
    err << "error: --db is required\n" << flags.Usage();
    return 2;
  }
  const int64_t max_bytes = flags.GetInt("max-message-bytes");
  if (max_bytes < 1024 || max_bytes > (1 << 30)) {
    err << "error: --max-message-bytes must be in [1024, 1073741824]\n";
    return 2;
  }
  coordinator::CoordinatorServer::Options options;
  options.listen = flags.GetString("listen");
  options.db_path = flags.GetString("db");
  options.auth_tokens_file = flags.GetString("auth-tokens");
  options.manager.path_roots = absl::StrSplit(flags.GetString("path-roots"), ',', absl::SkipEmpty());
  options.tls_cert_file = flags.GetString("tls-cert");
  options.tls_key_file = flags.GetString("tls-key");
  options.tls_client_ca_file = flags.GetString("tls-client-ca");
  if (flags.GetInt("lease-ttl-ms") < 100) {
    err << "error: --lease-ttl-ms must be at least 100\n";
    return 2;
  }
  options.workers.lease_ttl = absl::Milliseconds(flags.GetInt("lease-ttl-ms"));
  options.max_receive_message_bytes = static_cast<int>(max_bytes);
  options.max_send_message_bytes = static_cast<int>(max_bytes);
  auto server = coordinator::CoordinatorServer::Create(options);
  if (!server.ok()) return ReportError(server.status(), err);
  auto health = HealthServer::Start(flags.GetString("health-listen"));
  if (!health.ok()) return ReportError(health.status(), err);
  if (*health) out << "health on port " << (*health)->port() << std::endl;
  auto metrics = StartMetricsServer(flags.GetString("metrics-listen"));
  if (!metrics.ok()) return ReportError(metrics.status(), err);
  coordinator::WebUi web((*server)->manager(), (*server)->workers(), &(*server)->auth(), {});
  auto page = StartPage(&web, flags.GetString("http-listen"), out);
  if (!page.ok()) return ReportError(page.status(), err);
  out << "coordinator listening on port " << (*server)->port() << std::endl;
  if (*metrics)
    out << "metrics on http://" << (*metrics)->host() << ":" << (*metrics)->port() << "/metrics" << std::endl;
  ready((*server)->port());
  stop->WaitForNotification();
  page->reset();
  (*server)->Shutdown();
  (*server)->Wait();
  return 0;
}

int RunCoordinator(const Args& args, std::ostream& out, std::ostream& err) {
  return ServeUntilSignal([&](absl::Notification* stop) {
    return ServeCoordinator(
        args, out, err, [](int) {}, stop);
  });
}

}  // namespace alignd::cli
