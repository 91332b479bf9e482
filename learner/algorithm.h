// The interface between the training loop (trainer.cc) and each algorithm's loss. Internal to learner/.
#ifndef ALIGND_LEARNER_ALGORITHM_H_
#define ALIGND_LEARNER_ALGORITHM_H_

#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "collective/learner_group.h"
#include "common/data/collate.h"
#include "common/model/transformer.h"
#include "common/text/tokenizer.h"
#include "learner/trainer.h"
#include "spec/job_spec.h"

namespace alignd::learner {

struct RemoteServices;  // learner/remote.h

// Switches PEFT modules off (reference policy) and back on; a no-op without PEFT.
class ReferenceSwitch {
 public:
  virtual ~ReferenceSwitch() = default;
  // false: the model computes the base (reference) policy until SetEnabled(true).
  virtual void SetEnabled(bool enabled) = 0;
};

struct TrainContext {
  const JobSpec* spec = nullptr;
  CausalLM model{nullptr};
  std::shared_ptr<Tokenizer> tokenizer;
  ReferenceSwitch* peft = nullptr;  // null without PEFT
  // The data-parallel learners this rank belongs to (not owned); null for a single learner. Objectives that do not
  // shard items (shards_items() false) use it to keep their ranks in step.
  collective::LearnerGroup* group = nullptr;
  // Where a distributed job's rollout workers and reward servers are (not owned); null in-process.
  const RemoteServices* remote = nullptr;
  // Where the model is; objectives make their batches and loss tensors here and read results back to the CPU.
  torch::Device device = torch::kCPU;
};

// Clips the accumulated gradients, takes one optimiser step and zeroes the gradients. Returns the gradient norm
// before clipping.
using ApplyStep = std::function<double()>;

class Objective {
 public:
  virtual ~Objective() = default;
  // Loads and tokenises data and builds caches (e.g. DPO's reference log-probs) with the model as it is at step 0.
  virtual absl::Status Prepare(TrainContext& ctx) = 0;
  // Number of training items the sampler draws from (examples, pairs or prompts).
  virtual size_t size() const = 0;
  // Runs one step on the drawn items: forward, backward (accumulating over micro-batches) and `apply` (once, or
  // once per minibatch for PPO). Returns the step's metrics, including "train/loss".
  virtual absl::StatusOr<Metrics> Step(TrainContext& ctx, int64_t step, const std::vector<size_t>& items,
                                       const ApplyStep& apply) = 0;
  // Metrics on the eval split ("eval/..."); empty without eval data.
  virtual absl::StatusOr<Metrics> Evaluate(TrainContext& ctx) = 0;
  // Parameters trained besides the model's (PPO's value head), and state that a checkpoint must carry.
  virtual std::vector<torch::Tensor> extra_parameters() { return {}; }
  // SaveState's JSON is what LoadState gets back on resume; LoadState's error fails the resume. Defaults: none.
  virtual nlohmann::json SaveState() const { return nlohmann::json::object(); }
  virtual absl::Status LoadState(const nlohmann::json& state) { return absl::OkStatus(); }

  // Data parallelism (TrainContext::group of world size W > 1). When true, every rank draws the same global batch and
  // Step sees its own contiguous shard of batch_size / W items, with ctx.spec's batch_size and grad_accum set for
  // that shard; the trainer then averages gradients and metrics over the ranks, weighted by ShardWeight. When false,
  // Step sees the whole batch on every rank (and the full spec) and must itself keep the ranks in step; the trainer
  // still averages gradients in `apply` (every rank must call it equally often) and logs rank 0's metrics.
  virtual bool shards_items() const { return true; }
  // The weight of `shard` in the step's loss, in the units the objective averages over: Step normalises its loss
  // over its own shard, so the ranks' gradients and metrics are combined as sum(w_r * x_r) / sum(w_r) to give the
  // single-learner value. Default: the item count (losses that are means over items, e.g. DPO, RM); a loss averaged
  // over tokens must return the shard's trained-token count.
  virtual double ShardWeight(const std::vector<size_t>& shard) const { return static_cast<double>(shard.size()); }
};

// A fresh objective for the algorithms named beside it; Prepare reads which one from ctx.spec.
std::unique_ptr<Objective> MakeLmObjective();           // pretrain, SFT
std::unique_ptr<Objective> MakeRewardModelObjective();  // RM
std::unique_ptr<Objective> MakePreferenceObjective();   // DPO, cDPO, IPO, ORPO
std::unique_ptr<Objective> MakeRlObjective();           // PPO, GRPO, RLOO

// The model's final hidden states for `batch`: forward_packed_hidden for a padding-free batch, forward_hidden for a
// padded one.
torch::Tensor RunModel(TrainContext& ctx, const Batch& batch);

// `data` tokenised with the spec's chat template and length limits (data.max_length 0 when `pack`: packing cuts the
// examples later). ExampleTokenizer::Create's and Tokenize's errors.
absl::StatusOr<TokenizedDataset> TokenizeForSpec(const TrainContext& ctx, const Dataset& data, bool pack = false);

// The sequences a language-model loss trains on in the JSONL file at `path`: text, messages or prompt+completion
// records, and with `chosen_of_pairs` also preference records (their chosen answers); packed into rows of
// data.max_length when `pack`. INVALID_ARGUMENT naming `path` and `who` (the algorithm or key that reads it) for
// another schema, and when no record has a token to train on; ReadJsonl's and TokenizeForSpec's errors.
absl::StatusOr<std::vector<TokenizedExample>> LoadTrainedSequences(const TrainContext& ctx, const std::string& path,
                                                                   absl::string_view who, bool chosen_of_pairs,
                                                                   bool pack = false);

// Splits `items` into `parts` consecutive chunks of equal size (items.size() divisible by parts).
std::vector<std::vector<size_t>> Split(const std::vector<size_t>& items, int64_t parts);

}  // namespace alignd::learner

#endif  // ALIGND_LEARNER_ALGORITHM_H_
