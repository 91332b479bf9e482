#include "common/model/perplexity.h"

#include <algorithm>
#include <cmath>
#include <utility>

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
  std::vector<ScoredTokens> sequences;
  sequences.reserve(texts.size());
  for (const std::string& text : texts) {
    ScoredTokens s;
    s.ids = tokenizer.Encode(text, options.add_special_tokens);
    s.scored.assign(s.ids.size(), 1);
    sequences.push_back(std::move(s));
  }
  return ComputePerplexity(model, sequences, static_cast<int32_t>(tokenizer.pad_id().value_or(0)), options);
}

absl::StatusOr<PerplexityResult> ComputePerplexity(CausalLMImpl& model, const std::vector<ScoredTokens>& sequences,
                                                   int32_t pad_id, const PerplexityOptions& options) {
  if (model.config().head != HeadKind::kLanguageModel) {
    return absl::FailedPreconditionError(
        absl::StrCat("perplexity needs a language-model head; ", model.config().architecture, " has a score head"));
  }
  const int64_t max_len = options.max_length > 0 ? options.max_length : model.config().max_position_embeddings;
  if (max_len < 2) return absl::InvalidArgumentError("max_length must be at least 2");
  std::vector<ScoredTokens> windows;
  for (size_t i = 0; i < sequences.size(); ++i) {
    const ScoredTokens& seq = sequences[i];
    if (seq.scored.size() != seq.ids.size()) {
      return absl::InvalidArgumentError(
          absl::StrCat("sequence ", i, ": ", seq.scored.size(), " mask entries for ", seq.ids.size(), " tokens"));
    }
    for (size_t start = 0; start < seq.ids.size(); start += static_cast<size_t>(max_len)) {
      const size_t end = std::min(seq.ids.size(), start + static_cast<size_t>(max_len));
      // A window is kept when it scores a token: one after its first.
      if (std::find(seq.scored.begin() + start + 1, seq.scored.begin() + end, 1) == seq.scored.begin() + end) continue;
      windows.push_back({std::vector<int32_t>(seq.ids.begin() + start, seq.ids.begin() + end),
                         std::vector<uint8_t>(seq.scored.begin() + start, seq.scored.begin() + end)});
    }
  }
  if (windows.empty()) {
    return absl::InvalidArgumentError("nothing to score: no window has a scored token after its first");
  }
  // Sorting by length keeps padding low within a batch; the sum does not depend on the order.
  std::sort(windows.begin(), windows.end(), [](const auto& a, const auto& b) { return a.ids.size() < b.ids.size(); });
  PerplexityResult result;
  result.texts = static_cast<int64_t>(sequences.size());
  torch::NoGradGuard no_grad;
  const auto device = model.parameters().front().device();
  try {
    for (size_t begin = 0; begin < windows.size(); begin += static_cast<size_t>(options.batch_size)) {
      size_t end = std::min(windows.size(), begin + static_cast<size_t>(options.batch_size));
      const int64_t b = static_cast<int64_t>(end - begin);
      const int64_t t = static_cast<int64_t>(windows[end - 1].ids.size());
      torch::Tensor ids = torch::full({b, t}, static_cast<int64_t>(pad_id), torch::kLong);
      torch::Tensor mask = torch::zeros({b, t}, torch::kLong);
      torch::Tensor scored = torch::zeros({b, t}, torch::kFloat);
      auto ids_a = ids.accessor<int64_t, 2>();
      auto mask_a = mask.accessor<int64_t, 2>();
      auto scored_a = scored.accessor<float, 2>();
      for (int64_t r = 0; r < b; ++r) {
        const ScoredTokens& w = windows[begin + static_cast<size_t>(r)];
        for (size_t c = 0; c < w.ids.size(); ++c) {
          ids_a[r][static_cast<int64_t>(c)] = w.ids[c];
          mask_a[r][static_cast<int64_t>(c)] = 1;
          scored_a[r][static_cast<int64_t>(c)] = w.scored[c] ? 1.0f : 0.0f;
        }
      }
      ids = ids.to(device);
      mask = mask.to(device);
      ModelOutput out = model.forward(ids, mask);
      torch::Tensor logp = TokenLogProbs(out.logits, ids);
      torch::Tensor target_mask = scored.narrow(1, 1, t - 1).to(device);
      result.nll -= (logp.to(torch::kDouble) * target_mask.to(torch::kDouble)).sum().item<double>();
      result.tokens += static_cast<int64_t>(target_mask.sum().item<double>());
    }
  } catch (const c10::Error& e) {
    return absl::InternalError(absl::StrCat("forward failed: ", e.what_without_backtrace()));
  }
  result.perplexity = std::exp(result.nll / static_cast<double>(result.tokens));
  return result;
}

}  // namespace alignd
