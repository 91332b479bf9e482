#include "reward/scorer_config.h"

#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/device.h"
#include "common/status.h"
#include "reward/model_scorer.h"

namespace alignd::reward {

absl::StatusOr<std::vector<WeightedScorer>> MakeScorers(const ScorerConfig& config) {
  for (double w : {config.answer_weight, config.regex_weight, config.length_weight, config.refusal_weight,
                   config.repetition_weight, config.reward_model_weight}) {
    if (!std::isfinite(w)) return absl::InvalidArgumentError("reward scorers: weights must be finite");
  }
  std::vector<WeightedScorer> out;
  if (config.answer_weight != 0) out.push_back({"answer", config.answer_weight, MakeAnswerMatchScorer()});
  if (config.regex_weight != 0) {
    if (config.regex.empty()) return absl::InvalidArgumentError("reward scorers: regex weight set without a regex");
    ASSIGN_OR_RETURN(std::unique_ptr<Scorer> s, MakeRegexScorer(config.regex));
    out.push_back({"regex", config.regex_weight, std::move(s)});
  }
  if (config.length_weight != 0) {
    ASSIGN_OR_RETURN(std::unique_ptr<Scorer> s, MakeLengthPenaltyScorer(config.length_target_bytes));
    out.push_back({"length", config.length_weight, std::move(s)});
  }
  if (config.refusal_weight != 0) out.push_back({"refusal", config.refusal_weight, MakeRefusalScorer()});
  if (config.repetition_weight != 0) {
    ASSIGN_OR_RETURN(std::unique_ptr<Scorer> s, MakeRepetitionPenaltyScorer(config.repetition_n));
    out.push_back({"repetition", config.repetition_weight, std::move(s)});
  }
  if (!config.reward_model.empty()) {
    ASSIGN_OR_RETURN(torch::Device device, ResolveDevice(config.device, "device"));
    ASSIGN_OR_RETURN(std::unique_ptr<Scorer> s,
                     MakeRewardModelScorer(config.reward_model, config.chat_template, device));
    out.push_back({"reward_model", config.reward_model_weight, std::move(s)});
  }
  if (out.empty()) return absl::InvalidArgumentError("reward scorers: none enabled (every weight is 0)");
  return out;
}

}  // namespace alignd::reward
