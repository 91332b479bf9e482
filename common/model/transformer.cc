#include "common/model/transformer.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/autocast_mode.h>
#include <ATen/ops/scaled_dot_product_attention.h>
#include <torch/nn/init.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>

namespace alignd {
namespace F = torch::nn::functional;
using torch::Tensor;

void KVCache::SelectRows(const Tensor& rows) {
  for (auto& k : keys) k = k.index_select(0, rows);
  for (auto& v : values) v = v.index_select(0, rows);
}

Tensor PositionIdsFromMask(const Tensor& attention_mask, int64_t new_tokens) {
  Tensor pos = attention_mask.to(torch::kLong).cumsum(-1) - 1;
  pos = pos.clamp_min(0);
  return pos.narrow(1, pos.size(1) - new_tokens, new_tokens);
}

// Reductions run in float32 for half types and in the input type otherwise.
torch::ScalarType AtLeastFloat(torch::ScalarType t) { return at::promote_types(t, torch::kFloat); }

// Root-mean-square norm, computed in float32 as Hugging Face's LlamaRMSNorm does.
class RMSNormImpl : public torch::nn::Module {
 public:
  RMSNormImpl(int64_t dim, double eps) : eps_(eps) { weight = register_parameter("weight", torch::ones({dim})); }
  Tensor forward(const Tensor& x) {
    Tensor h = x.to(AtLeastFloat(x.scalar_type()));
    h = h * torch::rsqrt(h.pow(2).mean(-1, /*keepdim=*/true) + eps_);
    return weight * h.to(x.scalar_type());
  }
  Tensor weight;

