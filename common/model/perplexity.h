// Perplexity of a causal language model over texts: exp(mean negative log-likelihood of every predicted token), or
// over chosen tokens of token sequences (a conversation's assistant turns: what SFT trains).
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
  int64_t tokens = 0;  // number of predicted tokens scored (each window of n tokens predicts at most n - 1)
  int64_t texts = 0;
};

// Scores `texts` with `model` (a language-model head; FAILED_PRECONDITION for a score head). Runs without gradients.
// INVALID_ARGUMENT when no text yields a token to predict.
absl::StatusOr<PerplexityResult> ComputePerplexity(CausalLMImpl& model, const Tokenizer& tokenizer,
                                                   const std::vector<std::string>& texts,
                                                   const PerplexityOptions& options = {});

// A token sequence and the tokens that count: scored[t] == 1 means token t is scored (predicted from token t - 1; the
// first token of a window has nothing to be predicted from and is never scored). Same length as ids.
struct ScoredTokens {
  std::vector<int32_t> ids;
  std::vector<uint8_t> scored;
};

// Perplexity over the scored tokens of `sequences`, split into windows as above (options.add_special_tokens is not
// read: the ids are as given); `pad_id` fills the batches. INVALID_ARGUMENT when no token is scored, or when a
// sequence's mask has another length than its ids.
absl::StatusOr<PerplexityResult> ComputePerplexity(CausalLMImpl& model, const std::vector<ScoredTokens>& sequences,
                                                   int32_t pad_id, const PerplexityOptions& options = {});

// Per-token log-probabilities of `labels` under `logits`: logits [B, T, V] at position t predict labels[:, t + 1].
// Returns [B, T - 1] (float32, or float64 for float64 logits) — the building block for perplexity, DPO and PPO.
torch::Tensor TokenLogProbs(const torch::Tensor& logits, const torch::Tensor& input_ids);

}  // namespace alignd

#endif  // ALIGND_COMMON_MODEL_PERPLEXITY_H_
