// The reward-model scorer: a trained model with a scalar score head (an HF folder as the learner writes it), run over
// prompt + response rendered with a chat template; the score is the head's output at the last real token.
#ifndef ALIGND_REWARD_MODEL_SCORER_H_
#define ALIGND_REWARD_MODEL_SCORER_H_

#include <c10/core/Device.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "reward/registry.h"
#include "reward/scorer.h"

namespace alignd::reward {

// Loads `model_dir` (common/model/hf_model.h LoadModelDir). NOT_FOUND / INVALID_ARGUMENT from loading; INVALID_ARGUMENT
// for a model without a score head or without a tokenizer, or an unknown `chat_template`. Scoring a batch that
// fails in LibTorch answers INTERNAL.
// The model and every batch live on `device`.
absl::StatusOr<std::unique_ptr<Scorer>> MakeRewardModelScorer(const std::string& model_dir,
                                                              const std::string& chat_template = "chatml",
                                                              c10::Device device = c10::kCPU);

// A ScorerContext whose reward_model parts load on `device`, with `chat_template` as their default template.
ScorerContext ModelScorerContext(const std::string& chat_template, c10::Device device);

}  // namespace alignd::reward

#endif  // ALIGND_REWARD_MODEL_SCORER_H_
