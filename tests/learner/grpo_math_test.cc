// examples/grpo_math.yaml's reward on the generated GSM8K-style data: a tiny model, SFT'd briefly on worked
// solutions, then GRPO with the example's own `rewards` section (answer match on the record's `answer` field plus
// the "#### <number>" format). The mean reward must rise, and each part is logged beside the total.
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>

#include "common/data/synth_math.h"
#include "gtest/gtest.h"
#include "learner/trainer.h"
#include "reward/registry.h"
#include "tests/learner/tiny_jobs.h"

namespace alignd::learner {
namespace {

using json = nlohmann::json;

std::vector<json> Lines(const std::string& out) {
  std::vector<json> lines;
  std::ifstream in(out + "/metrics.jsonl");
  for (std::string line; std::getline(in, line);) lines.push_back(json::parse(line));
  return lines;
}

double Mean(const std::vector<json>& lines, size_t begin, size_t end, const std::string& key) {
  double sum = 0;
  for (size_t i = begin; i < end; ++i) sum += lines[i].at(key).get<double>();
  return sum / static_cast<double>(end - begin);
}

TEST(GrpoMathExampleTest, TheUsersRewardRises) {
  const std::string root = ::testing::TempDir() + "/grpo_math";
  MathSynthOptions data;
  data.sft = 600;
  data.train = 64;
  data.eval = 8;
  ASSERT_TRUE(WriteMathData(root + "/data", data).ok());

  JobSpec sft = TinySftSpec("sft_math", root + "/data", root + "/runs/sft_math");
  sft.data.train = root + "/data/math_sft.jsonl";
  sft.data.max_length = 160;
  sft.data.max_prompt_length = 96;
  sft.model.init_max_positions = 192;
  sft.train.steps = 60;
  auto base = RunTraining(sft);
  ASSERT_TRUE(base.ok()) << base.status();

  auto rewards = reward::ReadRewardParts(std::string(ALIGND_SOURCE_DIR) + "/examples/grpo_math.yaml");
  ASSERT_TRUE(rewards.ok()) << rewards.status();
  JobSpec spec = TinySftSpec("grpo_math", root + "/data", root + "/runs/grpo_math");
  spec.algorithm = Algorithm::kGrpo;
  spec.model.path = base->final_dir;
  spec.data.train = root + "/data/math_train.jsonl";
  spec.data.max_length = 160;
  spec.data.max_prompt_length = 96;
  spec.rewards = *rewards;
  spec.train.steps = 30;
  spec.train.batch_size = 8;
  spec.train.grad_accum = 1;
  spec.train.lr = 1e-3;
  spec.train.warmup_steps = 0;
  spec.ppo.samples_per_prompt = 4;
  spec.ppo.max_new_tokens = 32;
  spec.ppo.epochs = 2;
  spec.ppo.minibatches = 2;
  spec.ppo.kl_coef = 0.01;
  auto r = RunTraining(spec);
  ASSERT_TRUE(r.ok()) << r.status();
  auto lines = Lines(spec.output_dir);
  ASSERT_EQ(lines.size(), 30u);
  for (const json& l : lines) {
    EXPECT_TRUE(l.contains("reward/parts/correct")) << l.dump();
    EXPECT_TRUE(l.contains("reward/parts/format")) << l.dump();
  }
  // The first and last five steps (32 samples each): the noise of a five-step mean is about 0.02 here.
  const double before = Mean(lines, 0, 5, "reward/mean"), after = Mean(lines, 25, 30, "reward/mean");
  const double format_before = Mean(lines, 0, 5, "reward/parts/format");
  const double format_after = Mean(lines, 25, 30, "reward/parts/format");
  std::cout << "grpo_math: reward " << before << " -> " << after << ", format " << format_before << " -> "
            << format_after << ", correct " << Mean(lines, 0, 5, "reward/parts/correct") << " -> "
            << Mean(lines, 25, 30, "reward/parts/correct") << "\n";
  EXPECT_GT(after, before + 0.05) << "reward " << before << " -> " << after << "; format " << format_before << " -> "
                                  << format_after;
}

}  // namespace
}  // namespace alignd::learner
