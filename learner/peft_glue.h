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
  // The adapter parameters (and a reward model's score head), for the optimiser.
  virtual std::vector<torch::Tensor> parameters() = 0;
  // The same under their saved names ("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"): what a
  // distributed job publishes to its rollout workers, which attach the same adapters.
  virtual std::vector<std::pair<std::string, torch::Tensor>> named_parameters() = 0;
  // Inference mode for the adapters (no dropout), as for a rollout worker's copy.
  virtual void Eval() = 0;
  // The adapter alone, in the PEFT layout (adapter_config.json + adapter_model.safetensors); PeftModel::Save's errors.
  virtual absl::Status SaveAdapter(const std::string& dir) = 0;
  // Copies a saved adapter's tensors into the live one (resume). PeftModel::Load's errors; INVALID_ARGUMENT naming
  // `dir` when its tensors' names or shapes differ from the job's. Builds a scratch copy of the base model to load it.
  virtual absl::Status LoadAdapter(const std::string& dir) = 0;
  // The base with a LoRA adapter merged in, as a plain Hugging Face folder; the live model is left unmerged.
  // Bottleneck adapters cannot be merged: the base alone is written (the adapter is saved on its own).
  virtual absl::Status SaveMerged(const std::string& dir, const Tokenizer* tokenizer) = 0;
};

// Attaches the adapters spec.lora or spec.adapter asks for (LoRA when both) to `model`, whose base it freezes; their
// initial weights are seeded with spec.seed. Null when the spec enables neither. LoRA dropout draws its masks from
// `dropout_generator` (a CPU generator, which the adapters share with the caller); undefined: LibTorch's global
// generator. PeftModel::CreateLora / CreateBottleneck's errors.
absl::StatusOr<std::unique_ptr<PeftGlue>> AttachPeft(const JobSpec& spec, CausalLM model,
                                                     const at::Generator& dropout_generator = at::Generator());

}  // namespace alignd::learner

#endif  // ALIGND_LEARNER_PEFT_GLUE_H_