 private:
  double eps_;
};
TORCH_MODULE(RMSNorm);

ProjectionImpl::ProjectionImpl(int64_t in_features, int64_t out_features, bool bias, Layout layout)
    : in_features_(in_features), out_features_(out_features), layout_(layout) {
  if (layout == Layout::kConv1D) {
    weight = register_parameter("weight", torch::empty({in_features, out_features}));
    if (bias) this->bias = register_parameter("bias", torch::zeros({out_features}));
    return;
  }
  // The registration order and random draws of torch::nn::Linear, so that swapping it for a Projection leaves every
  // later draw from the global generator where it was.
  weight = register_parameter("weight", torch::empty({out_features, in_features}));
  if (bias) this->bias = register_parameter("bias", torch::empty({out_features}));
  torch::NoGradGuard no_grad;
  torch::nn::init::kaiming_uniform_(weight, std::sqrt(5.0));
  if (bias) {
    const double bound = 1.0 / std::sqrt(static_cast<double>(in_features));
    torch::nn::init::uniform_(this->bias, -bound, bound);
  }
}

Tensor ProjectionImpl::forward(const Tensor& x) {
  Tensor y;
  if (layout_ == Layout::kLinear) {
    y = F::linear(x, weight, bias);
  } else {
    auto out_shape = x.sizes().vec();
    out_shape.back() = out_features_;
    Tensor x2 = x.reshape({-1, x.size(-1)});
    y = (bias.defined() ? torch::addmm(bias, x2, weight) : torch::mm(x2, weight)).view(out_shape);
  }
  if (delta_ != nullptr) y = y + delta_->Delta(x, is_training());
  return y;
}

// The additive form of `allowed` ([B, 1, T, S] bool) in `dtype`: 0 where a key is visible, the dtype's lowest finite
// value where it is hidden (not -inf, so that a query with every key hidden, a left-padding position, stays finite
// as in Hugging Face instead of turning the whole row, and every sum over it, into NaN).
Tensor AdditiveMask(const Tensor& allowed, torch::ScalarType dtype) {
  double lowest = dtype == torch::kDouble     ? std::numeric_limits<double>::lowest()
                  : dtype == torch::kHalf     ? -65504.0
                  : dtype == torch::kBFloat16 ? -3.3895313892515355e38
                                              : static_cast<double>(std::numeric_limits<float>::lowest());
  auto opts = torch::TensorOptions().dtype(dtype).device(allowed.device());
  return torch::where(allowed, torch::zeros({}, opts), torch::full({}, lowest, opts));
}

// How one forward's queries see keys: through a dense [B, 1, T, S] bool mask, or, for a padding-free row
// (offsets non-null), causally within each packed sequence, one attention call per sequence.
struct AttentionLayout {
  Tensor allowed;
  const std::vector<int64_t>* offsets = nullptr;
};

// Scaled dot-product attention over [B, heads, T, D] queries and [B, kv_heads, S, D] keys/values where `allowed`
// [B, 1, T, S] says which keys each query sees; kv heads are shared by heads / kv_heads consecutive query heads (GQA,
// Hugging Face's repeat_kv order). Returns [B, T, heads * D]. at::scaled_dot_product_attention picks the kernel:
// FlashAttention or memory-efficient attention on CUDA, a fused kernel or the math path on the CPU.
Tensor Attend(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& allowed) {
  const int64_t b = q.size(0), heads = q.size(1), t = q.size(2), d = q.size(3);
  const bool gqa = heads != k.size(1);
  Tensor out = at::scaled_dot_product_attention(q, k, v, AdditiveMask(allowed, q.scalar_type()), /*dropout_p=*/0.0,
                                                /*is_causal=*/false, /*scale=*/std::nullopt, /*enable_gqa=*/gqa);
  return out.transpose(1, 2).reshape({b, t, heads * d});
}

Tensor AttendPacked(const Tensor& q, const Tensor& k, const Tensor& v, const std::vector<int64_t>& offsets) {
  TORCH_CHECK(q.size(0) == 1 && !offsets.empty() && offsets.front() == 0 && offsets.back() == q.size(2),
              "a packed batch is one row of ", offsets.empty() ? 0 : offsets.back(), " tokens, got ", q.sizes());
  const int64_t heads = q.size(1), d = q.size(3);
  const bool gqa = heads != k.size(1);
  std::vector<Tensor> parts;
  parts.reserve(offsets.size() - 1);
  for (size_t i = 0; i + 1 < offsets.size(); ++i) {
    const int64_t start = offsets[i], len = offsets[i + 1] - offsets[i];
    TORCH_CHECK(len > 0, "packed sequence ", i, " is empty");
    parts.push_back(at::scaled_dot_product_attention(q.narrow(2, start, len), k.narrow(2, start, len),
                                                     v.narrow(2, start, len), /*attn_mask=*/std::nullopt,
                                                     /*dropout_p=*/0.0, /*is_causal=*/true, /*scale=*/std::nullopt,
                                                     /*enable_gqa=*/gqa));
  }
  Tensor out = parts.size() == 1 ? parts[0] : torch::cat(parts, 2);
  return out.transpose(1, 2).reshape({1, q.size(2), heads * d});
}

Tensor Attend(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionLayout& layout) {
  return layout.offsets != nullptr ? AttendPacked(q, k, v, *layout.offsets) : Attend(q, k, v, layout.allowed);
}

// Writes `x` [B, H, T, D] after the `past` positions of `cached` (a cache entry: [B, H, past, D]) and returns the
// [B, H, past + T, D] result. An entry is a view at the front of a buffer with spare positions after it (its stride
// over heads says how many); when it is full, a buffer with room for max(128, length / 2) more positions replaces
// it, so a decode step copies one position, not the whole past as torch::cat would. The spare positions are written
// in place only while the cache entry is the buffer's sole user: when any other tensor shares its storage (a copied
// KVCache, a tensor autograd saved, a caller's handle), the entry moves to a new buffer, so nothing outside sees it.
Tensor AppendToBuffer(const Tensor& cached, const Tensor& x) {
  const int64_t b = cached.size(0), h = cached.size(1), past = cached.size(2), d = cached.size(3);
  const int64_t t = x.size(2), length = past + t;
  const bool in_buffer = cached.storage().use_count() == 1 && cached.stride(3) == 1 && cached.stride(2) == d &&
                         cached.stride(1) % d == 0 && cached.stride(0) == h * cached.stride(1);
  const int64_t capacity = in_buffer ? cached.stride(1) / d : past;
  Tensor buffer;
  if (length <= capacity) {
    buffer = cached.as_strided({b, h, capacity, d}, {h * capacity * d, capacity * d, d, 1});
  } else {
    const int64_t grown = length + std::max<int64_t>(128, length / 2);
    buffer = torch::empty({b, h, grown, d}, cached.options());
    buffer.narrow(2, 0, past).copy_(cached);
  }
  buffer.narrow(2, past, t).copy_(x);
  return buffer.narrow(2, 0, length);
}

// Appends this step's keys/values for `layer` to the cache (when there is one) and returns the full sequences.
std::pair<Tensor, Tensor> CacheAppend(KVCache* cache, size_t layer, Tensor k, Tensor v) {
  if (cache == nullptr) return {k, v};
  if (cache->keys.size() <= layer) {
    cache->keys.resize(layer + 1);
    cache->values.resize(layer + 1);
  }
  if (cache->keys[layer].defined()) {
    k = AppendToBuffer(cache->keys[layer], k);
    v = AppendToBuffer(cache->values[layer], v);
  } else {
    // The first call (a prefill) keeps its own tensors; the first append moves them into a buffer with room.
    k = k.contiguous();
    v = v.contiguous();
  }
  cache->keys[layer] = k;
  cache->values[layer] = v;
  return {k, v};
}

// Rotary embedding (Hugging Face's rotate_half convention) for positions [B, T]: returns cos and sin [B, 1, T, D].
std::pair<Tensor, Tensor> RotaryTables(const Tensor& positions, int64_t head_dim, double theta,
                                       torch::ScalarType dtype) {
  auto opts = torch::TensorOptions().dtype(torch::kFloat).device(positions.device());
  Tensor inv_freq = 1.0 / torch::pow(theta, torch::arange(0, head_dim, 2, opts) / static_cast<double>(head_dim));
  Tensor freqs = positions.to(torch::kFloat).unsqueeze(-1) * inv_freq;  // [B, T, D/2]
  Tensor emb = torch::cat({freqs, freqs}, -1).unsqueeze(1);             // [B, 1, T, D]
  return {emb.cos().to(dtype), emb.sin().to(dtype)};
}

Tensor RotateHalf(const Tensor& x) {
  const int64_t half = x.size(-1) / 2;
  return torch::cat({-x.narrow(-1, half, half), x.narrow(-1, 0, half)}, -1);
}

// Which keys each of T new queries after `past` cached positions sees, [B, 1, T, S] bool: causal, and keys where
// attention_mask is 0 are hidden.
Tensor BuildMask(const Tensor& attention_mask, int64_t t, int64_t past) {
  const int64_t s = past + t;
  auto dev = attention_mask.device();
  Tensor q_pos = torch::arange(past, s, torch::TensorOptions().dtype(torch::kLong).device(dev)).unsqueeze(1);
  Tensor k_pos = torch::arange(0, s, torch::TensorOptions().dtype(torch::kLong).device(dev)).unsqueeze(0);
  Tensor allowed = (k_pos <= q_pos).unsqueeze(0).unsqueeze(0);                 // [1, 1, T, S]
  return allowed & attention_mask.to(torch::kBool).unsqueeze(1).unsqueeze(1);  // [B, 1, T, S]
}

torch::nn::Linear MakeLinear(int64_t in, int64_t out, bool bias) {
  return torch::nn::Linear(torch::nn::LinearOptions(in, out).bias(bias));
}

Projection MakeProjection(int64_t in, int64_t out, bool bias) {
  return Projection(in, out, bias, ProjectionImpl::Layout::kLinear);
}

Projection MakeConv1D(int64_t in, int64_t out) { return Projection(in, out, true, ProjectionImpl::Layout::kConv1D); }

}  // namespace alignd

