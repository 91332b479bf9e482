// alignctl's command table and usage, so that the binary's dispatch runs in tests too.
#include <string>
#include <vector>

#include "cli/commands.h"

namespace alignd::cli {
namespace {

constexpr char kUsage[] = R"(alignctl: the alignd client.

usage: alignctl <command> [flags]     (alignctl <command> --help for its flags)

commands:
  data synth   write the synthetic toy-assistant data set (pretraining text, SFT, preference pairs, prompts)
  submit SPEC  submit a job spec; prints the job id alone on the first line
  status JOB   show a job (--output=json for scripts)
  list         list jobs (--state=PENDING,RUNNING; --output=json)
  cancel JOB   cancel an unfinished job
  watch JOB    print a job's events until it ends, progress as a bar with key metrics (submit --wait does the same)
  logs JOB     print a job's events so far (--follow: until it ends): states, failures, restarts, progress, checkpoints;
               --plot=train/loss,reward/mean: a terminal chart of each metric over the steps instead
  workers      list registered workers, their roles and jobs (--output=json)
  health       ask a plaintext gRPC health server (--health-listen) whether it serves: exit 0 when SERVING

Job commands take --coordinator=HOST:PORT (or ALIGND_COORDINATOR), --token (or ALIGND_TOKEN), --timeout=SECONDS and
--output=text|json. Flags may come before or after the command (alignctl --coordinator=HOST:PORT list), and are
spelt with dashes (--wait-timeout); the underscore spelling (--wait_timeout) is accepted too.
Exit codes: 0 success; 1 the call failed (the status code and message are printed); 2 usage error;
3 the job that watch or submit --wait followed ended FAILED or CANCELLED.

)";

}  // namespace

int RunAlignctl(const Args& argv, std::ostream& out, std::ostream& err) {
  static const std::vector<Subcommand> kCommands = {
      {"submit", RunSubmit},   {"status", RunStatus},        {"list", RunList},
      {"cancel", RunCancel},   {"watch", RunWatch},          {"logs", RunLogs},
      {"workers", RunWorkers}, {"data synth", RunDataSynth}, {"health", RunHealth},
  };
  return RunSubcommand(argv, kCommands, "alignctl", kUsage, out, err);
}

}  // namespace alignd::cli
