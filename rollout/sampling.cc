#include "rollout/sampling.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"

namespace alignd::rollout {
namespace {

uint64_t SplitMix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

}  // namespace

absl::Status ValidateSamplingParams(const SamplingParams& p) {
  if (!std::isfinite(p.temperature) || p.temperature < 0) {
    return absl::InvalidArgumentError(absl::StrCat("temperature must be finite and >= 0, got ", p.temperature));
  }
  if (p.top_k < 0) return absl::InvalidArgumentError(absl::StrCat("top_k must be >= 0 (0 = off), got ", p.top_k));
  if (!(p.top_p > 0 && p.top_p <= 1)) {
    return absl::InvalidArgumentError(absl::StrCat("top_p must be in (0, 1], got ", p.top_p));
  }
  if (p.max_new_tokens < 1) {
    return absl::InvalidArgumentError(absl::StrCat("max_new_tokens must be >= 1, got ", p.max_new_tokens));
  }
  if (p.min_new_tokens < 0 || p.min_new_tokens > p.max_new_tokens) {
    return absl::InvalidArgumentError(
        absl::StrCat("min_new_tokens must be in [0, max_new_tokens = ", p.max_new_tokens, "], got ", p.min_new_tokens));
  }
  for (size_t i = 0; i < p.max_new_tokens_per_prompt.size(); ++i) {
    const int64_t v = p.max_new_tokens_per_prompt[i];
    if (v < std::max<int64_t>(1, p.min_new_tokens) || v > p.max_new_tokens) {
      return absl::InvalidArgumentError(absl::StrCat("max_new_tokens_per_prompt[", i, "] must be in [max(1, ",
                                                     "min_new_tokens), max_new_tokens = ", p.max_new_tokens, "], got ",
                                                     v));
    }
  }
  if (p.n < 1) return absl::InvalidArgumentError(absl::StrCat("n must be >= 1, got ", p.n));
  if (p.first_prompt_index < 0) {
    return absl::InvalidArgumentError(absl::StrCat("first_prompt_index must be >= 0, got ", p.first_prompt_index));
  }
  for (size_t i = 0; i < p.stop_strings.size(); ++i) {
    if (p.stop_strings[i].empty()) return absl::InvalidArgumentError(absl::StrCat("stop_strings[", i, "] is empty"));
  }
  return absl::OkStatus();
}

uint64_t RowSeed(uint64_t seed, int64_t prompt_index, int64_t sample_index) {
  uint64_t h = SplitMix64(seed);
  h = SplitMix64(h ^ static_cast<uint64_t>(prompt_index));
  return SplitMix64(h ^ static_cast<uint64_t>(sample_index));
}

at::Tensor SamplingLogProbs(const at::Tensor& logits, double temperature, int64_t top_k, double top_p) {
  const double neg_inf = -std::numeric_limits<double>::infinity();
  at::Tensor lp = at::log_softmax(logits.to(at::kFloat) / temperature, -1);
  const int64_t vocab = lp.size(-1);
  if (top_k > 0 && top_k < vocab) {
    at::Tensor kth = std::get<0>(lp.topk(top_k, -1)).narrow(-1, top_k - 1, 1);
    lp = at::log_softmax(lp.masked_fill(lp < kth, neg_inf), -1);
  }
  if (top_p < 1) {
    auto [sorted, order] = lp.sort(-1, /*descending=*/true);
    at::Tensor probs = sorted.exp();
    // A token is dropped when the tokens more likely than it already reach top_p; the first one never is. "Reach"
    // allows a relative 1e-6: the float32 probabilities and their running sum carry rounding (~1e-7) that depends on
    // the CPU's exp and sum kernels, and a nucleus that sums to exactly top_p must not be in on one machine and out
    // on another.
    at::Tensor drop_sorted = (probs.cumsum(-1) - probs) >= top_p * (1 - 1e-6);
    drop_sorted.select(-1, 0).fill_(false);
    at::Tensor drop = at::zeros_like(drop_sorted).scatter(-1, order, drop_sorted);
    lp = at::log_softmax(lp.masked_fill(drop, neg_inf), -1);
  }
  return lp;
}

std::vector<int64_t> DrawTokens(const at::Tensor& log_probs, std::vector<at::Generator>& generators) {
  TORCH_CHECK(log_probs.dim() == 2 && log_probs.size(0) == static_cast<int64_t>(generators.size()),
              "DrawTokens: ", generators.size(), " generators for log_probs of shape ", log_probs.sizes());
  at::Tensor probs = log_probs.exp();
  std::vector<int64_t> tokens(generators.size());
  for (size_t r = 0; r < generators.size(); ++r) {
    tokens[r] =
        at::multinomial(probs[static_cast<int64_t>(r)], 1, /*replacement=*/false, generators[r]).item<int64_t>();
  }
  return tokens;
}

}  // namespace alignd::rollout