// The family-specific bodies. DecoderBody is declared in the header so CausalLM can hold either.
namespace alignd {

class DecoderBody : public torch::nn::Module {
 public:
  // Returns final hidden states [B, T, H] (after the last norm).
  virtual Tensor Run(const Tensor& input_ids, const AttentionLayout& mask, const Tensor& positions, KVCache* cache) = 0;
  virtual Tensor embedding() const = 0;
};

namespace {

// ---- Llama family ----------------------------------------------------------------------------------------------

class LlamaAttentionImpl : public torch::nn::Module {
 public:
  explicit LlamaAttentionImpl(const ModelConfig& c)
      : heads_(c.num_heads), kv_heads_(c.num_kv_heads), head_dim_(c.head_dim), theta_(c.rope_theta) {
    q_proj = register_module("q_proj", MakeProjection(c.hidden_size, heads_ * head_dim_, c.attention_bias));
    k_proj = register_module("k_proj", MakeProjection(c.hidden_size, kv_heads_ * head_dim_, c.attention_bias));
    v_proj = register_module("v_proj", MakeProjection(c.hidden_size, kv_heads_ * head_dim_, c.attention_bias));
    o_proj = register_module("o_proj", MakeProjection(heads_ * head_dim_, c.hidden_size, c.o_proj_bias));
  }
  Tensor forward(const Tensor& x, const AttentionLayout& mask, const Tensor& cos, const Tensor& sin, KVCache* cache,
                 size_t layer) {
    const int64_t b = x.size(0), t = x.size(1);
    Tensor q = q_proj->forward(x).view({b, t, heads_, head_dim_}).transpose(1, 2);
    Tensor k = k_proj->forward(x).view({b, t, kv_heads_, head_dim_}).transpose(1, 2);
    Tensor v = v_proj->forward(x).view({b, t, kv_heads_, head_dim_}).transpose(1, 2);
    q = q * cos + RotateHalf(q) * sin;
    k = k * cos + RotateHalf(k) * sin;
    std::tie(k, v) = CacheAppend(cache, layer, k, v);
    return o_proj->forward(Attend(q, k, v, mask));
  }
  Projection q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, o_proj{nullptr};

