#include "reward/model_scorer.h"

#include <torch/torch.h>

#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/base/status.h"
#include "common/data/collate.h"
#include "common/data/example_tokenizer.h"
#include "common/model/device.h"
#include "common/model/hf_model.h"

namespace alignd::reward {
namespace {

class RewardModelScorer : public Scorer {
 public:
  RewardModelScorer(LoadedModel model, std::unique_ptr<ExampleTokenizer> tokenizer)
      : model_(std::move(model)), tokenizer_(std::move(tokenizer)) {}

  absl::StatusOr<std::vector<std::optional<double>>> ScoreBatch(const std::vector<ScoreInput>& inputs) override {
    std::vector<TokenizedExample> examples;
    examples.reserve(inputs.size());
    for (const ScoreInput& in : inputs) {
      ASSIGN_OR_RETURN(TokenizedExample e,
                       tokenizer_->PromptCompletion(Turns::Text(in.prompt), Turns::Text(in.response)));
      examples.push_back(std::move(e));
    }
    CollateOptions co;
    co.pad_id = model_.tokenizer->pad_id().value_or(0);
    co.device = model_.model->parameters().front().device();
    ASSIGN_OR_RETURN(Batch b, Collate(examples, co));
    try {
      torch::NoGradGuard no_grad;
      torch::Tensor scores = model_.model->forward(b.input_ids, b.attention_mask, b.position_ids).logits.select(2, 0);
      torch::Tensor last = b.attention_mask.sum(1) - 1;
      torch::Tensor s = scores.gather(1, last.unsqueeze(1)).squeeze(1).to(torch::kCPU, torch::kDouble).contiguous();
      const double* p = s.data_ptr<double>();
      return std::vector<std::optional<double>>(p, p + s.numel());
    } catch (const c10::Error& e) {
      return TorchErrorStatus(e, "reward model");
    }
  }

 private:
  LoadedModel model_;
  std::unique_ptr<ExampleTokenizer> tokenizer_;  // refers to *model_.tokenizer
};

}  // namespace

absl::StatusOr<std::unique_ptr<Scorer>> MakeRewardModelScorer(const std::string& model_dir,
                                                              const std::string& chat_template, c10::Device device) {
  LoadOptions load;
  load.device = device;
  ASSIGN_OR_RETURN(LoadedModel model, LoadModelDir(model_dir, load));
  if (model.config.head != HeadKind::kScore) {
    return absl::InvalidArgumentError(absl::StrCat("reward model: ", model_dir, " has no score head"));
  }
  if (model.tokenizer == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("reward model: ", model_dir, " has no tokenizer"));
  }
  model.model->eval();
  TokenizeOptions opts;
  opts.chat_template = chat_template;
  opts.max_length = 0;
  ASSIGN_OR_RETURN(ExampleTokenizer tok, ExampleTokenizer::Create(model.tokenizer.get(), opts));
  auto tokenizer = std::make_unique<ExampleTokenizer>(std::move(tok));
  return std::unique_ptr<Scorer>(new RewardModelScorer(std::move(model), std::move(tokenizer)));
}

ScorerContext ModelScorerContext(const std::string& chat_template, c10::Device device) {
  ScorerContext context;
  context.chat_template = chat_template;
  context.load_reward_model = [device](const std::string& model_dir, const std::string& tmpl) {
    return MakeRewardModelScorer(model_dir, tmpl, device);
  };
  return context;
}

}  // namespace alignd::reward
