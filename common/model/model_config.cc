#include "common/model/model_config.h"

#include <nlohmann/json.hpp>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/base/status.h"

namespace alignd {
namespace {

using json = nlohmann::json;

absl::Status FieldError(absl::string_view source, absl::string_view field, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(source, ": field \"", field, "\" ", what));
}

// Reads an integer field; `required` fields must be present, optional ones keep `*out`.
absl::Status GetInt(const json& j, absl::string_view source, const char* field, bool required, int64_t* out) {
  auto it = j.find(field);
  if (it == j.end() || it->is_null()) {
    return required ? FieldError(source, field, "is missing") : absl::OkStatus();
  }
  if (!it->is_number_integer()) return FieldError(source, field, "must be an integer");
  *out = it->get<int64_t>();
  return absl::OkStatus();
}

absl::Status GetDouble(const json& j, absl::string_view source, const char* field, double* out) {
  auto it = j.find(field);
  if (it == j.end() || it->is_null()) return absl::OkStatus();
  if (!it->is_number()) return FieldError(source, field, "must be a number");
  *out = it->get<double>();
  return absl::OkStatus();
}

absl::Status GetBool(const json& j, absl::string_view source, const char* field, bool* out) {
  auto it = j.find(field);
  if (it == j.end() || it->is_null()) return absl::OkStatus();
  if (!it->is_boolean()) return FieldError(source, field, "must be true or false");
  *out = it->get<bool>();
  return absl::OkStatus();
}

// Token ids may be an integer or (Llama-3.1 and later) a list whose first element is used.
absl::Status GetTokenId(const json& j, absl::string_view source, const char* field, std::optional<int64_t>* out) {
  auto it = j.find(field);
  if (it == j.end() || it->is_null()) return absl::OkStatus();
  if (it->is_number_integer()) {
    *out = it->get<int64_t>();
  } else if (it->is_array() && !it->empty() && (*it)[0].is_number_integer()) {
    *out = (*it)[0].get<int64_t>();
  } else {
    return FieldError(source, field, "must be an integer or a list of integers");
  }
  return absl::OkStatus();
}

struct ArchInfo {
  const char* name;
  ModelFamily family;
  HeadKind head;
  const char* model_type;
};

constexpr ArchInfo kArchitectures[] = {
    {"LlamaForCausalLM", ModelFamily::kLlama, HeadKind::kLanguageModel, "llama"},
    {"MistralForCausalLM", ModelFamily::kLlama, HeadKind::kLanguageModel, "mistral"},
    {"Qwen2ForCausalLM", ModelFamily::kLlama, HeadKind::kLanguageModel, "qwen2"},
    {"GPT2LMHeadModel", ModelFamily::kGpt2, HeadKind::kLanguageModel, "gpt2"},
    {"LlamaForSequenceClassification", ModelFamily::kLlama, HeadKind::kScore, "llama"},
    {"MistralForSequenceClassification", ModelFamily::kLlama, HeadKind::kScore, "mistral"},
    {"Qwen2ForSequenceClassification", ModelFamily::kLlama, HeadKind::kScore, "qwen2"},
    {"GPT2ForSequenceClassification", ModelFamily::kGpt2, HeadKind::kScore, "gpt2"},
};

std::string SupportedArchitectures() {
  std::string out;
  for (const ArchInfo& a : kArchitectures) absl::StrAppend(&out, out.empty() ? "" : ", ", a.name);
  return out;
}

absl::Status ParseLlama(const json& j, absl::string_view src, ModelConfig* c) {
  RETURN_IF_ERROR(GetInt(j, src, "vocab_size", true, &c->vocab_size));
  RETURN_IF_ERROR(GetInt(j, src, "hidden_size", true, &c->hidden_size));
  RETURN_IF_ERROR(GetInt(j, src, "intermediate_size", true, &c->intermediate_size));
  RETURN_IF_ERROR(GetInt(j, src, "num_hidden_layers", true, &c->num_layers));
  RETURN_IF_ERROR(GetInt(j, src, "num_attention_heads", true, &c->num_heads));
  c->num_kv_heads = c->num_heads;
  RETURN_IF_ERROR(GetInt(j, src, "num_key_value_heads", false, &c->num_kv_heads));
  c->max_position_embeddings = 2048;
  RETURN_IF_ERROR(GetInt(j, src, "max_position_embeddings", false, &c->max_position_embeddings));
  c->norm_eps = 1e-6;
  RETURN_IF_ERROR(GetDouble(j, src, "rms_norm_eps", &c->norm_eps));
  RETURN_IF_ERROR(GetDouble(j, src, "rope_theta", &c->rope_theta));
  c->tie_word_embeddings = false;
  RETURN_IF_ERROR(GetBool(j, src, "tie_word_embeddings", &c->tie_word_embeddings));
  if (c->model_type == "qwen2") {
    // Qwen2 always has q/k/v biases and no o_proj bias.
    c->attention_bias = true;
    c->o_proj_bias = false;
  } else {
    RETURN_IF_ERROR(GetBool(j, src, "attention_bias", &c->attention_bias));
    c->o_proj_bias = c->attention_bias;
  }
  RETURN_IF_ERROR(GetBool(j, src, "mlp_bias", &c->mlp_bias));
  auto act = j.find("hidden_act");
  if (act != j.end() && !act->is_null()) {
    if (!act->is_string() || act->get<std::string>() != "silu") {
      return FieldError(src, "hidden_act", "must be \"silu\" for the Llama family");
    }
  }
  c->head_dim = c->num_heads > 0 ? c->hidden_size / c->num_heads : 0;
  RETURN_IF_ERROR(GetInt(j, src, "head_dim", false, &c->head_dim));
  auto scaling = j.find("rope_scaling");
  if (scaling != j.end() && !scaling->is_null()) {
    return FieldError(src, "rope_scaling", "is not supported yet (only plain RoPE with rope_theta)");
  }
  return absl::OkStatus();
}

absl::Status ParseGpt2(const json& j, absl::string_view src, ModelConfig* c) {
  c->vocab_size = 50257;
  RETURN_IF_ERROR(GetInt(j, src, "vocab_size", false, &c->vocab_size));
  RETURN_IF_ERROR(GetInt(j, src, "n_embd", true, &c->hidden_size));
  RETURN_IF_ERROR(GetInt(j, src, "n_layer", true, &c->num_layers));
  RETURN_IF_ERROR(GetInt(j, src, "n_head", true, &c->num_heads));
  c->num_kv_heads = c->num_heads;
  c->max_position_embeddings = 1024;
  RETURN_IF_ERROR(GetInt(j, src, "n_positions", false, &c->max_position_embeddings));
  c->intermediate_size = 4 * c->hidden_size;
  RETURN_IF_ERROR(GetInt(j, src, "n_inner", false, &c->intermediate_size));
  c->norm_eps = 1e-5;
  RETURN_IF_ERROR(GetDouble(j, src, "layer_norm_epsilon", &c->norm_eps));
  c->tie_word_embeddings = true;
  RETURN_IF_ERROR(GetBool(j, src, "tie_word_embeddings", &c->tie_word_embeddings));
  c->attention_bias = c->o_proj_bias = c->mlp_bias = true;
  c->hidden_act = "gelu_new";
  auto act = j.find("activation_function");
  if (act != j.end() && !act->is_null()) {
    std::string a = act->is_string() ? act->get<std::string>() : "";
    if (a != "gelu_new" && a != "gelu_pytorch_tanh") {
      return FieldError(src, "activation_function", "must be \"gelu_new\" or \"gelu_pytorch_tanh\"");
    }
  }
  bool flag = false;
  RETURN_IF_ERROR(GetBool(j, src, "scale_attn_by_inverse_layer_idx", &flag));
  if (flag) return FieldError(src, "scale_attn_by_inverse_layer_idx", "is not supported");
  flag = true;
  RETURN_IF_ERROR(GetBool(j, src, "scale_attn_weights", &flag));
  if (!flag) return FieldError(src, "scale_attn_weights", "must be true");
  c->head_dim = c->num_heads > 0 ? c->hidden_size / c->num_heads : 0;
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<ModelConfig> ModelConfig::FromJson(absl::string_view text, absl::string_view source) {
  json j = json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return absl::InvalidArgumentError(absl::StrCat(source, ": not valid JSON"));
  if (!j.is_object()) return absl::InvalidArgumentError(absl::StrCat(source, ": must be a JSON object"));
  auto archs = j.find("architectures");
  if (archs == j.end() || !archs->is_array() || archs->empty() || !(*archs)[0].is_string()) {
    return FieldError(source, "architectures", "must be a non-empty list of strings");
  }
  std::string arch = (*archs)[0].get<std::string>();
  const ArchInfo* info = nullptr;
  for (const ArchInfo& a : kArchitectures) {
    if (arch == a.name) info = &a;
  }
  if (info == nullptr) {
    return FieldError(
        source, "architectures",
        absl::StrCat("names unsupported architecture \"", arch, "\"; supported: ", SupportedArchitectures()));
  }
  ModelConfig c;
  c.architecture = arch;
  c.family = info->family;
  c.head = info->head;
  c.model_type = info->model_type;
  auto mt = j.find("model_type");
  if (mt != j.end() && mt->is_string()) c.model_type = mt->get<std::string>();
  if (c.family == ModelFamily::kLlama) {
    RETURN_IF_ERROR(ParseLlama(j, source, &c));
  } else {
    RETURN_IF_ERROR(ParseGpt2(j, source, &c));
  }
  if (c.head == HeadKind::kScore) {
    auto labels = j.find("id2label");
    if (labels != j.end() && labels->is_object()) c.num_labels = static_cast<int64_t>(labels->size());
    RETURN_IF_ERROR(GetInt(j, source, "num_labels", false, &c.num_labels));
  }
  RETURN_IF_ERROR(GetTokenId(j, source, "bos_token_id", &c.bos_token_id));
  RETURN_IF_ERROR(GetTokenId(j, source, "eos_token_id", &c.eos_token_id));
  RETURN_IF_ERROR(GetTokenId(j, source, "pad_token_id", &c.pad_token_id));
  auto dt = j.find("torch_dtype");
  if (dt != j.end() && dt->is_string()) c.torch_dtype = dt->get<std::string>();
  RETURN_IF_ERROR(Annotate(c.Validate(), source));
  return c;
}

absl::Status ModelConfig::Validate() const {
  auto positive = [](const char* field, int64_t v) -> absl::Status {
    if (v <= 0) return absl::InvalidArgumentError(absl::StrCat("field \"", field, "\" must be positive, got ", v));
    return absl::OkStatus();
  };
  RETURN_IF_ERROR(positive("vocab_size", vocab_size));
  RETURN_IF_ERROR(positive("hidden_size", hidden_size));
  RETURN_IF_ERROR(positive("intermediate_size", intermediate_size));
  RETURN_IF_ERROR(positive("num_hidden_layers", num_layers));
  RETURN_IF_ERROR(positive("num_attention_heads", num_heads));
  RETURN_IF_ERROR(positive("num_key_value_heads", num_kv_heads));
  RETURN_IF_ERROR(positive("head_dim", head_dim));
  RETURN_IF_ERROR(positive("max_position_embeddings", max_position_embeddings));
  if (num_heads % num_kv_heads != 0) {
    return absl::InvalidArgumentError(absl::StrCat("field \"num_key_value_heads\" (", num_kv_heads,
                                                   ") must divide num_attention_heads (", num_heads, ")"));
  }
  if (family == ModelFamily::kGpt2 && hidden_size % num_heads != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("field \"n_head\" (", num_heads, ") must divide n_embd (", hidden_size, ")"));
  }
  if (family == ModelFamily::kLlama && head_dim % 2 != 0) {
    return absl::InvalidArgumentError(absl::StrCat("field \"head_dim\" must be even for rotary embeddings"));
  }
  if (head == HeadKind::kScore && num_labels <= 0) {
    return absl::InvalidArgumentError("field \"num_labels\" must be positive");
  }
  return absl::OkStatus();
}

std::string ModelConfig::ToJson() const {
  json j;
  j["architectures"] = json::array({architecture});
  j["model_type"] = model_type;
  j["vocab_size"] = vocab_size;
  j["torch_dtype"] = torch_dtype;
  j["tie_word_embeddings"] = tie_word_embeddings;
  if (family == ModelFamily::kLlama) {
    j["hidden_size"] = hidden_size;
    j["intermediate_size"] = intermediate_size;
    j["num_hidden_layers"] = num_layers;
    j["num_attention_heads"] = num_heads;
    j["num_key_value_heads"] = num_kv_heads;
    j["head_dim"] = head_dim;
    j["max_position_embeddings"] = max_position_embeddings;
    j["rms_norm_eps"] = norm_eps;
    j["rope_theta"] = rope_theta;
    j["hidden_act"] = "silu";
    j["mlp_bias"] = mlp_bias;
    if (model_type != "qwen2") j["attention_bias"] = attention_bias;
    j["rope_scaling"] = nullptr;
  } else {
    j["n_embd"] = hidden_size;
    j["n_inner"] = intermediate_size;
    j["n_layer"] = num_layers;
    j["n_head"] = num_heads;
    j["n_positions"] = max_position_embeddings;
    j["n_ctx"] = max_position_embeddings;
    j["layer_norm_epsilon"] = norm_eps;
    j["activation_function"] = "gelu_new";
    j["scale_attn_weights"] = true;
    j["resid_pdrop"] = 0.0;
    j["embd_pdrop"] = 0.0;
    j["attn_pdrop"] = 0.0;
  }
  if (head == HeadKind::kScore) {
    j["num_labels"] = num_labels;
    json id2label = json::object(), label2id = json::object();
    for (int64_t i = 0; i < num_labels; ++i) {
      id2label[std::to_string(i)] = absl::StrCat("LABEL_", i);
      label2id[absl::StrCat("LABEL_", i)] = i;
    }
    j["id2label"] = id2label;
    j["label2id"] = label2id;
  }
  if (bos_token_id) j["bos_token_id"] = *bos_token_id;
  if (eos_token_id) j["eos_token_id"] = *eos_token_id;
  if (pad_token_id) j["pad_token_id"] = *pad_token_id;
  return j.dump(2);
}

int64_t ModelConfig::NumParameters() const {
  const int64_t h = hidden_size;
  const int64_t q = num_heads * head_dim, kv = num_kv_heads * head_dim;
  int64_t per_layer = 0;
  int64_t total = vocab_size * h;
  if (family == ModelFamily::kLlama) {
    per_layer = h * q + 2 * h * kv + q * h + 3 * h * intermediate_size + 2 * h;
    if (attention_bias) per_layer += q + 2 * kv;
    if (o_proj_bias) per_layer += h;
    if (mlp_bias) per_layer += 2 * intermediate_size + h;
    total += h;  // final norm
  } else {
    per_layer = h * 3 * h + 3 * h + h * h + h + 2 * h * intermediate_size + intermediate_size + h + 4 * h;
    total += max_position_embeddings * h + 2 * h;
  }
  total += num_layers * per_layer;
  if (head == HeadKind::kScore) {
    total += num_labels * h;
  } else if (!tie_word_embeddings) {
    total += vocab_size * h;
  }
  return total;
}

ModelConfig TinyLlamaConfig(int64_t vocab_size, int64_t hidden_size, int64_t num_layers, int64_t num_heads,
                            int64_t num_kv_heads, int64_t max_positions) {
  ModelConfig c;
  c.vocab_size = vocab_size;
  c.hidden_size = hidden_size;
  // SwiGLU's usual 8/3 expansion, rounded up to a multiple of 16.
  c.intermediate_size = ((hidden_size * 8 / 3) + 15) / 16 * 16;
  c.num_layers = num_layers;
  c.num_heads = num_heads;
  c.num_kv_heads = num_kv_heads;
  c.head_dim = hidden_size / num_heads;
  c.max_position_embeddings = max_positions;
  c.norm_eps = 1e-5;
  c.tie_word_embeddings = true;
  return c;
}

ModelConfig TinyGpt2Config(int64_t vocab_size, int64_t hidden_size, int64_t num_layers, int64_t num_heads,
                           int64_t max_positions) {
  ModelConfig c;
  c.family = ModelFamily::kGpt2;
  c.model_type = "gpt2";
  c.architecture = "GPT2LMHeadModel";
  c.vocab_size = vocab_size;
  c.hidden_size = hidden_size;
  c.intermediate_size = 4 * hidden_size;
  c.num_layers = num_layers;
  c.num_heads = num_heads;
  c.num_kv_heads = num_heads;
  c.head_dim = hidden_size / num_heads;
  c.max_position_embeddings = max_positions;
  c.norm_eps = 1e-5;
  c.tie_word_embeddings = true;
  c.attention_bias = c.o_proj_bias = c.mlp_bias = true;
  c.hidden_act = "gelu_new";
  return c;
}

}  // namespace alignd
