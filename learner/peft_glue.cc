#include "learner/peft_glue.h"

#include "absl/strings/str_cat.h"
#include "common/base/status.h"
#include "common/model/hf_model.h"
#include "common/model/peft.h"

namespace alignd::learner {
namespace {

class Glue : public PeftGlue {
 public:
  explicit Glue(std::unique_ptr<PeftModel> peft) : peft_(std::move(peft)) {}
  void SetEnabled(bool enabled) override { peft_->SetEnabled(enabled); }
  std::vector<torch::Tensor> parameters() override { return peft_->parameters(); }
  std::vector<std::pair<std::string, torch::Tensor>> named_parameters() override { return peft_->named_parameters(); }
  void Eval() override { peft_->module().eval(); }
  absl::Status SaveAdapter(const std::string& dir) override { return peft_->Save(dir); }

  absl::Status LoadAdapter(const std::string& dir) override {
    // Copy the saved tensors into the live adapter (same names, shapes checked by a scratch load).
    CausalLM scratch(peft_->model()->config());
    ASSIGN_OR_RETURN(std::unique_ptr<PeftModel> loaded, PeftModel::Load(dir, scratch));
    auto saved = loaded->named_parameters();
    auto live = peft_->named_parameters();
    if (saved.size() != live.size()) {
      return absl::InvalidArgumentError(
          absl::StrCat(dir, ": adapter has ", saved.size(), " tensors, the job's has ", live.size()));
    }
    torch::NoGradGuard no_grad;
    for (size_t i = 0; i < live.size(); ++i) {
      if (saved[i].first != live[i].first || !saved[i].second.sizes().equals(live[i].second.sizes())) {
        return absl::InvalidArgumentError(absl::StrCat(dir, ": adapter tensor \"", saved[i].first,
                                                       "\" does not match the job's \"", live[i].first, "\""));
      }
      live[i].second.copy_(saved[i].second);
    }
    return absl::OkStatus();
  }

  absl::Status SaveMerged(const std::string& dir, const Tokenizer* tokenizer) override {
    if (peft_->type() != PeftType::kLora) {
      // Bottleneck adapters add modules, so they cannot be folded into the base weights: final/ holds the base and
      // adapter/ the adapters.
      return SaveModelDir(dir, *peft_->model(), tokenizer);
    }
    RETURN_IF_ERROR(peft_->Merge());
    absl::Status s = SaveModelDir(dir, *peft_->model(), tokenizer);
    absl::Status u = peft_->Unmerge();
    return s.ok() ? u : s;
  }

 private:
  std::unique_ptr<PeftModel> peft_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<PeftGlue>> AttachPeft(const JobSpec& spec, CausalLM model,
                                                     const at::Generator& dropout_generator) {
  if (!spec.lora.enabled && !spec.adapter.enabled) return std::unique_ptr<PeftGlue>();
  std::unique_ptr<PeftModel> peft;
  if (spec.lora.enabled) {
    LoraConfig c;
    c.target_modules = spec.lora.target_modules;
    c.r = spec.lora.r;
    c.alpha = spec.lora.alpha;
    c.dropout = spec.lora.dropout;
    c.seed = spec.seed;
    c.base_model_name_or_path = spec.model.path;
    ASSIGN_OR_RETURN(peft, PeftModel::CreateLora(model, c));
    peft->SetDropoutGenerator(dropout_generator);
  } else {
    BottleneckConfig c;
    c.bottleneck_size = spec.adapter.bottleneck;
    c.after_attention = spec.adapter.after_attention;
    c.after_mlp = spec.adapter.after_mlp;
    c.seed = spec.seed;
    c.base_model_name_or_path = spec.model.path;
    ASSIGN_OR_RETURN(peft, PeftModel::CreateBottleneck(model, c));
  }
  return std::unique_ptr<PeftGlue>(std::make_unique<Glue>(std::move(peft)));
}

}  // namespace alignd::learner
