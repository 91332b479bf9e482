// Parameter-efficient tuning on top of a CausalLM: LoRA and bottleneck adapters.
//
// A PeftModel owns the adapter parameters in its own torch::nn::Module and attaches them to the model's hook points
// (common/model/transformer.h) without registering them there: the model's named_parameters() stay the Hugging Face
// base state dict (SaveModelDir writes the base only), optimizer(peft->parameters()) trains only the adapters, and
// switching the adapters off (ScopedPeftDisabled) turns the same weights back into the base model, which is the
// reference policy of DPO/PPO without a second copy.
//
// While attached, the base parameters are frozen (requires_grad false); Detach() or destroying the PeftModel
// detaches every hook and restores each base parameter's requires_grad to what it was before. A LoRA and a
// bottleneck PeftModel can share one model (they use different hook points); detach them in reverse order.
//
// On disk, LoRA uses Hugging Face PEFT's layout, which PEFT (PeftModel.from_pretrained) loads:
//   adapter_config.json        peft_type "LORA", task_type "CAUSAL_LM" (or "SEQ_CLS", see below), r, lora_alpha,
//   lora_dropout, target_modules,
//                              fan_in_fan_out (true for GPT-2's Conv1D), bias "none", ... (see SaveLoraConfig in .cc)
//   adapter_model.safetensors  base_model.model.<module path>.lora_A.weight [r, in]
//                              base_model.model.<module path>.lora_B.weight [out, r]
// Bottleneck adapters are alignd's own (PEFT has no such type), in the same two files:
//   adapter_config.json        {"peft_type": "BOTTLENECK", "task_type": "CAUSAL_LM", "base_model_name_or_path",
//                               "bottleneck_size", "sites": ["attention", "mlp"] (either or both), "non_linearity":
//                               "relu" | "gelu", "hidden_size", "num_layers", "init_std", "inference_mode": true}
//   adapter_model.safetensors  base_model.model.<layer path>.{attn_adapter,mlp_adapter}.{down,up}.{weight,bias}
//                              down.weight [size, hidden], down.bias [size], up.weight [hidden, size], up.bias [hidden]
//                              (<layer path> is model.layers.<i> or transformer.h.<i>)
//   The adapter at a site computes h + up(act(down(h))) on the sublayer output h, before the residual add.
//
// A reward model (a score head, *ForSequenceClassification) trains its `score` head in full besides the adapters, as
// PEFT does for task_type "SEQ_CLS" (modules_to_save ["score"]): the head is trainable while attached, saved as
// base_model.model.score.weight, and disabling the adapters puts the base head back until they are enabled again.
// After Detach the trained head stays in the model (like a merge).
//
// Not thread-safe: like the model, one forward or state change at a time.
#ifndef ALIGND_COMMON_MODEL_PEFT_H_
#define ALIGND_COMMON_MODEL_PEFT_H_

#include <torch/nn.h>

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/model/transformer.h"

namespace alignd {

struct LoraConfig {
  // Projection names, matched as PEFT does: a module path equal to an entry or ending in "." + entry ("q_proj",
  // "self_attn.q_proj", "c_attn"). {"all-linear"} alone selects every projection (never lm_head or score). An entry
  // that matches nothing is INVALID_ARGUMENT.
  std::vector<std::string> target_modules = {"q_proj", "v_proj"};
  int64_t r = 8;         // rank, > 0
  double alpha = 16.0;   // scaling = alpha / r (alpha / sqrt(r) with use_rslora)
  double dropout = 0.0;  // on the LoRA input only, in training mode; in [0, 1)
  bool use_rslora = false;
  uint64_t seed = 0;                    // drives lora_A's init (lora_B starts at zero)
  std::string base_model_name_or_path;  // written to adapter_config.json
};

struct BottleneckConfig {
  int64_t bottleneck_size = 16;        // > 0
  bool after_attention = true;         // AdapterSite::kAfterAttention
  bool after_mlp = true;               // AdapterSite::kAfterMlp; at least one site
  std::string non_linearity = "relu";  // "relu" or "gelu" (erf form)
  double init_std = 0.01;              // down-projection ~ normal(0, init_std) (Houlsby); up-projection and biases zero
  uint64_t seed = 0;
  std::string base_model_name_or_path;
};

enum class PeftType { kLora, kBottleneck };

struct PeftLoadOptions {
  // When false (PEFT's is_trainable=False) the adapter parameters do not require grad.
  bool trainable = false;
};

class PeftModel {
 public:
  // Creates fresh adapters for `model` (on its device and dtype), attaches them and freezes the base. At step 0 the
  // model's outputs are unchanged. INVALID_ARGUMENT for a bad config or an unknown target module; FAILED_PRECONDITION
  // when `model` already has hooks attached.
  static absl::StatusOr<std::unique_ptr<PeftModel>> CreateLora(CausalLM model, const LoraConfig& config);
  static absl::StatusOr<std::unique_ptr<PeftModel>> CreateBottleneck(CausalLM model, const BottleneckConfig& config);

