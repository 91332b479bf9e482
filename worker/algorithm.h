// The interface between the training loop (trainer.cc) and each algorithm's loss. Internal to worker/.
#ifndef ALIGND_WORKER_ALGORITHM_H_
#define ALIGND_WORKER_ALGORITHM_H_

#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/tokenizer.h"
#include "common/transformer.h"
#include "worker/job_spec.h"
#include "worker/trainer.h"

namespace alignd::worker {

// Switches PEFT modules off (reference policy) and back on; a no-op without PEFT.
class ReferenceSwitch {
 public:
  virtual ~ReferenceSwitch() = default;
  virtual void SetEnabled(bool enabled) = 0;
};

struct TrainContext {
  const JobSpec* spec = nullptr;
  CausalLM model{nullptr};
  std::shared_ptr<Tokenizer> tokenizer;
  ReferenceSwitch* peft = nullptr;  // null without PEFT
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
  virtual nlohmann::json SaveState() const { return nlohmann::json::object(); }
  virtual absl::Status LoadState(const nlohmann::json& state) { return absl::OkStatus(); }
};

std::unique_ptr<Objective> MakeLmObjective();          // pretrain, SFT
std::unique_ptr<Objective> MakeRewardModelObjective();  // RM
std::unique_ptr<Objective> MakePreferenceObjective();  // DPO, cDPO, IPO, ORPO
std::unique_ptr<Objective> MakeRlObjective();          // PPO, GRPO, RLOO

// Splits `items` into `parts` consecutive chunks of equal size (items.size() divisible by parts).
std::vector<std::vector<size_t>> Split(const std::vector<size_t>& items, int64_t parts);

}  // namespace alignd::worker

#endif  // ALIGND_WORKER_ALGORITHM_H_
