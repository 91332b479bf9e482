// alignd: the server binary. The role is a subcommand, so one image serves every role.
#include <iostream>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "cli/serve_commands.h"
#include "common/base/cpu.h"

namespace {

constexpr char kUsage[] = R"(alignd: fine-tune and align language models.

usage: alignd <command> [flags]       (alignd <command> --help for its flags)

commands:
  init      write a freshly initialised tiny model (Llama, Qwen2 or GPT-2) with the byte-level tokenizer
  train     run one training job in-process from a YAML spec (pretrain, sft, rm, dpo/ipo/orpo, ppo, grpo, rloo,
            online_dpo)
  eval      evaluate a Hugging Face model folder on a data file (perplexity), print JSON
  generate  sample completions for a JSONL file of prompts, with token ids and log-probs
  coordinator  serve the job API (--listen=HOST:PORT --db=PATH [--auth-tokens=FILE])
  rollout   serve alignd.v1.Rollout (generation, weight updates) for a model folder (--model=DIR --listen=HOST:PORT)
  reward    serve alignd.v1.Reward with weighted rule scorers and/or a reward model (--listen=HOST:PORT, weights)
  worker    register with a coordinator and run learner/rollout/reward assignments (--coordinator --roles)
  local     a coordinator and workers in one process on loopback, SQLite under --dir (the embedded default)
  version   print alignd's and LibTorch's versions, CUDA/NCCL compiled in, and the devices found

Flags may come before or after the command (alignd --threads=4 train --spec JOB.yaml), and are spelt with dashes
(--batch-size); the underscore spelling (--batch_size) is accepted too.
)";

}  // namespace

int main(int argc, char** argv) {
  alignd::PreferPassiveOpenMpWait(argv);  // first: it may re-execute the binary (see common/base/cpu.h)
  using namespace alignd::cli;
  const std::vector<Subcommand> commands = {
      {"version", RunVersion},
      {"--version", RunVersion},
      {"init", RunInit},
      {"train", RunTrain},
      {"eval", RunEval},
      {"generate", RunGenerate},
      {"coordinator", RunCoordinator},
      {"rollout", RunRolloutServer},
      {"reward", RunRewardServer},
      {"worker", RunWorker},
      {"local", RunLocal},
  };
  return RunSubcommand(Args(argv + 1, argv + argc), commands, "alignd", kUsage, std::cout, std::cerr);
}
