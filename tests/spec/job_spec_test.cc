#include "spec/job_spec.h"

#include <filesystem>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace alignd {
namespace {

using ::testing::HasSubstr;

constexpr char kMinimal[] = R"(name: t
algorithm: dpo
model:
  path: runs/sft/final
data:
  train: data/toy/pref_train.jsonl
)";

std::string Error(const std::string& yaml) {
  auto spec = ParseJobSpec(yaml, "job.yaml");
  EXPECT_EQ(spec.status().code(), absl::StatusCode::kInvalidArgument) << yaml;
  return std::string(spec.status().message());
}

TEST(JobSpec, DefaultsAndOverrides) {
  auto spec = ParseJobSpec(std::string(kMinimal) + "train:\n  lr: 5e-6\n  steps: 3\ndpo:\n  loss: ipo\n");
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->algorithm, Algorithm::kDpo);
  EXPECT_EQ(spec->output_dir, "runs/t");
  EXPECT_DOUBLE_EQ(spec->train.lr, 5e-6);
  EXPECT_EQ(spec->train.steps, 3);
  EXPECT_EQ(spec->dpo.loss, "ipo");
  EXPECT_FALSE(spec->lora.enabled);
}

TEST(JobSpec, LoraSectionEnablesLora) {
  auto spec = ParseJobSpec(std::string(kMinimal) + "lora:\n  r: 4\n  target_modules: all-linear\n");
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_TRUE(spec->lora.enabled);
  EXPECT_EQ(spec->lora.target_modules, std::vector<std::string>{"all-linear"});
}

TEST(JobSpecErrors, UnknownKeysAreNamedWithTheirLine) {
  EXPECT_THAT(Error(std::string(kMinimal) + "train:\n  lrr: 1\n"), HasSubstr("job.yaml:8: train: unknown key \"lrr\""));
  EXPECT_THAT(Error(std::string(kMinimal) + "colour: blue\n"), HasSubstr("job.yaml:7: unknown key \"colour\""));
}

TEST(JobSpecErrors, BadValuesNameTheKey) {
  EXPECT_THAT(Error(std::string(kMinimal) + "train:\n  lr: -1\n"),
              HasSubstr("job.yaml:8: train.lr: must be > 0, got -1"));
  EXPECT_THAT(Error(std::string(kMinimal) + "train:\n  steps: many\n"),
              HasSubstr("train.steps: cannot read \"many\" as an integer"));
  EXPECT_THAT(Error(std::string(kMinimal) + "dpo:\n  loss: kto\n"),
              HasSubstr("dpo.loss: must be one of sigmoid, ipo, orpo; got \"kto\""));
  EXPECT_THAT(Error(std::string(kMinimal) + "dpo:\n  rpo_alpha: -1\n"), HasSubstr("dpo.rpo_alpha: must be >= 0"));
  EXPECT_THAT(Error(std::string(kMinimal) + "ppo:\n  scale_rewards: prompt\n"),
              HasSubstr("ppo.scale_rewards: must be one of group, batch, none; got \"prompt\""));
  EXPECT_THAT(Error(std::string(kMinimal) + "dpo:\n  loss: orpo\n  rpo_alpha: 1\n"),
              HasSubstr("dpo.rpo_alpha: is for sigmoid and ipo"));
  EXPECT_THAT(Error("name: t\nalgorithm: magic\ndata:\n  train: x\n"), HasSubstr("algorithm: must be one of"));
  EXPECT_THAT(Error(std::string(kMinimal) + "train:\n  batch_size: 10\n  grad_accum: 3\n"),
              HasSubstr("train.grad_accum: must be > 0 and divide batch_size"));
}

constexpr char kGrpo[] = R"(name: g
algorithm: grpo
model:
  path: runs/sft/final
data:
  train: data/math.jsonl
)";

TEST(JobSpec, RewardsSectionListsTheParts) {
  auto spec = ParseJobSpec(std::string(kGrpo) + R"yaml(rewards:
  - type: answer_match
    field: answer
    extract: regex
    pattern: "#### *(-?[0-9.,]+)"
    weight: 1.0
  - {type: format, name: hashes, pattern: "#### -?[0-9]+", weight: 0.2}
)yaml",
                           "job.yaml");
  ASSERT_TRUE(spec.ok()) << spec.status();
  ASSERT_EQ(spec->rewards.size(), 2u);
  EXPECT_EQ(spec->rewards[0].type, "answer_match");
  EXPECT_EQ(spec->rewards[0].name, "answer_match");
  EXPECT_EQ(spec->rewards[0].params.at("field"), "answer");
  EXPECT_EQ(spec->rewards[1].name, "hashes");
  EXPECT_DOUBLE_EQ(spec->rewards[1].weight, 0.2);
}

