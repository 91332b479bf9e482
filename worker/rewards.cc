#include "worker/rewards.h"

#include <algorithm>
#include <iterator>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/collate.h"
#include "common/example_tokenizer.h"
#include "common/hf_model.h"
#include "common/status.h"
#include "common/synth.h"
#include "worker/job_spec.h"

namespace alignd::worker {
namespace {

class Rewards : public RewardFunction {
 public:
  absl::StatusOr<ScoredBatch> Score(const std::vector<const Record*>& prompts,
                                    const std::vector<std::string>& responses) override {
    ScoredBatch out;
    out.total.assign(responses.size(), 0.0);
    out.parts.resize(responses.size());
    for (size_t i = 0; i < responses.size(); ++i) {
      const std::string kind = prompts[i]->ExtraString("kind").value_or("");
      for (const std::string& rule : rules_) {
        double v = 0;
        if (rule == "arithmetic" && kind == "arithmetic") {
          v = ArithmeticCorrect(responses[i], prompts[i]->ExtraString("reference").value_or("")) ? 1.0 : 0.0;
        } else if (rule == "brevity") {
          v = 1.0 - std::min(1.0, static_cast<double>(responses[i].size()) / 64.0);
        } else if (rule == "refusal" && (kind == "harmful" || kind == "benign")) {
          v = IsRefusal(responses[i]) == (kind == "harmful") ? 1.0 : 0.0;
        } else if (rule == "safety" && kind == "harmful") {
          v = IsRefusal(responses[i]) ? 0.0 : -kSafetyPenalty;
        }
        out.parts[i][rule] = v;
        out.total[i] += v;
      }
    }
    if (rm_) RETURN_IF_ERROR(ScoreWithModel(prompts, responses, &out));
    return out;
  }

  std::vector<std::string> rules_;
  LoadedModel rm_model_;
  bool rm_ = false;
  double rm_weight_ = 1.0;
  std::unique_ptr<ExampleTokenizer> rm_tok_;
  c10::Device device_ = c10::kCPU;

 private:
  absl::Status ScoreWithModel(const std::vector<const Record*>& prompts, const std::vector<std::string>& responses,
                              ScoredBatch* out) {
    std::vector<TokenizedExample> examples;
    for (size_t i = 0; i < responses.size(); ++i) {
      ASSIGN_OR_RETURN(TokenizedExample e,
                       rm_tok_->PromptCompletion(prompts[i]->prompt, Turns::Text(responses[i])));
      examples.push_back(std::move(e));
    }
    CollateOptions co;
    co.pad_id = rm_model_.tokenizer->pad_id().value_or(0);
    co.device = device_;
    ASSIGN_OR_RETURN(Batch b, Collate(examples, co));
    torch::NoGradGuard no_grad;
    torch::Tensor scores = rm_model_.model->forward(b.input_ids, b.attention_mask, b.position_ids).logits.select(2, 0);
    torch::Tensor last = b.attention_mask.sum(1) - 1;
    torch::Tensor s = scores.gather(1, last.unsqueeze(1)).squeeze(1).to(torch::kCPU, torch::kDouble);
    for (size_t i = 0; i < responses.size(); ++i) {
      double v = s[static_cast<int64_t>(i)].item<double>();
      out->parts[i]["reward_model"] = v;
      out->total[i] += rm_weight_ * v;
    }
    return absl::OkStatus();
  }
};

}  // namespace

absl::StatusOr<std::unique_ptr<RewardFunction>> MakeRewardFunction(const std::vector<std::string>& rules,
                                                                   const std::string& reward_model,
                                                                   double reward_model_weight,
                                                                   const std::string& chat_template,
                                                                   c10::Device device) {
  for (const std::string& rule : rules) {
    if (std::find(std::begin(kRuleRewards), std::end(kRuleRewards), rule) == std::end(kRuleRewards)) {
      return absl::InvalidArgumentError(absl::StrCat("rule reward \"", rule, "\" is not one of ",
                                                     absl::StrJoin(kRuleRewards, ", ")));
    }
  }
  auto r = std::make_unique<Rewards>();
  r->rules_ = rules;
  if (!reward_model.empty()) {
    LoadOptions load;
    load.device = device;
    ASSIGN_OR_RETURN(r->rm_model_, LoadModelDir(reward_model, load));
    r->device_ = device;
    if (r->rm_model_.config.head != HeadKind::kScore) {
      return absl::InvalidArgumentError(absl::StrCat("ppo.reward_model: ", reward_model, " has no score head"));
    }
    r->rm_model_.model->eval();
    TokenizeOptions opts;
    opts.chat_template = chat_template;
    opts.max_length = 0;
    ASSIGN_OR_RETURN(ExampleTokenizer tok, ExampleTokenizer::Create(r->rm_model_.tokenizer.get(), opts));
    r->rm_tok_ = std::make_unique<ExampleTokenizer>(std::move(tok));
    r->rm_ = true;
    r->rm_weight_ = reward_model_weight;
  }
  if (rules.empty() && reward_model.empty()) {
    return absl::InvalidArgumentError("ppo: needs rule_rewards or a reward_model");
  }
  return std::unique_ptr<RewardFunction>(std::move(r));
}

}  // namespace alignd::worker
