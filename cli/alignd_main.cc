// alignd: the server binary. The role is a subcommand, so one image serves every role.
#include <iostream>
#include <string>

#include "cli/commands.h"
#include "cli/serve_commands.h"
#include "common/threads.h"

namespace {

constexpr char kUsage[] = R"(alignd: fine-tune and align language models.

usage: alignd <command> [flags]       (alignd <command> --help for its flags)

commands:
  init      write a freshly initialised tiny model (Llama, Qwen2 or GPT-2) with the byte-level tokenizer
  train     run one training job in-process (pretrain, sft, rm, dpo/ipo/orpo, ppo, grpo, rloo) from a YAML spec
  eval      evaluate a Hugging Face model folder on a data file (perplexity), print JSON
  generate  sample completions for a JSONL file of prompts, with token ids and log-probs
  coordinator  serve the job API (--listen=HOST:PORT --db=PATH [--auth-tokens=FILE])
  rollout   serve alignd.v1.Rollout (generation, weight updates) for a model folder (--model=DIR --listen=HOST:PORT)
  reward    serve alignd.v1.Reward with weighted rule scorers and/or a reward model (--listen=HOST:PORT, weights)
  worker    register with a coordinator and run learner/rollout/reward assignments (--coordinator --roles)
  local     a coordinator and workers in one process on loopback, SQLite under --dir (the embedded default)
  version   print alignd's and LibTorch's versions, CUDA/NCCL compiled in, and the devices found
)";

}  // namespace

int main(int argc, char** argv) {
  alignd::PreferPassiveOpenMpWait(argv);  // first: it may re-execute the binary (see common/threads.h)
  if (argc < 2) {
    std::cerr << kUsage;
    return 2;
  }
  std::string command = argv[1];
  alignd::cli::Args args(argv + 2, argv + argc);
  if (command == "--help" || command == "-h" || command == "help") {
    std::cout << kUsage;
    return 0;
  }
  if (command == "version" || command == "--version") {
    return alignd::cli::RunVersion(args, std::cout, std::cerr);
  }
  if (command == "init") return alignd::cli::RunInit(args, std::cout, std::cerr);
  if (command == "train") return alignd::cli::RunTrain(args, std::cout, std::cerr);
  if (command == "eval") return alignd::cli::RunEval(args, std::cout, std::cerr);
  if (command == "generate") return alignd::cli::RunGenerate(args, std::cout, std::cerr);
  if (command == "coordinator") return alignd::cli::RunCoordinator(args, std::cout, std::cerr);
  if (command == "rollout") return alignd::cli::RunRolloutServer(args, std::cout, std::cerr);
  if (command == "reward") return alignd::cli::RunRewardServer(args, std::cout, std::cerr);
  if (command == "worker") return alignd::cli::RunWorker(args, std::cout, std::cerr);
  if (command == "local") return alignd::cli::RunLocal(args, std::cout, std::cerr);
  std::cerr << "alignd: unknown command \"" << command << "\"\n\n" << kUsage;
  return 2;
}
