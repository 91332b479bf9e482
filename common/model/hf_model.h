// Hugging Face model directories, both ways: config.json, model.safetensors (or shards with
// model.safetensors.index.json), generation_config.json and the tokenizer files. Tensor names are Hugging Face's, so
// a folder alignd writes loads in other tools and the reverse. F32, F16 and BF16 on disk.
#ifndef ALIGND_COMMON_MODEL_HF_MODEL_H_
#define ALIGND_COMMON_MODEL_HF_MODEL_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/model/model_config.h"
#include "common/model/safetensors.h"
#include "common/model/transformer.h"
#include "common/text/tokenizer.h"

namespace alignd {

// The subset of generation_config.json that alignd uses; absent fields stay unset.
struct GenerationConfig {
  std::optional<int64_t> bos_token_id, eos_token_id, pad_token_id, max_new_tokens, top_k;
  std::optional<double> temperature, top_p;
  std::optional<bool> do_sample;

  // Reads generation_config.json text (an integer field may be a list: its first element is taken); INVALID_ARGUMENT
  // naming `source` and the field for text that is not an object or a field of the wrong type (a non-boolean do_sample
  // is ignored). ToJson writes the set fields only.
  static absl::StatusOr<GenerationConfig> FromJson(absl::string_view json, absl::string_view source);
  std::string ToJson() const;
};

struct LoadOptions {
  torch::ScalarType dtype = torch::kFloat;  // parameters are converted to this type
  torch::Device device = torch::kCPU;
  bool load_tokenizer = true;  // NOT_FOUND when asked for and the folder has none
};

struct LoadedModel {
  ModelConfig config;
  CausalLM model{nullptr};
  std::unique_ptr<Tokenizer> tokenizer;  // null when not loaded
  GenerationConfig generation;
};

// Loads a model folder. Errors name the file and the tensor: NOT_FOUND for a missing config/weights file,
// INVALID_ARGUMENT for a malformed one, a missing or unexpected tensor, or a shape that does not match the config.
// Tensors Hugging Face keeps as buffers (GPT-2's attn.bias/masked_bias, rotary inv_freq) and a tied lm_head copy are
// ignored; GPT-2 checkpoints without the "transformer." prefix are accepted.
absl::StatusOr<LoadedModel> LoadModelDir(const std::string& dir, const LoadOptions& options = {});

// Copies the tensors of model.safetensors (or its shards) into `model`'s parameters, with the same checks.
// Parameters named in `allow_missing` may be absent from the files and keep their values (e.g. the `score` head of a
// reward model initialised from a language model). Errors as LoadModelDir's; on an error some parameters may already
// hold the file's values. A LibTorch error (c10::Error) is thrown, not returned; LoadModelDir catches it.
absl::Status LoadWeights(const std::string& dir, CausalLMImpl& model, const std::set<std::string>& allow_missing = {});

struct SaveOptions {
  safetensors::Dtype dtype = safetensors::Dtype::kF32;  // F32, F16 or BF16
  int64_t max_shard_bytes = 0;                          // > 0 splits into model-0000i-of-0000N.safetensors
};

// Writes config.json, the weights, generation_config.json and (when `tokenizer` is not null) the tokenizer files.
// The folder is assembled beside `dir` and renamed into place, so a failed save leaves any previous folder intact.
// Errors are WriteDirAtomically's and the writes' (INTERNAL naming `dir` for a LibTorch error while converting
// weights).
absl::Status SaveModelDir(const std::string& dir, CausalLMImpl& model, const Tokenizer* tokenizer,
                          const GenerationConfig& generation = {}, const SaveOptions& options = {});

// The one mapping between safetensors dtypes and LibTorch's types, both ways. TensorFromView copies a view into a new
// CPU tensor of the matching type. INVALID_ARGUMENT for a type the other side lacks (U16/U32/U64; a torch type
// safetensors cannot store) or a view whose byte size does not match its shape.
absl::StatusOr<torch::ScalarType> ToTorchType(safetensors::Dtype dtype);
absl::StatusOr<safetensors::Dtype> ToSafetensorsDtype(torch::ScalarType type);
absl::StatusOr<torch::Tensor> TensorFromView(const safetensors::TensorView& view);

}  // namespace alignd

#endif  // ALIGND_COMMON_MODEL_HF_MODEL_H_
