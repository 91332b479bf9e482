// The rollout/learner consistency check (`rollout/logprob_gap`): the log-probs the engine reports for its samples
// must equal what the learner computes with a full forward pass over prompt + completion. A gap beyond float noise
// (~1e-5 in float32) means the two disagree on the model, the weights version, the tokens or the positions, and
// importance ratios in PPO would be wrong from the first step.
#ifndef ALIGND_ROLLOUT_LOGPROB_GAP_H_
#define ALIGND_ROLLOUT_LOGPROB_GAP_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "common/model/transformer.h"
#include "rollout/engine.h"

namespace alignd::rollout {

// Log-probs of each sample's token_ids under `model`, as the learner computes them: right-padded prompt + token_ids
// through a forward pass without a cache, then TokenLogProbs (common/model/perplexity.h). One vector per sample,
// aligned with its token_ids. `prompts` are the prompts the samples' prompt_index refer to. INVALID_ARGUMENT for a
// prompt_index out of range or batch_size < 1; INTERNAL when LibTorch fails. Runs without gradients.
absl::StatusOr<std::vector<std::vector<float>>> RecomputeLogProbs(CausalLMImpl& model,
                                                                  const std::vector<std::vector<int32_t>>& prompts,
                                                                  const std::vector<Sample>& samples,
                                                                  int64_t batch_size = 8);

// max |samples[i].logprobs[t] - reference[i][t]| over all tokens (0 when there are none). INVALID_ARGUMENT when the
// sizes differ.
absl::StatusOr<double> MaxLogProbGap(const std::vector<Sample>& samples,
                                     const std::vector<std::vector<float>>& reference);

}  // namespace alignd::rollout

#endif  // ALIGND_ROLLOUT_LOGPROB_GAP_H_
