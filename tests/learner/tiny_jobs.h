// Tiny training jobs on the generated toy-assistant data, shared by the learner tests: a 2-layer, 48-wide Llama-style
// model that alignd initialises itself, trained on one thread.
#ifndef ALIGND_TESTS_LEARNER_TINY_JOBS_H_
#define ALIGND_TESTS_LEARNER_TINY_JOBS_H_

#include <yaml-cpp/yaml.h>

#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "reward/registry.h"
#include "spec/job_spec.h"

namespace alignd::learner {

// SFT on `data_dir`/sft_train.jsonl (no eval split), writing to `output_dir`: 40 steps of 16 examples in 2
// micro-batches at lr 5e-3 after 4 warm-up steps. Tests change what they need.
inline JobSpec TinySftSpec(const std::string& name, const std::string& data_dir, const std::string& output_dir) {
  JobSpec s;
  s.name = name;
  s.algorithm = Algorithm::kSft;
  s.output_dir = output_dir;
  s.seed = 3;
  s.threads = 1;
  s.model.init_hidden_size = 48;
  s.model.init_layers = 2;
  s.model.init_heads = 4;
  s.model.init_kv_heads = 2;
  s.model.init_max_positions = 160;
  s.data.train = data_dir + "/sft_train.jsonl";
  s.data.max_length = 128;
  s.data.max_prompt_length = 64;
  s.train.steps = 40;
  s.train.batch_size = 16;
  s.train.grad_accum = 2;
  s.train.lr = 5e-3;
  s.train.warmup_steps = 4;
  return s;
}

// A job's `rewards` from its YAML list, e.g. Rewards("[{type: toy.brevity}]").
inline std::vector<reward::RewardPartSpec> Rewards(const std::string& yaml) {
  auto parts = reward::ParseRewardParts(YAML::Load(yaml), "test");
  EXPECT_TRUE(parts.ok()) << parts.status();
  return parts.ok() ? *parts : std::vector<reward::RewardPartSpec>{};
}

}  // namespace alignd::learner

#endif  // ALIGND_TESTS_LEARNER_TINY_JOBS_H_