  // Reads an adapter folder written by Save (or by Hugging Face PEFT, for LoRA) and attaches it to `model`.
  // NOT_FOUND when a file is missing; INVALID_ARGUMENT naming the field or tensor for an unsupported or malformed
  // config, an unknown target module, a missing or unexpected tensor or a shape mismatch.
  static absl::StatusOr<std::unique_ptr<PeftModel>> Load(const std::string& dir, CausalLM model,
                                                         const PeftLoadOptions& options = {});

  // Detaches (see Detach).
  ~PeftModel();
  PeftModel(const PeftModel&) = delete;
  PeftModel& operator=(const PeftModel&) = delete;

  // Writes adapter_config.json and adapter_model.safetensors (tensors in their own dtype, F32/F16/BF16) into `dir`,
  // assembled beside it and renamed into place: a failed save leaves any previous folder intact.
  absl::Status Save(const std::string& dir) const;

  // The kind of adapters, the config they were made or loaded with, and the model they hook (shared with the caller).
  PeftType type() const { return type_; }
  const LoraConfig& lora_config() const { return lora_; }                    // meaningful for kLora
  const BottleneckConfig& bottleneck_config() const { return bottleneck_; }  // meaningful for kBottleneck
  CausalLM& model() { return model_; }

  // The adapter parameters only (give these to the optimizer), and the same under their saved names
  // ("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"), in model order.
  std::vector<torch::Tensor> parameters() const;
  std::vector<std::pair<std::string, torch::Tensor>> named_parameters() const;
  // The module holding the adapters: call ->to(device, dtype) on it after moving the model.
  torch::nn::Module& module() { return *module_; }

  // LoRA dropout masks come from `generator` (a CPU generator, shared, not copied: its state advances with every
  // mask; for a model on a GPU the masks are drawn on the CPU and copied over) instead of LibTorch's global generator,
  // so that a run owns its randomness. An undefined generator goes back to the global one, the default.
  void SetDropoutGenerator(const at::Generator& generator);

  // Disabled, the model computes exactly the base (the hooks are detached). Disabling a merged LoRA unmerges it
  // first, as PEFT does; re-enabling leaves it unmerged.
  void SetEnabled(bool enabled);
  bool enabled() const { return enabled_; }  // true from creation until SetEnabled(false)

  // LoRA only: folds scaling * B @ A into the base weights (transposed for Conv1D) and detaches the deltas, for
  // faster inference or a full-model export; Unmerge subtracts it again (the base comes back to rounding).
  // FAILED_PRECONDITION for bottleneck adapters, when already (un)merged, disabled or detached.
  absl::Status Merge();
  absl::Status Unmerge();
  bool merged() const { return merged_; }

  // Detaches every hook and restores the base parameters' requires_grad. A merge stays in the weights (PEFT's
  // merge_and_unload); Unmerge first to get the base back. Idempotent; the PeftModel is inert afterwards.
  void Detach();
  bool attached() const { return attached_; }

  class Adapter;  // internal (peft.cc): one hook, a LoRA delta or a bottleneck adapter, and where it attaches

 private:
  PeftModel(CausalLM model, PeftType type);
  absl::Status Attach(std::vector<std::pair<std::string, std::shared_ptr<Adapter>>> adapters);
  void ApplyHooks(bool on);
  absl::Status CopyIn(const std::string& path, bool trainable);

  CausalLM model_;
  PeftType type_;
  LoraConfig lora_;
  BottleneckConfig bottleneck_;
  std::shared_ptr<torch::nn::Module> module_;
  std::vector<std::pair<std::string, std::shared_ptr<Adapter>>> adapters_;  // saved-name prefix -> adapter
  std::vector<std::pair<torch::Tensor, bool>> frozen_;  // base parameter, its requires_grad before attaching
  // Score-head models: the live head weight (trained in place), and the base head while enabled / the trained one
  // while disabled, swapped by SetEnabled. Undefined for language models.
  torch::Tensor score_, score_stash_;
  bool enabled_ = true;
  bool merged_ = false;
  bool attached_ = false;
};

// Switches a PeftModel's adapters off for its lifetime and restores the previous state after: the base model as the
// reference policy.
class ScopedPeftDisabled {
 public:
  // `peft` must outlive the scope.
  explicit ScopedPeftDisabled(PeftModel& peft) : peft_(peft), was_enabled_(peft.enabled()) { peft_.SetEnabled(false); }
  ~ScopedPeftDisabled() { peft_.SetEnabled(was_enabled_); }
  ScopedPeftDisabled(const ScopedPeftDisabled&) = delete;
  ScopedPeftDisabled& operator=(const ScopedPeftDisabled&) = delete;

 private:
  PeftModel& peft_;
  bool was_enabled_;
};

}  // namespace alignd

#endif  // ALIGND_COMMON_MODEL_PEFT_H_
