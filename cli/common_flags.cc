#include <pthread.h>
#include <signal.h>

#include <thread>

#include "absl/status/status.h"
#include "cli/commands.h"
#include "common/threads.h"

namespace alignd::cli {

int ReportError(const absl::Status& status, std::ostream& err) {
  err << "error: " << absl::StatusCodeToString(status.code()) << ": " << status.message() << "\n";
  return 1;
}

std::optional<int> ParseFlags(FlagSet& flags, const Args& args, absl::string_view description, std::ostream& out,
                              std::ostream& err) {
  absl::Status parsed = flags.Parse(args);
  if (!parsed.ok()) {
    err << "error: " << parsed.message() << "\n" << flags.Usage();
    return 2;
  }
  if (flags.help_requested()) {
    if (!description.empty()) out << description << "\n";
    out << flags.Usage();
    return 0;
  }
  if (!flags.positional().empty()) {
    err << "error: unexpected argument \"" << flags.positional()[0] << "\"\n" << flags.Usage();
    return 2;
  }
  return std::nullopt;
}

int AvailableCores() { return alignd::AvailableCores(); }

int ServeUntilSignal(const std::function<int(absl::Notification* stop)>& serve) {
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
  int code = serve(&stop);
  // Returning before a signal means the server did not start: wake the waiter with a signal only it receives.
  if (!stop.HasBeenNotified()) pthread_kill(waiter.native_handle(), SIGTERM);
  waiter.join();
  pthread_sigmask(SIG_SETMASK, &previous, nullptr);
  return code;
}

}  // namespace alignd::cli
