// Runs one training job in-process: `alignd train --spec job.yaml`. The job's algorithm (pretrain, SFT, reward model,
// DPO family, PPO, GRPO, RLOO) supplies the loss; this loop owns the optimiser (AdamW, decoupled weight decay),
// the learning-rate schedule, gradient clipping and accumulation, metrics, evaluation, checkpoints and resumption.
//
// The output folder holds:
//   metrics.jsonl             one JSON object per logged step: {"step": N, "train/loss": ..., <algorithm metrics>}
//                             and one per evaluation: {"step": N, "eval/...": ...}
//   tb/                       the same scalars as TensorBoard event files (common/metrics/tfevents.h), one tag per key,
//                             flushed each step; a resumed run adds a file, and TensorBoard drops the steps after
//                             the checkpoint from the earlier ones, as metrics.jsonl drops their lines
//   checkpoints/step-NNNNNN/  model (HF folder, or the PEFT adapter), optimizer.pt, rng.pt, trainer_state.json
//                             (learner/checkpoint.h)
//   final/                    the final model as a Hugging Face folder (LoRA: merged into the base; bottleneck
//                             adapters cannot be merged, so final/ holds the base and adapter/ the adapters)
//   adapter/                  PEFT only: the adapter alone, in the PEFT layout
//   spec.json                 a summary of the spec this run used (name, algorithm, seed, model, data, steps)
// Resuming from the latest checkpoint replays the same data order and RNG streams, so on CPU every later step's losses
// equal the uninterrupted run's bit for bit.
//
// A run sets no process-wide setting: its intra-op thread count (spec.threads; 0 = every available core) holds on the
// calling thread for the call (common/model/compute_threads.h's ScopedComputeThreads), and the random draws its results
// depend on (fresh weights, LoRA dropout) come from a generator of its own seeded with spec.seed and saved in rng.pt,
// not from LibTorch's global one. So learners, rollout workers and reward servers sharing a process (`alignd local`)
// keep their own settings, and a run's numbers do not depend on the global generator's state. (Building a model still
// draws from the global generator, as torch::nn::Linear does; InitWeights or the loaded weights overwrite them.)
//
// Data parallelism: with TrainOptions::group of world size W > 1, every rank calls RunTraining with the same spec
// (same seed, so the same initial weights and data order). For pretrain, SFT, RM and DPO each rank draws the same
// global batch and trains on its own contiguous shard of batch_size / W items (batch_size must be divisible by W:
// INVALID_ARGUMENT naming train.batch_size otherwise), in grad_accum / W micro-batches when W divides grad_accum (the
// single learner's micro-batches, so the losses match it up to float rounding), else in grad_accum micro-batches.
// Gradients are averaged over the ranks before clipping, weighted by each shard's share of the loss (items, or
// trained tokens), and so are the step metrics (a count such as train/tokens becomes a weighted per-rank mean).
// RL objectives (PPO, GRPO, RLOO) run the whole batch on every rank and only share the gradient average; rank 0's
// metrics are logged. Every rank evaluates the whole eval set. Only rank 0 writes to the output folder (metrics,
// tb/, spec.json, checkpoints, final/); with `resume` every rank restores the latest checkpoint there (a shared
// filesystem), and the ranks meet after each checkpoint, so no rank runs ahead of one it may need. A failure on one
// rank makes the others fail at their next collective (UNAVAILABLE, after the group's timeout at worst).
#ifndef ALIGND_LEARNER_TRAINER_H_
#define ALIGND_LEARNER_TRAINER_H_

#include <c10/core/Device.h>

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "learner/metrics_log.h"  // Metrics
#include "spec/job_spec.h"

namespace alignd::collective {
class LearnerGroup;  // collective/learner_group.h
}  // namespace alignd::collective

namespace alignd::learner {
struct RemoteServices;

struct TrainOptions {
  bool resume = false;          // continue from the latest checkpoint in the output folder, if there is one
  int64_t stop_after_step = 0;  // > 0: stop (as if killed) after this step, without writing final/; for tests
  std::function<void(int64_t step, const Metrics&)> on_step;  // called after every step (progress reporting)
  // Called after each evaluation (eval_every, and at the end) with its metrics ("eval/..."), when there are any.
  std::function<void(int64_t step, const Metrics&)> on_eval;
  // Data-parallel learners (not owned; null = a single learner); see "Data parallelism" above.
  collective::LearnerGroup* group = nullptr;
  // PPO/GRPO/RLOO in a distributed job: the rollout workers and reward servers learner rank 0 uses (not owned; null
  // = generate and score in-process). See learner/remote.h.
  const RemoteServices* remote = nullptr;
  // Rank 0 only: called once a checkpoint folder is complete (renamed into place), with its path.
  std::function<void(int64_t step, const std::string& dir)> on_checkpoint;
  // Checked before every step (in a group: by every rank, and any rank's true cancels them all at the same step);
  // true makes RunTraining return CANCELLED ("cancelled at step N") without writing final/.
  std::function<bool()> cancelled;
  // The device to train on; unset: resolved from spec.device ("cuda" is the process's GPU 0). A worker passes its own
  // GPU. FAILED_PRECONDITION when the spec asks for CUDA and there is none.
  std::optional<c10::Device> device;
};

struct TrainResult {
  int64_t steps = 0;         // steps completed in total
  int64_t resumed_from = 0;  // step restored from a checkpoint (0: fresh start)
  Metrics last;              // the last step's metrics
  Metrics eval;              // the last evaluation's metrics (empty without eval data)
  std::string final_dir;     // empty when stopped early, and on ranks other than 0
};

// Trains `spec` to the end (or as `options` stop it) on the calling thread and returns what it did.
// INVALID_ARGUMENT for problems with the spec or its data (naming file, line, key); the output folder then holds
// nothing new. DATA_LOSS naming the file (and field) for a damaged checkpoint on resume; CANCELLED when
// options.cancelled said so; other codes for I/O and numerical failures. Thread-safe: concurrent calls (ranks that are
// threads) share nothing but what `options` hands them.
absl::StatusOr<TrainResult> RunTraining(const JobSpec& spec, const TrainOptions& options = {});

}  // namespace alignd::learner

#endif  // ALIGND_LEARNER_TRAINER_H_