 private:
  int64_t heads_, kv_heads_, head_dim_;
  double theta_;
};
TORCH_MODULE(LlamaAttention);

class LlamaMlpImpl : public torch::nn::Module {
 public:
  explicit LlamaMlpImpl(const ModelConfig& c) {
    gate_proj = register_module("gate_proj", MakeProjection(c.hidden_size, c.intermediate_size, c.mlp_bias));
    up_proj = register_module("up_proj", MakeProjection(c.hidden_size, c.intermediate_size, c.mlp_bias));
    down_proj = register_module("down_proj", MakeProjection(c.intermediate_size, c.hidden_size, c.mlp_bias));
  }
  Tensor forward(const Tensor& x) {
    return down_proj->forward(torch::silu(gate_proj->forward(x)) * up_proj->forward(x));
  }
  Projection gate_proj{nullptr}, up_proj{nullptr}, down_proj{nullptr};
};
TORCH_MODULE(LlamaMlp);

class LlamaLayerImpl : public DecoderLayerImpl {
 public:
  explicit LlamaLayerImpl(const ModelConfig& c)
      : self_attn(register_module("self_attn", LlamaAttention(c))),
        mlp(register_module("mlp", LlamaMlp(c))),
        input_layernorm(register_module("input_layernorm", RMSNorm(c.hidden_size, c.norm_eps))),
        post_attention_layernorm(register_module("post_attention_layernorm", RMSNorm(c.hidden_size, c.norm_eps))) {}
  Tensor forward(Tensor x, const AttentionLayout& mask, const Tensor& cos, const Tensor& sin, KVCache* cache,
                 size_t layer) {
    x = x + Adapt(AdapterSite::kAfterAttention,
                  self_attn->forward(input_layernorm->forward(x), mask, cos, sin, cache, layer));
    return x + Adapt(AdapterSite::kAfterMlp, mlp->forward(post_attention_layernorm->forward(x)));
  }
  LlamaAttention self_attn;
  LlamaMlp mlp;
  RMSNorm input_layernorm, post_attention_layernorm;
};
TORCH_MODULE(LlamaLayer);

class LlamaBody : public DecoderBody {
 public:
  explicit LlamaBody(const ModelConfig& c) : config_(c) {
    embed_tokens = register_module("embed_tokens", torch::nn::Embedding(c.vocab_size, c.hidden_size));
    layers = register_module("layers", torch::nn::ModuleList());
    for (int64_t i = 0; i < c.num_layers; ++i) {
      llama_layers_.push_back(LlamaLayer(c));
      layers->push_back(llama_layers_.back());
    }
    norm = register_module("norm", RMSNorm(c.hidden_size, c.norm_eps));
  }
  Tensor Run(const Tensor& input_ids, const AttentionLayout& mask, const Tensor& positions, KVCache* cache) override {
    Tensor x = embed_tokens->forward(input_ids);
    auto [cos, sin] = RotaryTables(positions, config_.head_dim, config_.rope_theta, x.scalar_type());
    for (size_t i = 0; i < llama_layers_.size(); ++i) x = llama_layers_[i]->forward(x, mask, cos, sin, cache, i);
    return norm->forward(x);
  }
  Tensor embedding() const override { return embed_tokens->weight; }

