#include "common/model/perplexity.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"

namespace alignd {

torch::Tensor TokenLogProbs(const torch::Tensor& logits, const torch::Tensor& input_ids) {
  const int64_t t = logits.size(1);
  torch::Tensor shifted = logits.narrow(1, 0, t - 1);
  shifted = shifted.to(at::promote_types(shifted.scalar_type(), torch::kFloat));
  torch::Tensor targets = input_ids.narrow(1, 1, t - 1).unsqueeze(-1);
  // log_softmax(x)[y] = x[y] - logsumexp(x): avoids materialising the full log-softmax.
  return shifted.gather(-1, targets).squeeze(-1) - shifted.logsumexp(-1);
}

absl::StatusOr<PerplexityResult> ComputePerplexity(CausalLMImpl& model, const Tokenizer& tokenizer,
                                                   const std::vector<std::string>& texts,
                                                   const PerplexityOptions& options) {
  if (model.config().head != HeadKind::kLanguageModel) {
    return absl::FailedPreconditionError(
        absl::StrCat("perplexity needs a language-model head; ", model.config().architecture, " has a score head"));
  }
  const int64_t max_len = options.max_length > 0 ? options.max_length : model.config().max_position_embeddings;
  if (max_len < 2) return absl::InvalidArgumentError("max_length must be at least 2");
  std::vector<std::vector<int32_t>> windows;
  for (const std::string& text : texts) {
    std::vector<int32_t> ids = tokenizer.Encode(text, options.add_special_tokens);
    for (size_t start = 0; start < ids.size(); start += static_cast<size_t>(max_len)) {
      size_t end = std::min(ids.size(), start + static_cast<size_t>(max_len));
      if (end - start >= 2) windows.emplace_back(ids.begin() + start, ids.begin() + end);
    }
  }
  if (windows.empty()) return absl::InvalidArgumentError("no text has two or more tokens to score");

  // Sorting by length keeps padding low within a batch; the sum does not depend on the order.
  std::sort(windows.begin(), windows.end(), [](const auto& a, const auto& b) { return a.size() < b.size(); });
  PerplexityResult result;
  result.texts = static_cast<int64_t>(texts.size());
  torch::NoGradGuard no_grad;
  const auto device = model.parameters().front().device();
  const int64_t pad = tokenizer.pad_id().value_or(0);
  try {
    for (size_t begin = 0; begin < windows.size(); begin += static_cast<size_t>(options.batch_size)) {
      size_t end = std::min(windows.size(), begin + static_cast<size_t>(options.batch_size));
      const int64_t b = static_cast<int64_t>(end - begin);
      const int64_t t = static_cast<int64_t>(windows[end - 1].size());
      torch::Tensor ids = torch::full({b, t}, pad, torch::kLong);
      torch::Tensor mask = torch::zeros({b, t}, torch::kLong);
      auto ids_a = ids.accessor<int64_t, 2>();
      auto mask_a = mask.accessor<int64_t, 2>();
      for (int64_t r = 0; r < b; ++r) {
        const auto& w = windows[begin + static_cast<size_t>(r)];
        for (size_t c = 0; c < w.size(); ++c) {
          ids_a[r][static_cast<int64_t>(c)] = w[c];
          mask_a[r][static_cast<int64_t>(c)] = 1;
        }
      }
      ids = ids.to(device);
      mask = mask.to(device);
      ModelOutput out = model.forward(ids, mask);
      torch::Tensor logp = TokenLogProbs(out.logits, ids);
      torch::Tensor target_mask = mask.narrow(1, 1, t - 1).to(torch::kFloat);
      result.nll -= (logp.to(torch::kDouble) * target_mask).sum().item<double>();
      result.tokens += target_mask.sum().item<int64_t>();
    }
  } catch (const c10::Error& e) {
    return absl::InternalError(absl::StrCat("forward failed: ", e.what_without_backtrace()));
  }
  result.perplexity = std::exp(result.nll / static_cast<double>(result.tokens));
  return result;
}

}  // namespace alignd
