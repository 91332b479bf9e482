// Sampling parameters of a generation request and the per-step token choice: temperature, top-k and top-p
// (nucleus) filtering, greedy decoding, and per-row random generators derived from the request's seed.
// Pure functions on CPU tensors; safe to call from several threads (each generator is used by one thread at a time).
#ifndef ALIGND_ROLLOUT_SAMPLING_H_
#define ALIGND_ROLLOUT_SAMPLING_H_

#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"

namespace alignd::rollout {

struct SamplingParams {
  // Softmax temperature. 0 = greedy (argmax; top_k, top_p and seed are then ignored). Must be >= 0 and finite.
  double temperature = 1.0;
  // Keep only the k most likely tokens (after temperature). 0 = off. Must be >= 0.
  int64_t top_k = 0;
  // Keep the smallest set of most likely tokens whose probability reaches top_p (always at least one token).
  // 1 = off. Must be in (0, 1].
  double top_p = 1.0;
  // Generated tokens per sample, at most. Must be >= 1; prompt length + max_new_tokens must fit the model context.
  int64_t max_new_tokens = 128;
  // When not empty: one value per prompt of the request, that prompt's own max_new_tokens (a request whose
  // answers have different budgets). Each must be in [max(1, min_new_tokens), max_new_tokens]. Engine API only.
  std::vector<int64_t> max_new_tokens_per_prompt;
  // Stop tokens cannot be drawn (and stop strings do not end a sample) before this many tokens. 0..max_new_tokens.
  int64_t min_new_tokens = 0;
  // Tokens that end a sample. nullopt = the engine's default (tokenizer EOS + the chat template's end-of-turn token
  // when it is a single token); an empty list = none.
  std::optional<std::vector<int32_t>> stop_token_ids;
  // Strings that end a sample when they appear in its decoded text; the text is cut before the stop string.
  // Must not be empty strings.
  std::vector<std::string> stop_strings;
  // Samples per prompt. Must be >= 1.
  int64_t n = 1;
  // Random seed. Sample j of prompt i draws from its own generator seeded with RowSeed(seed, first_prompt_index + i,
  // j), so a request with the same seed gives the same samples however the engine batches its rows.
  uint64_t seed = 0;
  // The index of this request's first prompt in a larger batch that was split over several requests (the parts of
  // a stream, a learner's rollout workers): each row then draws what it would have drawn in the whole batch, however
  // it was split. Must be >= 0.
  int64_t first_prompt_index = 0;
};

// INVALID_ARGUMENT naming the field for a value outside the ranges documented above. Does not check token ids or
// the context length (the engine does, knowing the model).
absl::Status ValidateSamplingParams(const SamplingParams& params);

// The seed of sample `sample_index` of prompt `prompt_index` under request seed `seed` (SplitMix64 mixing: distinct
// rows get unrelated streams).
uint64_t RowSeed(uint64_t seed, int64_t prompt_index, int64_t sample_index);

// Log-probabilities [R, V] of the distribution tokens are drawn from, given float logits [R, V]: log_softmax of
// logits / temperature with everything outside the top-k and the top-p nucleus set to -inf. Needs temperature > 0.
at::Tensor SamplingLogProbs(const at::Tensor& logits, double temperature, int64_t top_k, double top_p);

// One token per row of `log_probs` [R, V] (as SamplingLogProbs returns), row r drawn with generators[r]
// (torch::multinomial). generators.size() must be R.
std::vector<int64_t> DrawTokens(const at::Tensor& log_probs, std::vector<at::Generator>& generators);

}  // namespace alignd::rollout

#endif  // ALIGND_ROLLOUT_SAMPLING_H_
