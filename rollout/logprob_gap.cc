#include "rollout/logprob_gap.h"

#include <torch/nn.h>

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "common/base/status.h"
#include "common/data/collate.h"
#include "common/model/perplexity.h"

namespace alignd::rollout {

absl::StatusOr<std::vector<std::vector<float>>> RecomputeLogProbs(CausalLMImpl& model,
                                                                  const std::vector<std::vector<int32_t>>& prompts,
                                                                  const std::vector<Sample>& samples,
                                                                  int64_t batch_size) {
  if (batch_size < 1) return absl::InvalidArgumentError(absl::StrCat("batch_size must be >= 1, got ", batch_size));
  for (size_t i = 0; i < samples.size(); ++i) {
    if (samples[i].prompt_index < 0 || samples[i].prompt_index >= static_cast<int64_t>(prompts.size())) {
      return absl::InvalidArgumentError(absl::StrCat("samples[", i, "].prompt_index ", samples[i].prompt_index,
                                                     " is outside the ", prompts.size(), " prompts"));
    }
  }
  std::vector<std::vector<float>> result(samples.size());
  torch::NoGradGuard no_grad;
  const torch::Device device = model.parameters().front().device();
  try {
    for (size_t begin = 0; begin < samples.size(); begin += static_cast<size_t>(batch_size)) {
      size_t end = std::min(samples.size(), begin + static_cast<size_t>(batch_size));
      std::vector<TokenizedExample> examples;
      for (size_t i = begin; i < end; ++i) {
        TokenizedExample ex;
        ex.input_ids = prompts[static_cast<size_t>(samples[i].prompt_index)];
        ex.input_ids.insert(ex.input_ids.end(), samples[i].token_ids.begin(), samples[i].token_ids.end());
        ex.loss_mask.assign(ex.input_ids.size(), 1);
        examples.push_back(std::move(ex));
      }
      ASSIGN_OR_RETURN(Batch batch, Collate(examples, CollateOptions()));
      ModelOutput out = model.forward(batch.input_ids.to(device), batch.attention_mask.to(device));
      torch::Tensor logprobs = TokenLogProbs(out.logits, batch.input_ids.to(device)).to(torch::kCPU, torch::kFloat);
      auto a = logprobs.accessor<float, 2>();
      for (size_t i = begin; i < end; ++i) {
        const auto row = static_cast<int64_t>(i - begin);
        const auto prompt_length = static_cast<int64_t>(prompts[static_cast<size_t>(samples[i].prompt_index)].size());
        // logprobs[:, t] scores input_ids[:, t + 1], so completion token k is at prompt_length - 1 + k.
        for (size_t k = 0; k < samples[i].token_ids.size(); ++k) {
          result[i].push_back(a[row][prompt_length - 1 + static_cast<int64_t>(k)]);
        }
      }
    }
  } catch (const c10::Error& e) {
    return absl::InternalError(absl::StrCat("recomputing log-probs failed: ", e.what_without_backtrace()));
  }
  return result;
}

absl::StatusOr<double> MaxLogProbGap(const std::vector<Sample>& samples,
                                     const std::vector<std::vector<float>>& reference) {
  if (samples.size() != reference.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat(samples.size(), " samples but ", reference.size(), " reference log-prob vectors"));
  }
  double gap = 0;
  for (size_t i = 0; i < samples.size(); ++i) {
    if (samples[i].logprobs.size() != reference[i].size()) {
      return absl::InvalidArgumentError(absl::StrCat("samples[", i, "] has ", samples[i].logprobs.size(),
                                                     " log-probs but the reference has ", reference[i].size()));
    }
    for (size_t t = 0; t < reference[i].size(); ++t) {
      gap = std::max(gap, std::abs(static_cast<double>(samples[i].logprobs[t]) - reference[i][t]));
    }
  }
  return gap;
}

}  // namespace alignd::rollout
