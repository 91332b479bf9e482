// The job spec: what `alignd train --spec job.yaml` runs and what the coordinator will store. YAML (or JSON, which
// YAML reads) with one section per concern. Parsing is strict: an unknown key, a wrong type or a bad value is
// INVALID_ARGUMENT naming the file, line and key path (`job.yaml:7: train.lr: must be > 0, got -1`).
// Relative paths in the spec are taken relative to the working directory, as a user typing them expects.
// A top-level `resources` section (the gang a coordinator places: spec/job_validation.h) is accepted and not
// read here, so one spec file serves both `alignd train` and `alignctl submit`.
#ifndef ALIGND_SPEC_JOB_SPEC_H_
#define ALIGND_SPEC_JOB_SPEC_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "reward/registry.h"

namespace alignd {

enum class Algorithm { kPretrain, kSft, kRm, kDpo, kPpo, kGrpo, kRloo, kOnlineDpo };
// The spec's spelling: "pretrain", "sft", "rm", "dpo", "ppo", "grpo", "rloo", "online_dpo".
absl::string_view AlgorithmName(Algorithm a);
// Whether the algorithm learns from samples the policy generates and a `rewards` list scores: ppo, grpo, rloo and
// online_dpo (these take rollout workers and reward servers on a coordinator).
bool LearnsFromRollouts(Algorithm a);

// Where the starting weights come from: an HF folder, or a fresh tiny model alignd initialises.
struct ModelSpec {
  std::string path;                 // HF model folder; empty => initialise from `init_*`
  std::string init_arch = "llama";  // llama, qwen2, gpt2
  int64_t init_hidden_size = 128;
  int64_t init_layers = 4;
  int64_t init_heads = 4;
  int64_t init_kv_heads = 2;
  int64_t init_max_positions = 512;
  int64_t init_vocab_size = 0;    // 0: the tokenizer's; larger pads the vocabulary (embedding and head rows)
  std::string dtype = "float32";  // compute dtype: float32, or bfloat16 (autocast; float32 weights and optimiser)
};

struct DataSpec {
  std::string train;             // JSONL, schema detected from keys
  std::vector<std::string> mix;  // pretrain/sft: more training files, each with its own schema (e.g. text + messages)
  std::string eval;              // optional
  std::string chat_template = "chatml";
  int64_t max_length = 256;
  int64_t max_prompt_length = 128;
  bool pack = false;  // pretraining: pack texts into rows of max_length
  // pretrain/sft/rm/dpo family: each micro-batch runs as one padding-free row (its sequences end to end, attention
  // and positions kept within each; common/data/collate.h CollatePacked) instead of a padded [B, T] batch
  bool padding_free = false;
  // ppo, grpo and rloo with ppo.ptx_coef > 0: demonstrations trained on beside the RL loss (PPO-ptx): text, messages or
  // prompt+completion records, or preference records (their chosen answers).
  std::string ptx;
};

struct TrainSpec {
  int64_t steps = 100;      // optimizer steps
  int64_t batch_size = 16;  // sequences (pairs for RM/DPO, prompts for PPO) per optimizer step
  int64_t grad_accum = 1;   // micro-batches per step; batch_size must be divisible by it
  double lr = 1e-3;
  double weight_decay = 0.0;  // decoupled (AdamW)
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
  int64_t warmup_steps = 0;
  std::string schedule = "cosine";  // cosine, linear, constant (after warmup)
  double min_lr_ratio = 0.1;        // cosine/linear decay floor as a fraction of lr
  double max_grad_norm = 1.0;       // 0 disables clipping
  int64_t eval_every = 0;           // 0: only at the end (when there is eval data)
  int64_t checkpoint_every = 0;     // 0: no intermediate checkpoints
  int64_t log_every = 1;
};

struct LoraSpec {
  bool enabled = false;
  int64_t r = 8;
  double alpha = 16;
  double dropout = 0.0;
  std::vector<std::string> target_modules = {"q_proj", "v_proj"};  // or {"all-linear"}
};

struct AdapterSpec {
  bool enabled = false;
  int64_t bottleneck = 16;
  bool after_attention = true;
  bool after_mlp = true;
};

struct RmSpec {
  double margin = 0.0;
};

struct DpoSpec {
  std::string loss = "sigmoid";  // sigmoid (DPO; with label_smoothing > 0: conservative DPO), ipo, orpo
  double beta = 0.1;
  double label_smoothing = 0.0;
  // sigmoid and ipo: adds rpo_alpha times the chosen responses' mean token NLL to the loss (RPO, Pang et al. 2024;
  // TRL's rpo_alpha), which keeps the chosen answers likely while the margin grows. 0 = off.
  double rpo_alpha = 0.0;
  // online_dpo with sigmoid: > 0 makes the loss reward-aware (RewardAwareDpoLoss, learner/losses.h): each pair's label
  // is σ(reward_scale x (score_chosen - score_rejected)) instead of 1, so that the implied margin is fitted to the score
  // gap. 0 = off (DPO, which sees only which answer scored higher).
  double reward_scale = 0.0;
};

struct PpoSpec {
  int64_t max_new_tokens = 48;
  double temperature = 1.0;
  int64_t samples_per_prompt = 4;  // GRPO/RLOO group size, online DPO's samples to pick a pair from (PPO: 1)
  int64_t epochs = 2;              // passes over each rollout batch
  int64_t minibatches = 2;
  double clip = 0.2;  // policy ratio clip
  double value_clip = 0.2;
  double vf_coef = 0.5;
  double entropy_coef = 0.0;
  double gamma = 1.0, lam = 0.95;
  double kl_coef = 0.05;  // initial KL penalty coefficient
  bool adaptive_kl = false;
  double kl_target = 6.0;
  double kl_horizon = 10000;
  bool whiten_advantages = true;
  // GRPO: what divides each group's centred scores (TRL's scale_rewards): "group" (its std, as in the DeepSeekMath
  // paper), "batch" (the whole batch's std, so every group's advantages keep their reward units relative to each
  // other), or "none" (Dr. GRPO, Liu et al. 2025). With "group", a part's weight stops mattering within a group where
  // it moves with another part (toy.safety beside toy.refusal).
  std::string scale_rewards = "group";
  // Distributed jobs: how many weight versions older than the policy being trained a rollout sample may be
  // (0 = strictly on-policy). alignd publishes before every step's generation, so samples are on-policy today.
  int64_t max_staleness = 0;
  // PPO-ptx (InstructGPT, Ouyang et al. 2022; OpenRLHF's --ptx_coef): each minibatch also adds ptx_coef times the mean
  // token NLL of ptx_batch_size records of data.ptx, drawn at random, to the loss. 0 = off. ppo, grpo and rloo.
  double ptx_coef = 0.0;
  int64_t ptx_batch_size = 8;
};

struct JobSpec {
  std::string name;
  Algorithm algorithm = Algorithm::kSft;
  std::string output_dir;  // default runs/<name>
  uint64_t seed = 1;
  int64_t threads = 0;         // 0: the cores available
  std::string device = "cpu";  // resources.device: cpu or cuda (the learner's, rollout's and reward model's)
  ModelSpec model;
  DataSpec data;
  TrainSpec train;
  LoraSpec lora;
  AdapterSpec adapter;
  RmSpec rm;
  DpoSpec dpo;
  PpoSpec ppo;
  // ppo, grpo, rloo and online_dpo (required there): the reward, a weighted sum of parts (reward/registry.h documents
  // the section and every part type).
  std::vector<reward::RewardPartSpec> rewards;
};

// Parses YAML/JSON text; `source` (the file name) starts every error message. INVALID_ARGUMENT (see above) for text
// that is not YAML, an unknown key, a wrong type or a bad value.
absl::StatusOr<JobSpec> ParseJobSpec(absl::string_view text, absl::string_view source = "spec");
// ParseJobSpec of the file at `path` (named in errors); ReadFile's error (NOT_FOUND, ...) when it cannot be read.
absl::StatusOr<JobSpec> ReadJobSpec(const std::string& path);

}  // namespace alignd

#endif  // ALIGND_SPEC_JOB_SPEC_H_
