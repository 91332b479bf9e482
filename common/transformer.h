// The decoder-only transformer behind every alignd model: the Llama family (Llama, Mistral, Qwen2) and the GPT-2
// family, configured from a ModelConfig. Parameter names are exactly Hugging Face's (`model.layers.0.self_attn.q_proj
// .weight`, `transformer.h.0.attn.c_attn.weight`, `lm_head.weight`, `score.weight`), so named_parameters() is the
// state dict that HF directories hold.
//
// Forward handles a batch with an attention mask (left or right padding), explicit or derived position ids, and an
// optional KV cache for prefill + one-token decode steps. Not thread-safe: one forward at a time per module (use
// torch::NoGradGuard and separate caches for inference).
#ifndef ALIGND_COMMON_TRANSFORMER_H_
#define ALIGND_COMMON_TRANSFORMER_H_

#include <torch/nn.h>

#include <cstdint>
#include <vector>

#include "common/model_config.h"

namespace alignd {

// Keys and values of past positions, one pair per layer, each [B, num_kv_heads, past_len, head_dim] after RoPE.
struct KVCache {
  std::vector<torch::Tensor> keys;
  std::vector<torch::Tensor> values;

  int64_t length() const { return keys.empty() || !keys[0].defined() ? 0 : keys[0].size(2); }
  void Reset() {
    keys.clear();
    values.clear();
  }
  // Keeps only the batch rows in `rows` (int64 indices), e.g. to drop finished sequences from a decode batch.
  void SelectRows(const torch::Tensor& rows);
};

struct ModelOutput {
  torch::Tensor logits;  // [B, T, vocab] for a language-model head, [B, T, num_labels] for a score head
  torch::Tensor hidden;  // final hidden states after the last norm, [B, T, hidden]
};

// Positions that skip padding: cumsum(mask) - 1, clamped at 0, for the last `new_tokens` columns of `attention_mask`
// ([B, past + new]). Left-padded rows thus start at position 0 on their first real token.
torch::Tensor PositionIdsFromMask(const torch::Tensor& attention_mask, int64_t new_tokens);

// The embedding + blocks + final norm of one family (defined in transformer.cc).
class DecoderBody;

class CausalLMImpl : public torch::nn::Module {
 public:
  explicit CausalLMImpl(const ModelConfig& config);

  // input_ids: int64 [B, T]. attention_mask: [B, past + T], 1 on real tokens (undefined = all real).
  // position_ids: int64 [B, T] (undefined = PositionIdsFromMask). cache: when non-null, its past keys/values are
  // attended to and this call's are appended (the cache must come from earlier calls with the same rows).
  ModelOutput forward(const torch::Tensor& input_ids, const torch::Tensor& attention_mask = {},
                      const torch::Tensor& position_ids = {}, KVCache* cache = nullptr);

  // Initialises every parameter as Hugging Face does for a fresh model (normal(0, 0.02), zero biases, unit norms;
  // GPT-2's residual projections scaled by 1/sqrt(2 * layers)), from `seed`.
  void InitWeights(uint64_t seed);

  const ModelConfig& config() const { return config_; }

 private:
  ModelConfig config_;
  std::shared_ptr<DecoderBody> body_;  // registered as "model" (Llama) or "transformer" (GPT-2)
  torch::nn::Linear lm_head_{nullptr};  // absent when tied or with a score head
  torch::nn::Linear score_{nullptr};
  torch::Tensor tied_embedding_;    // the embedding matrix when lm_head is tied
};
TORCH_MODULE(CausalLM);

}  // namespace alignd

#endif  // ALIGND_COMMON_TRANSFORMER_H_
