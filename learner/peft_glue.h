// Connects the trainer to common/model/peft.h: attaches LoRA or bottleneck adapters as the job spec asks, exposes their
// parameters to the optimiser, switches them off for the reference policy, and saves/loads them.
#ifndef ALIGND_LEARNER_PEFT_GLUE_H_
#define ALIGND_LEARNER_PEFT_GLUE_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/model/transformer.h"
#include "common/text/tokenizer.h"
#include "learner/algorithm.h"
#include "spec/job_spec.h"

namespace alignd::learner {

class PeftGlue : public ReferenceSwitch {
 public:
  ~PeftGlue() override = default;
  virtual std::vector<torch::Tensor> parameters() = 0;
  // The same under their saved names ("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"): what a
  // distributed job publishes to its rollout workers, which attach the same adapters.
  virtual std::vector<std::pair<std::string, torch::Tensor>> named_parameters() = 0;
  // Inference mode for the adapters (no dropout), as for a rollout worker's copy.
  virtual void Eval() = 0;
  // The adapter alone, in the PEFT layout (adapter_config.json + adapter_model.safetensors).
  virtual absl::Status SaveAdapter(const std::string& dir) = 0;
  virtual absl::Status LoadAdapter(const std::string& dir) = 0;
  // The base with the adapter merged in, as a plain Hugging Face folder; the live model is left unmerged.
  virtual absl::Status SaveMerged(const std::string& dir, const Tokenizer* tokenizer) = 0;
};

// Null when the spec enables neither LoRA nor adapters.
absl::StatusOr<std::unique_ptr<PeftGlue>> AttachPeft(const JobSpec& spec, CausalLM model);

}  // namespace alignd::learner

#endif  // ALIGND_LEARNER_PEFT_GLUE_H_