  torch::nn::Embedding embed_tokens{nullptr};
  torch::nn::ModuleList layers{nullptr};
  RMSNorm norm{nullptr};

 private:
  ModelConfig config_;
  std::vector<LlamaLayer> llama_layers_;
};

// ---- GPT-2 family ----------------------------------------------------------------------------------------------

class Gpt2AttentionImpl : public torch::nn::Module {
 public:
  explicit Gpt2AttentionImpl(const ModelConfig& c) : heads_(c.num_heads), head_dim_(c.head_dim) {
    c_attn = register_module("c_attn", MakeConv1D(c.hidden_size, 3 * c.hidden_size));
    c_proj = register_module("c_proj", MakeConv1D(c.hidden_size, c.hidden_size));
  }
  Tensor forward(const Tensor& x, const AttentionLayout& mask, KVCache* cache, size_t layer) {
    const int64_t b = x.size(0), t = x.size(1);
    auto qkv = c_attn->forward(x).split(heads_ * head_dim_, -1);
    auto heads = [&](const Tensor& y) { return y.view({b, t, heads_, head_dim_}).transpose(1, 2); };
    auto [k, v] = CacheAppend(cache, layer, heads(qkv[1]), heads(qkv[2]));
    return c_proj->forward(Attend(heads(qkv[0]), k, v, mask));
  }
  Projection c_attn{nullptr}, c_proj{nullptr};

