// alignctl: the client: job commands against the coordinator, and data preparation.
#include <iostream>
#include <string>

#include "cli/commands.h"

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
  logs JOB     print a job's events so far (--follow: until it ends): states, failures, restarts, progress, checkpoints
  workers      list registered workers, their roles and jobs (--output=json)

Job commands take --coordinator=HOST:PORT (or ALIGND_COORDINATOR), --token (or ALIGND_TOKEN) and --timeout=SECONDS.
Exit codes: 0 success; 1 the call failed (the status code and message are printed); 2 usage error;
3 the job that watch or submit --wait followed ended FAILED or CANCELLED.

)";

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::cerr << kUsage;
    return 2;
  }
  std::string command = argv[1];
  if (command == "--help" || command == "-h" || command == "help") {
    std::cout << kUsage;
    return 0;
  }
  alignd::cli::Args rest(argv + 2, argv + argc);
  if (command == "submit") return alignd::cli::RunSubmit(rest, std::cout, std::cerr);
  if (command == "status") return alignd::cli::RunStatus(rest, std::cout, std::cerr);
  if (command == "list") return alignd::cli::RunList(rest, std::cout, std::cerr);
  if (command == "cancel") return alignd::cli::RunCancel(rest, std::cout, std::cerr);
  if (command == "watch") return alignd::cli::RunWatch(rest, std::cout, std::cerr);
  if (command == "logs") return alignd::cli::RunLogs(rest, std::cout, std::cerr);
  if (command == "workers") return alignd::cli::RunWorkers(rest, std::cout, std::cerr);
  if (command == "data" && argc >= 3 && std::string(argv[2]) == "synth") {
    return alignd::cli::RunDataSynth(alignd::cli::Args(argv + 3, argv + argc), std::cout, std::cerr);
  }
  std::cerr << "alignctl: unknown command \"" << command << (argc >= 3 ? std::string(" ") + argv[2] : "")
            << "\"\n\n" << kUsage;
  return 2;
}
