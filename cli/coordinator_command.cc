#include "cli/coordinator_command.h"

#include <pthread.h>
#include <signal.h>

#include <thread>

#include "absl/strings/str_split.h"
#include "common/flags.h"
#include "coordinator/coordinator_server.h"

namespace alignd::cli {

int ServeCoordinator(const Args& args, std::ostream& out, std::ostream& err, const std::function<void(int)>& ready,
                     absl::Notification* stop) {
  FlagSet flags("alignd coordinator --listen=HOST:PORT --db=PATH [--auth-tokens=FILE] "
                "[--tls-cert=PEM --tls-key=PEM [--tls-client-ca=PEM]]");
  flags.String("listen", "127.0.0.1:7070", "address to serve the job API on (port 0: any free port)");
  flags.String("db", "", "SQLite database file for jobs and events (created when missing)");
  flags.String("auth-tokens", "", "file of `TOKEN NAME ROLE` lines; required unless --listen is loopback");
  flags.Int("max-message-bytes", 4 << 20, "largest request or response accepted");
  flags.String("path-roots", "", "comma-separated folders that paths in job specs must stay within (default: any)");
  flags.String("tls-cert", "", "PEM certificate chain: serve TLS (with --tls-key)");
  flags.String("tls-key", "", "PEM private key of --tls-cert");
  flags.String("tls-client-ca", "", "PEM CA bundle: require client certificates that chain to it (mutual TLS)");
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
  options.max_receive_message_bytes = static_cast<int>(max_bytes);
  options.max_send_message_bytes = static_cast<int>(max_bytes);
  auto server = coordinator::CoordinatorServer::Create(options);
  if (!server.ok()) return ReportError(server.status(), err);
  out << "coordinator listening on port " << (*server)->port() << std::endl;
  ready((*server)->port());
  stop->WaitForNotification();
  (*server)->Shutdown();
  (*server)->Wait();
  return 0;
}

int RunCoordinator(const Args& args, std::ostream& out, std::ostream& err) {
  // Block SIGINT/SIGTERM here, before gRPC starts its threads (which inherit the mask), and take them in one thread.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  sigset_t previous;
  pthread_sigmask(SIG_BLOCK, &signals, &previous);
  absl::Notification stop;
  std::thread waiter([&] {
    int signal = 0;
    sigwait(&signals, &signal);
    stop.Notify();
  });
  int code = ServeCoordinator(args, out, err, [](int) {}, &stop);
  // Returning before a signal means the server did not start: wake the waiter with a signal only it receives.
  if (!stop.HasBeenNotified()) pthread_kill(waiter.native_handle(), SIGTERM);
  waiter.join();
  pthread_sigmask(SIG_SETMASK, &previous, nullptr);
  return code;
}

}  // namespace alignd::cli
