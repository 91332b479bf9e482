// Perplexity of a causal language model over texts: exp(mean negative log-likelihood of every predicted token).
#ifndef ALIGND_COMMON_MODEL_PERPLEXITY_H_
#define ALIGND_COMMON_MODEL_PERPLEXITY_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/model/transformer.h"
#include "common/text/tokenizer.h"

namespace alignd {

struct PerplexityOptions {
  int64_t batch_size = 8;
  // Longer token sequences are split into consecutive windows of at most this many tokens, each scored without the
  // context of the previous one. 0 = the model's max_position_embeddings.
  int64_t max_length = 0;
  bool add_special_tokens = true;  // BOS in front of each text, when the tokenizer adds one
};

struct PerplexityResult {
  double perplexity = 0;
  double nll = 0;      // summed negative log-likelihood, natural log
  int64_t tokens = 0;  // number of predicted tokens (each window of n tokens predicts n - 1)
  int64_t texts = 0;
};

// Scores `texts` with `model` (a language-model head; FAILED_PRECONDITION for a score head). Runs without gradients.
// INVALID_ARGUMENT when no text yields a token to predict.
absl::StatusOr<PerplexityResult> ComputePerplexity(CausalLMImpl& model, const Tokenizer& tokenizer,
                                                   const std::vector<std::string>& texts,
                                                   const PerplexityOptions& options = {});

// Per-token log-probabilities of `labels` under `logits`: logits [B, T, V] at position t predict labels[:, t + 1].
// Returns [B, T - 1] (float32, or float64 for float64 logits) — the building block for perplexity, DPO and PPO.
torch::Tensor TokenLogProbs(const torch::Tensor& logits, const torch::Tensor& input_ids);

}  // namespace alignd

#endif  // ALIGND_COMMON_MODEL_PERPLEXITY_H_