TEST(JobSpecErrors, RewardsAreRequiredByRlAndReadOnlyThere) {
  EXPECT_THAT(Error(kGrpo), HasSubstr("job.yaml:1: rewards: is required by ppo, grpo, rloo and online_dpo"));
  EXPECT_THAT(Error(std::string(kMinimal) + "rewards: [{type: toy.brevity}]\n"),
              HasSubstr("job.yaml:7: rewards: is read only by ppo, grpo, rloo and online_dpo"));
  EXPECT_THAT(Error(std::string(kGrpo) + "rewards:\n  - {type: answer_match, field: answer, extract: guess}\n"),
              HasSubstr("job.yaml:8: rewards[0].extract: \"guess\" is not one of last_number, boxed, regex, whole"));
}

TEST(JobSpec, OnlineDpoTakesRewardsAndTheDpoLoss) {
  const std::string online =
      "name: o\nalgorithm: online_dpo\nmodel:\n  path: runs/sft/final\ndata:\n"
      "  train: data/toy/prompts_train.jsonl\n";
  auto spec = ParseJobSpec(online + "rewards: [{type: toy.brevity}]\ndpo:\n  loss: ipo\n  beta: 0.3\n");
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->algorithm, Algorithm::kOnlineDpo);
  EXPECT_EQ(AlgorithmName(spec->algorithm), "online_dpo");
  EXPECT_TRUE(LearnsFromRollouts(spec->algorithm));
  EXPECT_FALSE(LearnsFromRollouts(Algorithm::kDpo));
  EXPECT_EQ(spec->dpo.loss, "ipo");
  EXPECT_DOUBLE_EQ(spec->dpo.beta, 0.3);
  EXPECT_THAT(Error(online), HasSubstr("job.yaml:1: rewards: is required by ppo, grpo, rloo and online_dpo"));
  EXPECT_THAT(Error(online + "rewards: [{type: toy.brevity}]\ndpo:\n  loss: orpo\n"),
              HasSubstr("job.yaml:9: dpo.loss: online_dpo takes sigmoid or ipo"));
  spec = ParseJobSpec(online + "rewards: [{type: toy.brevity}]\ndpo:\n  reward_scale: 0.5\n");
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_DOUBLE_EQ(spec->dpo.reward_scale, 0.5);
  EXPECT_THAT(Error(std::string(kMinimal) + "dpo:\n  reward_scale: 0.5\n"),
              HasSubstr("job.yaml:8: dpo.reward_scale: needs scored answers: online_dpo only"));
  EXPECT_THAT(Error(online + "rewards: [{type: toy.brevity}]\ndpo:\n  loss: ipo\n  reward_scale: 0.5\n"),
              HasSubstr("job.yaml:10: dpo.reward_scale: is for the sigmoid loss"));
  EXPECT_THAT(Error(online + "rewards: [{type: toy.brevity}]\ndpo:\n  reward_scale: 0.5\n  label_smoothing: 0.1\n"),
              HasSubstr("dpo.reward_scale: replaces label_smoothing"));
  EXPECT_THAT(Error(online + "rewards: [{type: toy.brevity}]\ndpo:\n  reward_scale: -1\n"),
              HasSubstr("dpo.reward_scale: must be >= 0"));
}

TEST(JobSpecErrors, TheOldRewardKeysSayWhereTheyWent) {
  EXPECT_THAT(Error(std::string(kGrpo) + "rewards: [{type: toy.brevity}]\nppo:\n  rule_rewards: [arithmetic]\n"),
              HasSubstr("job.yaml:9: ppo.rule_rewards: has moved to the top-level `rewards` list"));
  EXPECT_THAT(Error(std::string(kGrpo) + "rewards: [{type: toy.brevity}]\nppo:\n  reward_model: runs/rm\n"),
              HasSubstr("ppo.reward_model: has moved to the top-level `rewards` list"));
}

