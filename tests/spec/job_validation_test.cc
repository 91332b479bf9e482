#include "spec/job_validation.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace alignd {
namespace {

using ::testing::HasSubstr;

TEST(ValidateJobSpecTest, DefaultsWithoutResources) {
  auto spec = ValidateJobSpec("name: tiny\ndata:\n  train: t.jsonl\n");
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->name, "tiny");
  EXPECT_EQ(spec->resources.learners(), 1u);
  EXPECT_EQ(spec->resources.rollout_workers(), 0u);
  EXPECT_EQ(spec->resources.device(), v1::DEVICE_KIND_CPU);
  EXPECT_EQ(spec->max_restarts, 3u);
}

TEST(ValidateJobSpecTest, ReadsEveryResourceKeyWhereverTheSectionIs) {
  auto spec = ValidateJobSpec(R"(name: ppo
resources:
  learners: 4
  rollout_workers: 2
  reward_servers: 1
  device: cuda
  priority: 3
  max_restarts: 0
algorithm: ppo
model:
  path: runs/sft/final
data:
  train: prompts.jsonl
rewards: [{type: toy.arithmetic}]
)");
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->resources.learners(), 4u);
  EXPECT_EQ(spec->resources.rollout_workers(), 2u);
  EXPECT_EQ(spec->resources.reward_servers(), 1u);
  EXPECT_EQ(spec->resources.device(), v1::DEVICE_KIND_CUDA);
  EXPECT_EQ(spec->max_restarts, 0u);
  EXPECT_EQ(spec->resources.priority(), 3);
  // The workers run the job from `spec`: it must still say where (a GPU check once found cuda jobs running on the
  // CPU of the cuda workers they were placed on).
  EXPECT_EQ(spec->spec.device, "cuda");
  auto cpu = ValidateJobSpec("name: c\ndata:\n  train: t.jsonl\nresources:\n  device: cpu\n");
  ASSERT_TRUE(cpu.ok()) << cpu.status();
  EXPECT_EQ(cpu->spec.device, "cpu");
  auto none = ValidateJobSpec("name: n\ndata:\n  train: t.jsonl\n");
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_EQ(none->spec.device, "cpu");
}

TEST(ValidateJobSpecTest, GangsMustFitTheAlgorithm) {
  auto sft = ValidateJobSpec("name: s\nalgorithm: sft\ndata:\n  train: t.jsonl\nresources:\n  rollout_workers: 1\n");
  EXPECT_EQ(sft.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(sft.status().message(), HasSubstr("resources: rollout_workers and reward_servers serve ppo"));
  auto online = ValidateJobSpec(
      "name: o\nalgorithm: online_dpo\nmodel:\n  path: m\ndata:\n  train: t.jsonl\nrewards: [{type: toy.brevity}]\n"
      "resources:\n  rollout_workers: 1\n  reward_servers: 1\n");
  EXPECT_TRUE(online.ok()) << online.status();
  auto uneven = ValidateJobSpec(
      "name: d\nalgorithm: sft\ndata:\n  train: t.jsonl\ntrain:\n  batch_size: 9\nresources:\n  learners: 2\n");
  EXPECT_EQ(uneven.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(uneven.status().message(), HasSubstr("train.batch_size: 9 does not split evenly over 2 learners"));
}

TEST(ValidateJobSpecTest, JsonSpecsWithResourcesAreAccepted) {
  auto spec = ValidateJobSpec(R"({"name": "j", "resources": {"learners": 2}, "data": {"train": "t.jsonl"}})");
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->name, "j");
  EXPECT_EQ(spec->resources.learners(), 2u);
}

TEST(ValidateJobSpecTest, PathsInsideTheRootsAreAccepted) {
  auto spec = ValidateJobSpec("name: x\ndata:\n  train: data/t.jsonl\n  eval: /data/e.jsonl\noutput_dir: /runs/x\n",
                              "spec", {"/data", "/runs/"});
  EXPECT_TRUE(spec.ok()) << spec.status();
}

// Error paths.

TEST(ValidateJobSpecTest, PathsOutsideTheRootsNameTheKey) {
  auto check = [](const char* text, const char* what) {
    auto spec = ValidateJobSpec(text, "spec", {"/data", "/runs"});
    EXPECT_EQ(spec.status().code(), absl::StatusCode::kInvalidArgument) << text;
    EXPECT_THAT(spec.status().message(), HasSubstr(what)) << text;
  };
  check("name: x\ndata:\n  train: /etc/passwd\n", "data.train: \"/etc/passwd\" is outside the allowed roots");
  check("name: x\ndata:\n  train: ../../etc/t.jsonl\n", "data.train");
  check("name: x\ndata:\n  train: /data/../etc/t.jsonl\n", "data.train");
  check("name: x\ndata:\n  train: /database/t.jsonl\n", "data.train");
  check("name: x\noutput_dir: /tmp/x\ndata:\n  train: t.jsonl\n", "output_dir: \"/tmp/x\"");
  check(
      "name: x\nalgorithm: grpo\nmodel:\n  path: /data/m\ndata:\n  train: t.jsonl\n  ptx: /etc/sft.jsonl\n"
      "rewards: [{type: toy.brevity}]\nppo:\n  ptx_coef: 1\n",
      "data.ptx: \"/etc/sft.jsonl\" is outside the allowed roots");
}

TEST(ValidateJobSpecTest, TrainSpecErrorsKeepTheUsersLineNumbers) {
  auto spec = ValidateJobSpec("name: x\nresources:\n  learners: 2\n\n  # note\ndata:\n  train: t.jsonl\n  bogus: 1\n",
                              "job.yaml");
  EXPECT_EQ(spec.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(spec.status().message(), HasSubstr("job.yaml:8:"));
  EXPECT_THAT(spec.status().message(), HasSubstr("bogus"));
}

TEST(ValidateJobSpecTest, BadResourcesNameTheKey) {
  auto check = [](const char* text, const char* what) {
    auto spec = ValidateJobSpec(text);
    EXPECT_EQ(spec.status().code(), absl::StatusCode::kInvalidArgument) << text;
    EXPECT_THAT(spec.status().message(), HasSubstr(what)) << text;
  };
  check("name: x\nresources:\n  learners: 0\n", "spec:3: resources.learners: must be in [1, 1024], got 0");
  check("name: x\nresources:\n  learners: two\n", "spec:3: resources.learners: must be an integer");
  check("name: x\nresources:\n  device: tpu\n", "resources.device: must be one of cpu, cuda");
  check("name: x\nresources:\n  max_restarts: 101\n", "resources.max_restarts");
  check("name: x\nresources:\n  gpus: 1\n", "spec:3: resources.gpus: unknown key");
  check("name: x\nresources: 3\n", "spec:2: resources: must be a mapping");
  check("- a\n- b\n", "must be a mapping");
  check("name: [unclosed\n", "invalid YAML");
}

TEST(ValidateJobSpecTest, OversizedSpecIsRejected) {
  std::string big = "name: x\n# " + std::string(kMaxSpecBytes, 'x') + "\n";
  EXPECT_EQ(ValidateJobSpec(big).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace alignd
