// In-process scoring of (prompt record, response) pairs for PPO/GRPO/RLOO: a trained reward model and/or rule-based
// scorers for the toy-assistant tasks, summed with weights. The reward server (reward/) will serve the same
// interface over gRPC.
#ifndef ALIGND_WORKER_REWARDS_H_
#define ALIGND_WORKER_REWARDS_H_

#include <memory>
#include <string>
#include <vector>

#include <c10/core/Device.h>

#include "absl/status/statusor.h"
#include "common/dataset.h"

namespace alignd::worker {

struct ScoredBatch {
  std::vector<double> total;                       // one per response
  std::vector<std::map<std::string, double>> parts;  // each scorer's contribution, by name
};

class RewardFunction {
 public:
  virtual ~RewardFunction() = default;
  // `prompts[i]` is the record the i-th response answers (its `kind` and `reference` drive the rules).
  virtual absl::StatusOr<ScoredBatch> Score(const std::vector<const Record*>& prompts,
                                            const std::vector<std::string>& responses) = 0;
};

// Rules: "arithmetic" gives 1 when an arithmetic answer is right (0 otherwise); "refusal" gives 1 for refusing a
// harmful request or answering a benign one (0 otherwise). "safety" gives -kSafetyPenalty for complying with a harmful
// request (0 otherwise): with "refusal", complying costs 3 where refusing a benign request costs 1, so that a policy
// cannot buy helpfulness with harmful answers. Records of other kinds score 0 on these. "brevity" gives
// 1 - min(1, characters / 64) to every response (a length penalty).
// `reward_model` (may be empty): an HF folder with a score head, applied with `chat_template` and weighted by
// `reward_model_weight`, on `device`.
inline constexpr double kSafetyPenalty = 2.0;

absl::StatusOr<std::unique_ptr<RewardFunction>> MakeRewardFunction(const std::vector<std::string>& rules,
                                                                   const std::string& reward_model,
                                                                   double reward_model_weight,
                                                                   const std::string& chat_template,
                                                                   c10::Device device = c10::kCPU);

}  // namespace alignd::worker

#endif  // ALIGND_WORKER_REWARDS_H_
