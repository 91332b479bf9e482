#include <pthread.h>
#include <signal.h>

#include <algorithm>
#include <thread>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "cli/commands.h"
#include "common/base/cpu.h"
#include "common/base/file_util.h"

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

int RunSubcommand(const Args& argv, const std::vector<Subcommand>& commands, absl::string_view program,
                  absl::string_view usage, std::ostream& out, std::ostream& err) {
  const size_t end = std::find(argv.begin(), argv.end(), "--") - argv.begin();
  for (size_t i = 0; i < end; ++i) {
    for (const Subcommand& command : commands) {
      const std::vector<std::string> words = absl::StrSplit(command.words, ' ');
      if (i + words.size() > end || !std::equal(words.begin(), words.end(), argv.begin() + i)) continue;
      Args rest(argv.begin(), argv.begin() + i);
      rest.insert(rest.end(), argv.begin() + i + words.size(), argv.end());
      return command.run(rest, out, err);
    }
  }
  for (size_t i = 0; i < end; ++i) {
    if (argv[i] == "--help" || argv[i] == "-h" || argv[i] == "help") {
      out << usage;
      return 0;
    }
  }
  // Name the word meant as a command: the first that is not a flag, passing over what may be a flag's value.
  std::optional<std::string> unknown;
  for (size_t i = 0; i < end; ++i) {
    if (absl::StartsWith(argv[i], "-")) continue;
    const bool may_be_value = i > 0 && absl::StartsWith(argv[i - 1], "--") && !absl::StrContains(argv[i - 1], '=');
    if (!unknown || !may_be_value) unknown = argv[i];
    if (!may_be_value) break;
  }
  if (unknown) {
    err << program << ": unknown command \"" << *unknown << "\"\n\n";
  } else if (!argv.empty()) {
    err << program << ": no command given\n\n";
  }
  err << usage;
  return 2;
}

void DeclareTokenFlags(FlagSet& flags, absl::string_view token_help) {
  flags.String("token", "", std::string(token_help), "ALIGND_TOKEN");
  flags.String("token-file", "", "file holding the bearer token (a mounted secret; instead of --token)",
               "ALIGND_TOKEN_FILE");
}

absl::StatusOr<std::string> TokenFromFlags(const FlagSet& flags) {
  const std::string token = flags.GetString("token");
  const std::string file = flags.GetString("token-file");
  if (file.empty()) return token;
  if (!token.empty()) return absl::InvalidArgumentError("give --token or --token-file, not both");
  auto contents = ReadFile(file);
  if (!contents.ok()) {
    return absl::Status(contents.status().code(), absl::StrCat("--token-file: ", contents.status().message()));
  }
  std::string trimmed(absl::StripAsciiWhitespace(*contents));
  if (trimmed.empty()) return absl::InvalidArgumentError(absl::StrCat("--token-file: ", file, " is empty"));
  return trimmed;
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