 private:
  int64_t heads_, head_dim_;
};
TORCH_MODULE(Gpt2Attention);

class Gpt2MlpImpl : public torch::nn::Module {
 public:
  explicit Gpt2MlpImpl(const ModelConfig& c) {
    c_fc = register_module("c_fc", MakeConv1D(c.hidden_size, c.intermediate_size));
    c_proj = register_module("c_proj", MakeConv1D(c.intermediate_size, c.hidden_size));
  }
  Tensor forward(const Tensor& x) { return c_proj->forward(torch::gelu(c_fc->forward(x), "tanh")); }
  Projection c_fc{nullptr}, c_proj{nullptr};
};
TORCH_MODULE(Gpt2Mlp);

torch::nn::LayerNorm MakeLayerNorm(const ModelConfig& c) {
  return torch::nn::LayerNorm(torch::nn::LayerNormOptions({c.hidden_size}).eps(c.norm_eps));
}

class Gpt2BlockImpl : public DecoderLayerImpl {
 public:
  explicit Gpt2BlockImpl(const ModelConfig& c)
      : ln_1(register_module("ln_1", MakeLayerNorm(c))),
        attn(register_module("attn", Gpt2Attention(c))),
        ln_2(register_module("ln_2", MakeLayerNorm(c))),
        mlp(register_module("mlp", Gpt2Mlp(c))) {}
  Tensor forward(Tensor x, const AttentionLayout& mask, KVCache* cache, size_t layer) {
    x = x + Adapt(AdapterSite::kAfterAttention, attn->forward(ln_1->forward(x), mask, cache, layer));
    return x + Adapt(AdapterSite::kAfterMlp, mlp->forward(ln_2->forward(x)));
  }
  torch::nn::LayerNorm ln_1;
  Gpt2Attention attn;
  torch::nn::LayerNorm ln_2;
  Gpt2Mlp mlp;
};
TORCH_MODULE(Gpt2Block);

class Gpt2Body : public DecoderBody {
 public:
  explicit Gpt2Body(const ModelConfig& c) {
    wte = register_module("wte", torch::nn::Embedding(c.vocab_size, c.hidden_size));
    wpe = register_module("wpe", torch::nn::Embedding(c.max_position_embeddings, c.hidden_size));
    h = register_module("h", torch::nn::ModuleList());
    for (int64_t i = 0; i < c.num_layers; ++i) {
      blocks_.push_back(Gpt2Block(c));
      h->push_back(blocks_.back());
    }
    ln_f = register_module("ln_f", MakeLayerNorm(c));
  }
  Tensor Run(const Tensor& input_ids, const AttentionLayout& mask, const Tensor& positions, KVCache* cache) override {
    Tensor x = wte->forward(input_ids) + wpe->forward(positions);
    for (size_t i = 0; i < blocks_.size(); ++i) x = blocks_[i]->forward(x, mask, cache, i);
    return ln_f->forward(x);
  }
  Tensor embedding() const override { return wte->weight; }

  torch::nn::Embedding wte{nullptr}, wpe{nullptr};
  torch::nn::ModuleList h{nullptr};
  torch::nn::LayerNorm ln_f{nullptr};

