// The configuration of a decoder-only transformer, read from and written to a Hugging Face `config.json`.
// Torch-free, so that code which only inspects a model folder need not include LibTorch.
#ifndef ALIGND_COMMON_MODEL_MODEL_CONFIG_H_
#define ALIGND_COMMON_MODEL_MODEL_CONFIG_H_

#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace alignd {

enum class ModelFamily {
  kLlama,  // LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM: RMSNorm, RoPE, SwiGLU, GQA.
  kGpt2,   // GPT2LMHeadModel: LayerNorm, learned positions, GELU (tanh), fused c_attn.
};

// What sits on top of the final hidden states.
enum class HeadKind {
  kLanguageModel,  // lm_head (or the tied embedding) -> vocabulary logits: *ForCausalLM, GPT2LMHeadModel.
  kScore,          // `score` Linear(hidden, num_labels, bias=false): *ForSequenceClassification (reward models).
};

struct ModelConfig {
  ModelFamily family = ModelFamily::kLlama;
  HeadKind head = HeadKind::kLanguageModel;
  std::string model_type = "llama";  // "llama", "mistral", "qwen2", "gpt2"
  std::string architecture = "LlamaForCausalLM";
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;  // GPT-2: n_inner, default 4 * hidden_size
  int64_t num_layers = 0;
  int64_t num_heads = 0;
  int64_t num_kv_heads = 0;  // == num_heads without GQA
  int64_t head_dim = 0;      // hidden_size / num_heads unless config.json sets head_dim
  int64_t max_position_embeddings = 0;
  double norm_eps = 1e-5;  // rms_norm_eps or layer_norm_epsilon
  double rope_theta = 10000.0;
  bool tie_word_embeddings = false;
  bool attention_bias = false;  // q/k/v (and o for Llama's attention_bias) biases; Qwen2: q/k/v only
  bool o_proj_bias = false;
  bool mlp_bias = false;
  std::string hidden_act = "silu";  // "silu" for Llama, "gelu_new" for GPT-2
  int64_t num_labels = 1;           // score head width
  std::optional<int64_t> bos_token_id, eos_token_id, pad_token_id;
  std::string torch_dtype = "float32";  // dtype the weights are stored in

  // Parses config.json text. INVALID_ARGUMENT naming `source` and the field for missing/invalid fields or an
  // unsupported architecture (the message lists the supported ones).
  static absl::StatusOr<ModelConfig> FromJson(absl::string_view json, absl::string_view source = "config.json");
  // config.json text in Hugging Face's spelling for this family, so that other tools load the folder.
  std::string ToJson() const;
  // Checks internal consistency (heads divide, sizes positive). INVALID_ARGUMENT naming the field.
  absl::Status Validate() const;

  // Parameter count of the model this config describes (embeddings counted once when tied).
  int64_t NumParameters() const;
};

// Convenience constructors for tiny models that alignd initialises itself.
ModelConfig TinyLlamaConfig(int64_t vocab_size, int64_t hidden_size, int64_t num_layers, int64_t num_heads,
                            int64_t num_kv_heads, int64_t max_positions);
ModelConfig TinyGpt2Config(int64_t vocab_size, int64_t hidden_size, int64_t num_layers, int64_t num_heads,
                           int64_t max_positions);

}  // namespace alignd

#endif  // ALIGND_COMMON_MODEL_MODEL_CONFIG_H_
