// alignctl: the client. Today it prepares data; job commands arrive with the coordinator.
#include <iostream>
#include <string>

#include "cli/commands.h"

namespace {

constexpr char kUsage[] = R"(alignctl: the alignd client.

usage: alignctl <command> [flags]     (alignctl <command> --help for its flags)

commands:
  data synth   write the synthetic toy-assistant data set (pretraining text, SFT, preference pairs, prompts)

Not in this build yet: submit, status, list, watch, logs, cancel, workers (they need the coordinator).
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
  if (command == "data" && argc >= 3 && std::string(argv[2]) == "synth") {
    return alignd::cli::RunDataSynth(alignd::cli::Args(argv + 3, argv + argc), std::cout, std::cerr);
  }
  std::cerr << "alignctl: unknown command \"" << command << (argc >= 3 ? std::string(" ") + argv[2] : "")
            << "\"\n\n" << kUsage;
  return 2;
}
