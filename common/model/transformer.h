// The decoder-only transformer behind every alignd model: the Llama family (Llama, Mistral, Qwen2) and the GPT-2
// family, configured from a ModelConfig. Parameter names are exactly Hugging Face's (`model.layers.0.self_attn.q_proj
// .weight`, `transformer.h.0.attn.c_attn.weight`, `lm_head.weight`, `score.weight`), so named_parameters() is the
// state dict that HF directories hold.
//
// Forward handles a batch with an attention mask (left or right padding), explicit or derived position ids, and an
// optional KV cache for prefill + one-token decode steps. Not thread-safe: one forward at a time per module (use
// torch::NoGradGuard and separate caches for inference).
//
// Hook points for parameter-efficient tuning (common/model/peft.h). Every projection inside the decoder layers (Llama
// q/k/v/o_proj and gate/up/down_proj; GPT-2 c_attn, attn.c_proj, c_fc, mlp.c_proj) is a Projection that adds the
// output of an optional delta hook (LoRA), and every decoder layer can add a bottleneck adapter to the output of its
// attention and of its MLP before the residual add. Hooks are NOT registered as submodules: named_parameters() stays
// exactly the Hugging Face state dict, SaveModelDir never writes them, and to()/train() do not reach them (their owner
// moves them). With no hook attached, forward is the plain model (one null check per hook point).
#ifndef ALIGND_COMMON_MODEL_TRANSFORMER_H_
#define ALIGND_COMMON_MODEL_TRANSFORMER_H_

#include <torch/nn.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/model/model_config.h"

namespace alignd {

// Keys and values of past positions, one pair per layer, each [B, num_kv_heads, past_len, head_dim] after RoPE.
struct KVCache {
  std::vector<torch::Tensor> keys;
  std::vector<torch::Tensor> values;

  // Cached positions (0 for an empty cache); Reset empties the cache for a new batch.
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

// A learned correction added to a hooked output: a LoRA delta on a projection, a bottleneck adapter on a sublayer.
// Implementations live outside the model (common/model/peft.h) and own their parameters.
class AdditiveHook {
 public:
  virtual ~AdditiveHook() = default;
  // Returns the term added to the hooked output (same shape and dtype as that output). `x` is the projection's input
  // for a projection delta, the sublayer's output for a layer adapter. `training` is the hooked module's
  // is_training(), so dropout inside the hook follows model->train() / model->eval().
  virtual torch::Tensor Delta(const torch::Tensor& x, bool training) = 0;
};

// A linear projection with the parameters Hugging Face gives it ("weight", and "bias" when it has one):
//   kLinear: nn.Linear, weight [out, in], y = x W^T + b. Initialised like torch::nn::Linear (same RNG draws).
//   kConv1D: GPT-2's Conv1D, weight [in, out], y = x W + b (PEFT's fan_in_fan_out). Left uninitialised.
// y gains delta->Delta(x, is_training()) when a delta hook is attached.
class ProjectionImpl : public torch::nn::Module {
 public:
  enum class Layout { kLinear, kConv1D };
  // Parameters on the CPU in float32; kLinear draws from the global generator as torch::nn::Linear does.
  ProjectionImpl(int64_t in_features, int64_t out_features, bool bias, Layout layout);

  // x [..., in_features] -> [..., out_features], plus the delta hook's term when one is attached.
  torch::Tensor forward(const torch::Tensor& x);

  // The shape and layout given to the constructor.
  int64_t in_features() const { return in_features_; }
  int64_t out_features() const { return out_features_; }
  Layout layout() const { return layout_; }
  // Attaches `delta` (nullptr detaches). The projection shares ownership but does not register it.
  void set_delta(std::shared_ptr<AdditiveHook> delta) { delta_ = std::move(delta); }
  const std::shared_ptr<AdditiveHook>& delta() const { return delta_; }  // nullptr when none

  torch::Tensor weight, bias;  // bias undefined when the projection has none

 private:
  int64_t in_features_, out_features_;
  Layout layout_;
  std::shared_ptr<AdditiveHook> delta_;
};
TORCH_MODULE(Projection);

// Where a decoder layer can hold a bottleneck adapter: on the output of its attention (after o_proj / attn.c_proj)
// or of its MLP (after down_proj / mlp.c_proj). The layer computes h = sublayer(norm(x)); h = h + adapter(h);
// x = x + h, i.e. the adapter sits inside the residual branch as in Houlsby et al. (2019) (Pfeiffer et al. keep only
// the MLP site).
enum class AdapterSite { kAfterAttention = 0, kAfterMlp = 1 };

// What every decoder layer (Llama's LlamaDecoderLayer, GPT-2's Block) has in common: its two adapter hook points.
class DecoderLayerImpl : public torch::nn::Module {
 public:
  // Attaches `adapter` at `site` (nullptr detaches); shared, not registered.
  void set_adapter(AdapterSite site, std::shared_ptr<AdditiveHook> adapter) {
    adapters_[static_cast<int>(site)] = std::move(adapter);
  }
  // The adapter at `site`, nullptr when none.
  const std::shared_ptr<AdditiveHook>& adapter(AdapterSite site) const { return adapters_[static_cast<int>(site)]; }