TEST(JobSpec, MixIsForLanguageModelling) {
  auto spec = ParseJobSpec("name: t\nalgorithm: sft\ndata:\n  train: a.jsonl\n  mix: [b.jsonl, c.jsonl]\n");
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->data.mix, (std::vector<std::string>{"b.jsonl", "c.jsonl"}));
  EXPECT_THAT(Error(std::string(kMinimal) + "  mix: [b.jsonl]\n"), HasSubstr("data.mix: is only for pretrain and sft"));
}

TEST(JobSpec, PtxTrainsDemonstrationsBesideTheRlLoss) {
  const std::string grpo = std::string(kGrpo) + "  ptx: data/sft.jsonl\nrewards: [{type: toy.brevity}]\n";
  auto spec = ParseJobSpec(grpo + "ppo:\n  ptx_coef: 0.5\n  ptx_batch_size: 4\n");
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->data.ptx, "data/sft.jsonl");
  EXPECT_DOUBLE_EQ(spec->ppo.ptx_coef, 0.5);
  EXPECT_EQ(spec->ppo.ptx_batch_size, 4);
  EXPECT_THAT(Error(grpo), HasSubstr("job.yaml:7: data.ptx: is read only with ppo.ptx_coef > 0"));
  EXPECT_THAT(Error(std::string(kGrpo) + "rewards: [{type: toy.brevity}]\nppo:\n  ptx_coef: 0.5\n"),
              HasSubstr("job.yaml:9: ppo.ptx_coef: needs data.ptx"));
  EXPECT_THAT(Error(std::string(kMinimal) + "  ptx: data/sft.jsonl\nppo:\n  ptx_coef: 0.5\n"),
              HasSubstr("job.yaml:9: ppo.ptx_coef: is for ppo, grpo and rloo"));
  EXPECT_THAT(Error(grpo + "ppo:\n  ptx_coef: -1\n"), HasSubstr("job.yaml:10: ppo.ptx_coef: must be >= 0"));
  EXPECT_THAT(Error(grpo + "ppo:\n  ptx_coef: 1\n  ptx_batch_size: 0\n"), HasSubstr("ppo.ptx_batch_size: must be > 0"));
}

TEST(JobSpec, PaddingFreeAndVocabularySize) {
  auto spec = ParseJobSpec(
      "name: t\nalgorithm: sft\nmodel:\n  init:\n    vocab_size: 32000\ndata:\n  train: a.jsonl\n"
      "  padding_free: true\n");
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_TRUE(spec->data.padding_free);
  EXPECT_EQ(spec->model.init_vocab_size, 32000);
  EXPECT_FALSE(ParseJobSpec(kMinimal)->data.padding_free);
  EXPECT_THAT(Error(std::string(kGrpo) + "  padding_free: true\nrewards: [{type: answer_match, field: answer}]\n"),
              HasSubstr("data.padding_free: is for pretrain, sft, rm and the dpo family"));
  EXPECT_THAT(Error("name: t\nalgorithm: sft\nmodel:\n  init:\n    vocab_size: -1\ndata:\n  train: a.jsonl\n"),
              HasSubstr("vocab_size"));
}

TEST(JobSpecErrors, RequiredPieces) {
  EXPECT_THAT(Error("name: t\nalgorithm: sft\n"), HasSubstr("data: is required"));
  EXPECT_THAT(Error("algorithm: sft\ndata:\n  train: x\n"), HasSubstr("name: is required"));
  EXPECT_THAT(Error("name: t\nalgorithm: dpo\ndata:\n  train: x\n"), HasSubstr("model.path: is required"));
  EXPECT_THAT(Error("[1, 2"), HasSubstr("invalid YAML"));
  EXPECT_THAT(Error("- a\n- b\n"), HasSubstr("must be a mapping"));
}

TEST(JobSpec, EveryExampleParses) {
  int count = 0;
  for (const auto& entry : std::filesystem::directory_iterator(std::string(ALIGND_SOURCE_DIR) + "/examples")) {
    if (entry.path().extension() != ".yaml") continue;
    auto spec = ReadJobSpec(entry.path().string());
    EXPECT_TRUE(spec.ok()) << entry.path() << ": " << spec.status();
    ++count;
  }
  EXPECT_GE(count, 1);
}

}  // namespace
}  // namespace alignd