 private:
  std::vector<Gpt2Block> blocks_;
};

}  // namespace

// ---- CausalLM ----------------------------------------------------------------------------------------------------

CausalLMImpl::CausalLMImpl(const ModelConfig& config) : config_(config) {
  if (config.family == ModelFamily::kLlama) {
    body_ = register_module("model", std::make_shared<LlamaBody>(config));
  } else {
    body_ = register_module("transformer", std::make_shared<Gpt2Body>(config));
  }
  if (config.head == HeadKind::kScore) {
    score_ = register_module("score", MakeLinear(config.hidden_size, config.num_labels, false));
  } else if (!config.tie_word_embeddings) {
    lm_head_ = register_module("lm_head", MakeLinear(config.hidden_size, config.vocab_size, false));
  }
}

ModelOutput CausalLMImpl::forward(const Tensor& input_ids, const Tensor& attention_mask, const Tensor& position_ids,
                                  KVCache* cache) {
  ModelOutput out;
  out.hidden = forward_hidden(input_ids, attention_mask, position_ids, cache);
  out.logits = head(out.hidden);
  return out;
}

Tensor CausalLMImpl::forward_hidden(const Tensor& input_ids, const Tensor& attention_mask, const Tensor& position_ids,
                                    KVCache* cache) {
  const int64_t b = input_ids.size(0), t = input_ids.size(1);
  const int64_t past = cache == nullptr ? 0 : cache->length();
  Tensor mask = attention_mask;
  if (!mask.defined()) {
    mask = torch::ones({b, past + t}, torch::TensorOptions().dtype(torch::kLong).device(input_ids.device()));
  }
  TORCH_CHECK(mask.dim() == 2 && mask.size(0) == b && mask.size(1) == past + t,
              "attention_mask must be [batch, past + new] = [", b, ", ", past + t, "], got ", mask.sizes());
  Tensor positions = position_ids.defined() ? position_ids : PositionIdsFromMask(mask, t);
  AttentionLayout layout;
  layout.allowed = BuildMask(mask, t, past);
  return body_->Run(input_ids, layout, positions, cache);
}

Tensor CausalLMImpl::forward_packed_hidden(const Tensor& input_ids, const std::vector<int64_t>& offsets,
                                           const Tensor& position_ids) {
  TORCH_CHECK(input_ids.dim() == 2 && input_ids.size(0) == 1 && offsets.size() >= 2 && offsets.front() == 0 &&
                  offsets.back() == input_ids.size(1),
              "a packed batch is input_ids [1, N] with offsets 0 .. N, got ", input_ids.sizes(), " and ",
              offsets.size(), " offsets");
  Tensor positions = position_ids;
  if (!positions.defined()) {
    std::vector<int64_t> pos;
    pos.reserve(static_cast<size_t>(input_ids.size(1)));
    for (size_t i = 0; i + 1 < offsets.size(); ++i) {
      TORCH_CHECK(offsets[i + 1] > offsets[i], "packed sequence ", i, " is empty");
      for (int64_t p = 0; p < offsets[i + 1] - offsets[i]; ++p) pos.push_back(p);
    }
    positions = torch::tensor(pos, torch::kLong).to(input_ids.device()).unsqueeze(0);
  }
  AttentionLayout layout;
  layout.offsets = &offsets;
  return body_->Run(input_ids, layout, positions, nullptr);
}

Tensor CausalLMImpl::head(const Tensor& hidden) {
  Tensor logits;
  if (score_) {
    logits = score_->forward(hidden);
  } else if (lm_head_) {
    logits = lm_head_->forward(hidden);
  } else {
    logits = torch::matmul(hidden, body_->embedding().t());
  }
  // Under autocast the head's product comes out in bfloat16; losses, rewards and sampling read float32 logits, as
  // Hugging Face's models hand back (`logits.float()`). Without autocast the model's own dtype is kept.
  if ((at::autocast::is_autocast_enabled(at::kCPU) || at::autocast::is_autocast_enabled(at::kCUDA)) &&
      logits.scalar_type() != torch::kFloat64) {
    logits = logits.to(torch::kFloat);
  }
  return logits;
}

Tensor CausalLMImpl::lm_head_weight() const {
  if (score_) return {};
  return lm_head_ ? lm_head_->weight : body_->embedding();
}

std::vector<NamedProjection> CausalLMImpl::Projections() const {
  std::vector<NamedProjection> out;
  for (const auto& item : named_modules("", /*include_self=*/false)) {
    if (auto p = std::dynamic_pointer_cast<ProjectionImpl>(item.value())) out.push_back({item.key(), std::move(p)});
  }
  return out;
}

std::vector<NamedLayer> CausalLMImpl::Layers() const {
  std::vector<NamedLayer> out;
  for (const auto& item : named_modules("", /*include_self=*/false)) {
    if (auto l = std::dynamic_pointer_cast<DecoderLayerImpl>(item.value())) out.push_back({item.key(), std::move(l)});
  }
  return out;
}

void CausalLMImpl::InitWeights(uint64_t seed) {
  at::Generator gen = at::detail::createCPUGenerator(seed);
  InitWeights(gen);
}

void CausalLMImpl::InitWeights(at::Generator& gen) {
  torch::NoGradGuard no_grad;
  const double residual_std = 0.02 / std::sqrt(2.0 * static_cast<double>(config_.num_layers));
  for (auto& item : named_parameters()) {
    const std::string& name = item.key();
    Tensor& p = item.value();
    auto ends_with = [&](const std::string& suffix) {
      return name.size() >= suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0;
    };
    bool is_norm = name.find("norm") != std::string::npos || name.find(".ln_") != std::string::npos ||
                   name.find("ln_f") != std::string::npos;
    if (is_norm) {
      if (ends_with("weight"))
        p.fill_(1.0);
      else
        p.zero_();
    } else if (ends_with("bias")) {
      p.zero_();
    } else {
      bool residual = config_.family == ModelFamily::kGpt2 && ends_with("c_proj.weight");
      p.normal_(0.0, residual ? residual_std : 0.02, gen);
    }
  }
}

}  // namespace alignd