 protected:
  // h + adapter(h) when an adapter is attached at `site`, else `h` itself.
  torch::Tensor Adapt(AdapterSite site, const torch::Tensor& h) {
    const auto& a = adapters_[static_cast<int>(site)];
    return a == nullptr ? h : h + a->Delta(h, is_training());
  }

 private:
  std::shared_ptr<AdditiveHook> adapters_[2];
};

// A hookable module and its Hugging Face module path ("model.layers.0.self_attn.q_proj", "transformer.h.1").
struct NamedProjection {
  std::string path;
  std::shared_ptr<ProjectionImpl> module;
};
struct NamedLayer {
  std::string path;
  std::shared_ptr<DecoderLayerImpl> module;
};

// The embedding + blocks + final norm of one family (defined in transformer.cc).
class DecoderBody;

class CausalLMImpl : public torch::nn::Module {
 public:
  // `config` must be valid (ModelConfig::Validate). Parameters start on the CPU in float32 with LibTorch's default
  // initialisation; call InitWeights or LoadWeights (common/model/hf_model.h) before use.
  explicit CausalLMImpl(const ModelConfig& config);

  // input_ids: int64 [B, T]. attention_mask: [B, past + T], 1 on real tokens (undefined = all real).
  // position_ids: int64 [B, T] (undefined = PositionIdsFromMask). cache: when non-null, its past keys/values are
  // attended to and this call's are appended (the cache must come from earlier calls with the same rows).
  ModelOutput forward(const torch::Tensor& input_ids, const torch::Tensor& attention_mask = {},
                      const torch::Tensor& position_ids = {}, KVCache* cache = nullptr);

  // The final hidden states (ModelOutput::hidden) without the head, for losses that apply the head only where they
  // train (learner/losses.h HeadLogProbs). Same arguments and checks as forward.
  torch::Tensor forward_hidden(const torch::Tensor& input_ids, const torch::Tensor& attention_mask = {},
                               const torch::Tensor& position_ids = {}, KVCache* cache = nullptr);

  // Padding-free: `input_ids` [1, N] holds sequences end to end, sequence i in columns [offsets[i], offsets[i + 1]).
  // Each attends causally within itself only (one attention call per sequence, so no [N, N] mask and no work on
  // pairs of sequences), and its positions restart at 0 unless `position_ids` [1, N] says otherwise. Returns the
  // hidden states [1, N, hidden]; they equal each sequence's own forward to float rounding. Throws (TORCH_CHECK) for
  // offsets that do not run 0 < ... < N. No KV cache.
  torch::Tensor forward_packed_hidden(const torch::Tensor& input_ids, const std::vector<int64_t>& offsets,
                                      const torch::Tensor& position_ids = {});

  // The head on hidden states [..., hidden]: logits [..., vocab] or scores [..., num_labels], float32 under autocast.
  torch::Tensor head(const torch::Tensor& hidden);

  // The language-model head's weight [vocab, hidden]: lm_head.weight, or the embedding matrix when tied. Undefined
  // for a model with a score head.
  torch::Tensor lm_head_weight() const;

  // Initialises every parameter as Hugging Face does for a fresh model (normal(0, 0.02), zero biases, unit norms;
  // GPT-2's residual projections scaled by 1/sqrt(2 * layers)), from `seed`.
  void InitWeights(uint64_t seed);
  // The same, drawing from `generator` (a CPU generator; its state advances); from a generator just created with
  // seed S, the same weights as InitWeights(S).
  void InitWeights(at::Generator& generator);

  // The config the model was built with.
  const ModelConfig& config() const { return config_; }

  // Every projection of the decoder layers in model order (layer by layer; lm_head and score are not projections).
  std::vector<NamedProjection> Projections() const;
  // The decoder layers in order; Layers()[i].path is "model.layers.<i>" or "transformer.h.<i>".
  std::vector<NamedLayer> Layers() const;

 private:
  ModelConfig config_;
  std::shared_ptr<DecoderBody> body_;   // registered as "model" (Llama) or "transformer" (GPT-2)
  torch::nn::Linear lm_head_{nullptr};  // absent when tied or with a score head
  torch::nn::Linear score_{nullptr};
  torch::Tensor tied_embedding_;  // the embedding matrix when lm_head is tied
};
TORCH_MODULE(CausalLM);

// The attention core, exposed for its tests. BuildMask: which keys each of `t` new queries after `past` cached
// positions sees, [B, 1, t, past + t] bool (causal, and keys where attention_mask [B, past + t] is 0 hidden).
// Attend: at::scaled_dot_product_attention of [B, heads, T, D] queries over [B, kv_heads, S, D] keys and values
// (GQA: consecutive query heads share a kv head) where `allowed` says so; [B, T, heads * D]. A query that sees no key
// (left padding) gets a finite output.
torch::Tensor BuildMask(const torch::Tensor& attention_mask, int64_t t, int64_t past);
torch::Tensor Attend(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                     const torch::Tensor& allowed);
// AttendPacked: the same for one padding-free row ([1, heads, N, D] queries, [1, kv_heads, N, D] keys and values):
// each sequence [offsets[i], offsets[i + 1]) attends causally within itself; [1, N, heads * D].
torch::Tensor AttendPacked(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                           const std::vector<int64_t>& offsets);

}  // namespace alignd

#endif  // ALIGND_COMMON_MODEL_TRANSFORMER_H_
