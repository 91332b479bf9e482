// The subcommands of the `alignd` and `alignctl` binaries. Each takes the arguments after its name, writes its result
// to `out` and diagnostics to `err`, and returns the process exit code (0 success, 1 failure, 2 usage error), so the
// mains stay thin and the commands can be tested in-process.
#ifndef ALIGND_CLI_COMMANDS_H_
#define ALIGND_CLI_COMMANDS_H_

#include <functional>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/notification.h"
#include "common/base/flags.h"

namespace alignd::cli {

using Args = std::vector<std::string>;

inline constexpr char kAligndVersion[] = "0.2.0";

// `alignd version`: alignd's version, LibTorch's, CUDA and NCCL compiled in (with versions) and the devices found.
int RunVersion(const Args& args, std::ostream& out, std::ostream& err);

// `alignd eval --model DIR --data FILE.jsonl --metrics perplexity`: prints one JSON object.
int RunEval(const Args& args, std::ostream& out, std::ostream& err);

// `alignd init --out DIR [--arch ...]`: writes a freshly initialised tiny model with the byte-level tokenizer.
int RunInit(const Args& args, std::ostream& out, std::ostream& err);

// `alignd generate --model DIR --prompts FILE.jsonl --out FILE.jsonl [sampling flags]`: writes one JSON line per
// sample (prompt, completion, token_ids, logprobs, finish_reason) and prints a JSON summary.
int RunGenerate(const Args& args, std::ostream& out, std::ostream& err);

// `alignd train --spec JOB.yaml [--out DIR] [--resume]`: runs one training job in-process.
int RunTrain(const Args& args, std::ostream& out, std::ostream& err);

// `alignctl data synth --out DIR [--seed N] [sizes]`: writes the toy-assistant data set.
int RunDataSynth(const Args& args, std::ostream& out, std::ostream& err);

// `alignd coordinator --listen=HOST:PORT --db=PATH [--auth-tokens=FILE]`: serves the job API until SIGINT/SIGTERM.
int RunCoordinator(const Args& args, std::ostream& out, std::ostream& err);

// `alignd worker --coordinator=HOST:PORT --roles=...`: registers and runs assignments until SIGINT/SIGTERM.
int RunWorker(const Args& args, std::ostream& out, std::ostream& err);

// `alignd local [--learners=N --rollout=N --reward=N] [--dir=PATH]`: a coordinator and workers in one process.
int RunLocal(const Args& args, std::ostream& out, std::ostream& err);

// Runs `serve` with SIGINT/SIGTERM blocked in every thread it starts; the first such signal notifies `stop`, and
// `serve` returns the exit code (returning early without a signal is fine too).
int ServeUntilSignal(const std::function<int(absl::Notification* stop)>& serve);

// alignctl job commands (cli/alignctl_jobs.cc), each with --coordinator/ALIGND_COORDINATOR, --token/ALIGND_TOKEN,
// --timeout and --output=text|json: `submit SPEC [--wait]` (job id alone on the first line), `status JOB`, `list`,
// `cancel JOB`, `watch JOB`, `logs JOB [--follow | --plot METRIC,...]`, `workers`.
int RunSubmit(const Args& args, std::ostream& out, std::ostream& err);
int RunStatus(const Args& args, std::ostream& out, std::ostream& err);
int RunList(const Args& args, std::ostream& out, std::ostream& err);
int RunCancel(const Args& args, std::ostream& out, std::ostream& err);
int RunWatch(const Args& args, std::ostream& out, std::ostream& err);
int RunLogs(const Args& args, std::ostream& out, std::ostream& err);
int RunWorkers(const Args& args, std::ostream& out, std::ostream& err);

// One subcommand of a binary: the words that name it ("list", "data synth") and what runs it.
struct Subcommand {
  std::string words;  // space-separated
  std::function<int(const Args& args, std::ostream& out, std::ostream& err)> run;
};

// Runs the subcommand that `argv` (the arguments after the program name) names, with every other argument in order,
// so that flags may come before the command as well as after it: `alignctl --coordinator=H:P list` runs `list` with
// `--coordinator=H:P`, like `alignctl list --coordinator=H:P`. The command is the first run of arguments before any
// "--" that spells one of `commands`; so a flag given before the command with a separate value must not have a
// command's name as that value (`--flag=value` always works). Without a command: `usage` on `out` and 0 when the
// arguments ask for help (--help, -h or help), else `usage` on `err` and 2, naming the first argument that is not a
// flag as an unknown command. `program` prefixes that message.
int RunSubcommand(const Args& argv, const std::vector<Subcommand>& commands, absl::string_view program,
                  absl::string_view usage, std::ostream& out, std::ostream& err);

// `alignctl ARGS...`: dispatches to the job commands and `data synth` (cli/alignctl.cc).
int RunAlignctl(const Args& argv, std::ostream& out, std::ostream& err);

// Parses `args` into `flags`. Returns the exit code when the command should stop: 2 after printing a usage error
// (including any positional argument: alignd's subcommands take flags only), 0 after printing `description` and the
// usage for --help; nullopt when the command should go on.
std::optional<int> ParseFlags(FlagSet& flags, const Args& args, absl::string_view description, std::ostream& out,
                              std::ostream& err);

// Prints `error: CODE: message` and returns 1 (2 for INVALID_ARGUMENT coming from flag parsing is the caller's call).
int ReportError(const absl::Status& status, std::ostream& err);

// The bearer token from --token or --token-file (a file holding the token, surrounding whitespace trimmed: a mounted
// Docker or Kubernetes secret), declared by DeclareTokenFlags. INVALID_ARGUMENT when both are given, or when the file
// is empty; the file's read error (NOT_FOUND, ...) naming --token-file.
void DeclareTokenFlags(FlagSet& flags, absl::string_view token_help);
absl::StatusOr<std::string> TokenFromFlags(const FlagSet& flags);

// `alignctl health [--address=HOST:PORT] [--service=NAME]`: asks a plaintext grpc.health.v1 server (--health-listen)
// whether it serves; exit 0 SERVING, 1 anything else or no answer. The image's HEALTHCHECK.
int RunHealth(const Args& args, std::ostream& out, std::ostream& err);

// The number of CPUs this process may run on (sched_getaffinity), at least 1: alignd::AvailableCores
// (common/base/cpu.h), for the commands' --threads defaults.
int AvailableCores();

}  // namespace alignd::cli

#endif  // ALIGND_CLI_COMMANDS_H_
