// Which scorers a reward server runs and with what weights: the plain-data form of the `alignd reward` flags.
#ifndef ALIGND_REWARD_SCORER_CONFIG_H_
#define ALIGND_REWARD_SCORER_CONFIG_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "reward/reward_core.h"

namespace alignd::reward {

// A scorer runs when its weight is not 0 (the reward model: when `reward_model` is set). Part names are the ones
// shown in parentheses.
struct ScorerConfig {
  double answer_weight = 0;              // ("answer") MakeAnswerMatchScorer
  std::string regex;                     // ("regex") MakeRegexScorer(regex), when regex_weight != 0
  double regex_weight = 0;
  int64_t length_target_bytes = 512;     // ("length") MakeLengthPenaltyScorer(length_target_bytes)
  double length_weight = 0;
  double refusal_weight = 0;             // ("refusal") MakeRefusalScorer
  int64_t repetition_n = 3;              // ("repetition") MakeRepetitionPenaltyScorer(repetition_n)
  double repetition_weight = 0;
  std::string reward_model;              // ("reward_model") an HF folder with a score head
  double reward_model_weight = 1.0;
  std::string chat_template = "chatml";  // for the reward model
  std::string device = "cpu";            // the reward model's: cpu, cuda or cuda:N (common/device.h ResolveDevice)
};

// The configured scorers, in the order above. INVALID_ARGUMENT when none is enabled, a weight is not finite, or a
// scorer's own argument is bad (an empty or malformed regex with a weight, ...); the reward model's load errors.
absl::StatusOr<std::vector<WeightedScorer>> MakeScorers(const ScorerConfig& config);

}  // namespace alignd::reward

#endif  // ALIGND_REWARD_SCORER_CONFIG_H_
