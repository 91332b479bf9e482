#include "common/model/peft.h"

#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "common/base/file_util.h"
#include "common/base/status.h"
#include "common/model/hf_model.h"
#include "common/model/safetensors.h"

namespace alignd {

namespace F = torch::nn::functional;
using json = nlohmann::json;
using torch::Tensor;

constexpr char kConfigFile[] = "adapter_config.json";
constexpr char kWeightsFile[] = "adapter_model.safetensors";
constexpr char kSavedPrefix[] = "base_model.model.";

// One adapter: a module holding its parameters, the hook it installs, and the tensors under their saved suffixes.
class PeftModel::Adapter : public torch::nn::Module, public AdditiveHook {
 public:
  // Installs this adapter at its hook point (on) or clears the hook point (off).
  virtual void Hook(bool on) = 0;
  // Whether the hook point holds nothing.
  virtual bool HookFree() const = 0;
  // (saved suffix, tensor), e.g. ("lora_A.weight", A), in saving order.
  virtual std::vector<std::pair<std::string, Tensor>> Tensors() const = 0;
  // Where training-mode randomness comes from (see PeftModel::SetDropoutGenerator); adapters without any ignore it.
  virtual void SetGenerator(const at::Generator& /*generator*/) {}

 protected:
  std::shared_ptr<AdditiveHook> self() { return std::dynamic_pointer_cast<AdditiveHook>(shared_from_this()); }
};

namespace {

std::string ShapeString(at::IntArrayRef shape) { return absl::StrCat("[", absl::StrJoin(shape, ", "), "]"); }

// delta(x) = scaling * B(A(dropout(x))), computed in the adapter's dtype.
class LoraDelta final : public PeftModel::Adapter {
 public:
  LoraDelta(std::shared_ptr<ProjectionImpl> target, int64_t r, double scaling, double dropout)
      : target_(std::move(target)), scaling_(scaling), dropout_(dropout) {
    auto opts = target_->weight.options();
    a_ = register_parameter("lora_A", torch::zeros({r, target_->in_features()}, opts));
    b_ = register_parameter("lora_B", torch::zeros({target_->out_features(), r}, opts));
  }

  // PEFT's init: A ~ kaiming_uniform(a = sqrt(5)) over fan_in = in, i.e. uniform(-1/sqrt(in), 1/sqrt(in))
  // (gain sqrt(2 / (1 + 5)), bound gain * sqrt(3 / in)); B stays zero.
  void Init(at::Generator& gen) {
    torch::NoGradGuard no_grad;
    const double bound = 1.0 / std::sqrt(static_cast<double>(target_->in_features()));
    a_.copy_(torch::empty(a_.sizes(), torch::kFloat).uniform_(-bound, bound, gen));
  }

  Tensor Delta(const Tensor& x, bool training) override {
    Tensor h = x.to(a_.scalar_type());
    if (training && dropout_ > 0) h = Dropout(h);
    return (F::linear(F::linear(h, a_), b_) * scaling_).to(x.scalar_type());
  }

  void SetGenerator(const at::Generator& generator) override { generator_ = generator; }

  // scaling * B @ A in the layout of the target's weight.
  Tensor DeltaWeight() const {
    Tensor d = torch::matmul(b_, a_) * scaling_;
    if (target_->layout() == ProjectionImpl::Layout::kConv1D) d = d.t();
    return d.to(target_->weight.scalar_type());
  }
  void Merge(bool add) {
    torch::NoGradGuard no_grad;
    if (add)
      target_->weight.add_(DeltaWeight());
    else
      target_->weight.sub_(DeltaWeight());
  }

  void Hook(bool on) override { target_->set_delta(on ? self() : nullptr); }
  bool HookFree() const override { return target_->delta() == nullptr; }
  std::vector<std::pair<std::string, Tensor>> Tensors() const override {
    return {{"lora_A.weight", a_}, {"lora_B.weight", b_}};
  }

 private:
  // Inverted dropout, as F::dropout: kept elements scaled by 1 / (1 - p). With a generator of our own (a CPU one) the
  // mask is drawn on the CPU and copied to h's device.
  Tensor Dropout(const Tensor& h) const {
    if (!generator_.defined()) return F::dropout(h, F::DropoutFuncOptions().p(dropout_).training(true));
    Tensor keep = torch::empty(h.sizes(), h.options().device(torch::kCPU)).bernoulli_(1.0 - dropout_, generator_);
    return h * keep.to(h.device()) * (1.0 / (1.0 - dropout_));
  }

  std::shared_ptr<ProjectionImpl> target_;
  double scaling_, dropout_;
  Tensor a_, b_;
  at::Generator generator_;  // undefined: LibTorch's global generator
};

// delta(h) = up(act(down(h))) on a sublayer output h.
class BottleneckAdapter final : public PeftModel::Adapter {
 public:
  BottleneckAdapter(std::shared_ptr<DecoderLayerImpl> layer, AdapterSite site, int64_t hidden, int64_t size, bool gelu,
                    const torch::TensorOptions& opts)
      : layer_(std::move(layer)), site_(site), gelu_(gelu) {
    down_w_ = register_parameter("down_weight", torch::zeros({size, hidden}, opts));
    down_b_ = register_parameter("down_bias", torch::zeros({size}, opts));
    up_w_ = register_parameter("up_weight", torch::zeros({hidden, size}, opts));
    up_b_ = register_parameter("up_bias", torch::zeros({hidden}, opts));
  }

  // down.weight ~ normal(0, std); everything else zero, so the adapter starts as the identity.
  void Init(double std, at::Generator& gen) {
    torch::NoGradGuard no_grad;
    down_w_.copy_(torch::empty(down_w_.sizes(), torch::kFloat).normal_(0.0, std, gen));
  }

  Tensor Delta(const Tensor& h, bool /*training*/) override {
    Tensor z = F::linear(h.to(down_w_.scalar_type()), down_w_, down_b_);
    z = gelu_ ? torch::gelu(z) : torch::relu(z);
    return F::linear(z, up_w_, up_b_).to(h.scalar_type());
  }

  void Hook(bool on) override { layer_->set_adapter(site_, on ? self() : nullptr); }
  bool HookFree() const override { return layer_->adapter(site_) == nullptr; }
  std::vector<std::pair<std::string, Tensor>> Tensors() const override {
    return {{"down.weight", down_w_}, {"down.bias", down_b_}, {"up.weight", up_w_}, {"up.bias", up_b_}};
  }

 private:
  std::shared_ptr<DecoderLayerImpl> layer_;
  AdapterSite site_;
  bool gelu_;
  Tensor down_w_, down_b_, up_w_, up_b_;
};

std::string LeafName(const std::string& path) {
  size_t dot = path.rfind('.');
  return dot == std::string::npos ? path : path.substr(dot + 1);
}

// The projections `targets` selects, in model order; INVALID_ARGUMENT naming an entry that matches nothing.
absl::StatusOr<std::vector<NamedProjection>> ResolveTargets(const CausalLMImpl& model,
                                                            const std::vector<std::string>& targets) {
  std::vector<NamedProjection> all = model.Projections();
  if (targets.size() == 1 && targets[0] == "all-linear") return all;
  std::vector<NamedProjection> out;
  std::set<std::string> matched;
  for (const NamedProjection& p : all) {
    bool hit = false;
    for (const std::string& t : targets) {
      if (p.path == t || absl::EndsWith(p.path, absl::StrCat(".", t))) {
        matched.insert(t);
        hit = true;
      }
    }
    if (hit) out.push_back(p);
  }
  for (const std::string& t : targets) {
    if (matched.count(t)) continue;
    std::set<std::string> leaves;
    for (const NamedProjection& p : all) leaves.insert(LeafName(p.path));
    return absl::InvalidArgumentError(
        absl::StrCat("LoRA target module \"", t, "\" matches no projection of ", model.config().architecture,
                     " (projections: ", absl::StrJoin(leaves, ", "), "; or \"all-linear\")"));
  }
  return out;
}

absl::Status ValidateLora(const LoraConfig& c) {
  if (c.r <= 0) return absl::InvalidArgumentError(absl::StrCat("LoRA r must be positive, got ", c.r));
  if (!std::isfinite(c.alpha)) return absl::InvalidArgumentError("LoRA alpha must be finite");
  if (!(c.dropout >= 0.0 && c.dropout < 1.0)) {
    return absl::InvalidArgumentError(absl::StrCat("LoRA dropout must be in [0, 1), got ", c.dropout));
  }
  if (c.target_modules.empty()) return absl::InvalidArgumentError("LoRA target_modules is empty");
  for (const std::string& t : c.target_modules) {
    if (t == "all-linear" && c.target_modules.size() > 1) {
      return absl::InvalidArgumentError("LoRA target_modules: \"all-linear\" must be the only entry");
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateBottleneck(const BottleneckConfig& c) {
  if (c.bottleneck_size <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("bottleneck_size must be positive, got ", c.bottleneck_size));
  }
  if (!c.after_attention && !c.after_mlp) {
    return absl::InvalidArgumentError("bottleneck adapters need a site: after_attention and/or after_mlp");
  }
  if (c.non_linearity != "relu" && c.non_linearity != "gelu") {
    return absl::InvalidArgumentError(
        absl::StrCat("non_linearity must be \"relu\" or \"gelu\", got \"", c.non_linearity, "\""));
  }
  if (!(c.init_std >= 0.0) || !std::isfinite(c.init_std)) {
    return absl::InvalidArgumentError(absl::StrCat("init_std must be >= 0, got ", c.init_std));
  }
  return absl::OkStatus();
}

std::string SanitizedName(const std::string& path) { return absl::StrReplaceAll(path, {{".", "_"}}); }

absl::Status TorchError(absl::string_view what, const c10::Error& e) {
  return absl::InternalError(absl::StrCat(what, ": ", e.what_without_backtrace()));
}

// ---- adapter_config.json ---------------------------------------------------------------------------------------

// The keys PEFT (0.10 - 0.13) writes for a LoRA adapter, so that PEFT and tools that read its configs load ours.
json LoraConfigJson(const LoraConfig& c, const std::vector<std::string>& targets, bool fan_in_fan_out,
                    bool score_head) {
  json j;
  j["alpha_pattern"] = json::object();
  j["auto_mapping"] = nullptr;
  j["base_model_name_or_path"] = c.base_model_name_or_path.empty() ? json(nullptr) : json(c.base_model_name_or_path);
  j["bias"] = "none";
  j["fan_in_fan_out"] = fan_in_fan_out;
  j["inference_mode"] = true;
  j["init_lora_weights"] = true;
  j["layer_replication"] = nullptr;
  j["layers_pattern"] = nullptr;
  j["layers_to_transform"] = nullptr;
  j["loftq_config"] = json::object();
  j["lora_alpha"] = c.alpha;
  j["lora_dropout"] = c.dropout;
  j["megatron_config"] = nullptr;
  j["megatron_core"] = "megatron.core";
  j["modules_to_save"] = score_head ? json::array({"score"}) : json(nullptr);
  j["peft_type"] = "LORA";
  j["r"] = c.r;
  j["rank_pattern"] = json::object();
  j["revision"] = nullptr;
  j["target_modules"] = targets;
  j["task_type"] = score_head ? "SEQ_CLS" : "CAUSAL_LM";
  j["use_dora"] = false;
  j["use_rslora"] = c.use_rslora;
  return j;
}

bool IsEmptyOrNull(const json& j) { return j.is_null() || ((j.is_object() || j.is_array()) && j.empty()); }

// modules_to_save may only name the score head (PEFT's SEQ_CLS default is ["classifier", "score"]); whether a score
// head is trained follows from the model's head, and a head tensor that does not fit is reported when loading.
absl::Status CheckModulesToSave(const json& j, const std::string& source) {
  if (!j.contains("modules_to_save") || IsEmptyOrNull(j["modules_to_save"])) return absl::OkStatus();
  const json& m = j["modules_to_save"];
  bool ok = m.is_array();
  for (const json& e : m) ok = ok && e.is_string() && (e == "score" || e == "classifier");
  if (!ok) {
    return absl::InvalidArgumentError(absl::StrCat(source,
                                                   ": field \"modules_to_save\" may only name the reward "
                                                   "model's head (\"score\"); got ",
                                                   m.dump()));
  }
  return absl::OkStatus();
}

absl::StatusOr<LoraConfig> ParseLoraConfig(const json& j, const std::string& source) {
  auto bad = [&](const std::string& field, const std::string& why) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": field \"", field, "\" ", why));
  };
  LoraConfig c;
  if (!j.contains("r") || !j["r"].is_number_integer()) return bad("r", "must be an integer");
  c.r = j["r"].get<int64_t>();
  if (!j.contains("lora_alpha") || !j["lora_alpha"].is_number()) return bad("lora_alpha", "must be a number");
  c.alpha = j["lora_alpha"].get<double>();
  if (j.contains("lora_dropout") && !j["lora_dropout"].is_null()) {
    if (!j["lora_dropout"].is_number()) return bad("lora_dropout", "must be a number");
    c.dropout = j["lora_dropout"].get<double>();
  }
  if (!j.contains("target_modules")) return bad("target_modules", "is missing");
  const json& t = j["target_modules"];
  if (t.is_string() && t.get<std::string>() == "all-linear") {
    c.target_modules = {"all-linear"};
  } else if (t.is_array() && std::all_of(t.begin(), t.end(), [](const json& e) { return e.is_string(); })) {
    c.target_modules = t.get<std::vector<std::string>>();
  } else {
    return bad("target_modules",
               "must be a list of module names or \"all-linear\" (regular expressions are not "
               "supported)");
  }
  if (j.contains("use_rslora") && !j["use_rslora"].is_null()) {
    if (!j["use_rslora"].is_boolean()) return bad("use_rslora", "must be a boolean");
    c.use_rslora = j["use_rslora"].get<bool>();
  }
  if (j.contains("base_model_name_or_path") && j["base_model_name_or_path"].is_string()) {
    c.base_model_name_or_path = j["base_model_name_or_path"].get<std::string>();
  }
  // Features alignd does not implement: refuse rather than load something that computes differently.
  if (j.contains("bias") && !(j["bias"].is_string() && j["bias"].get<std::string>() == "none")) {
    return bad("bias", "must be \"none\" (LoRA bias training is not supported)");
  }
  if (j.contains("use_dora") && j["use_dora"].is_boolean() && j["use_dora"].get<bool>()) {
    return bad("use_dora", "is not supported");
  }
  RETURN_IF_ERROR(CheckModulesToSave(j, source));
  for (const char* f : {"rank_pattern", "alpha_pattern", "layers_to_transform", "layer_replication"}) {
    if (j.contains(f) && !IsEmptyOrNull(j[f])) return bad(f, "is not supported (must be null or empty)");
  }
  // fan_in_fan_out only says how PEFT merges; like PEFT, alignd takes it from the layer (true for Conv1D).
  RETURN_IF_ERROR(Annotate(ValidateLora(c), source));
  return c;
}

json BottleneckConfigJson(const BottleneckConfig& c, const ModelConfig& model) {
  json sites = json::array();
  if (c.after_attention) sites.push_back("attention");
  if (c.after_mlp) sites.push_back("mlp");
  json j;
  j["base_model_name_or_path"] = c.base_model_name_or_path.empty() ? json(nullptr) : json(c.base_model_name_or_path);
  j["bottleneck_size"] = c.bottleneck_size;
  j["hidden_size"] = model.hidden_size;
  j["inference_mode"] = true;
  j["init_std"] = c.init_std;
  j["non_linearity"] = c.non_linearity;
  j["num_layers"] = model.num_layers;
  j["peft_type"] = "BOTTLENECK";
  j["sites"] = sites;
  j["task_type"] = "CAUSAL_LM";
  return j;
}

absl::StatusOr<BottleneckConfig> ParseBottleneckConfig(const json& j, const std::string& source,
                                                       const ModelConfig& model) {
  auto bad = [&](const std::string& field, const std::string& why) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": field \"", field, "\" ", why));
  };
  BottleneckConfig c;
  if (!j.contains("bottleneck_size") || !j["bottleneck_size"].is_number_integer()) {
    return bad("bottleneck_size", "must be an integer");
  }
  c.bottleneck_size = j["bottleneck_size"].get<int64_t>();
  if (!j.contains("sites") || !j["sites"].is_array()) return bad("sites", "must be a list");
  c.after_attention = c.after_mlp = false;
  for (const json& s : j["sites"]) {
    if (s == "attention")
      c.after_attention = true;
    else if (s == "mlp")
      c.after_mlp = true;
    else
      return bad("sites", absl::StrCat("has ", s.dump(), " (expected \"attention\" or \"mlp\")"));
  }
  if (!j.contains("non_linearity") || !j["non_linearity"].is_string()) return bad("non_linearity", "must be a string");
  c.non_linearity = j["non_linearity"].get<std::string>();
  if (j.contains("init_std") && j["init_std"].is_number()) c.init_std = j["init_std"].get<double>();
  if (j.contains("base_model_name_or_path") && j["base_model_name_or_path"].is_string()) {
    c.base_model_name_or_path = j["base_model_name_or_path"].get<std::string>();
  }
  RETURN_IF_ERROR(CheckModulesToSave(j, source));
  for (auto [field, want] : {std::pair<const char*, int64_t>{"hidden_size", model.hidden_size},
                             std::pair<const char*, int64_t>{"num_layers", model.num_layers}}) {
    if (j.contains(field) && !(j[field].is_number_integer() && j[field].get<int64_t>() == want)) {
      return bad(field, absl::StrCat("is ", j[field].dump(), " but the model has ", want));
    }
  }
  RETURN_IF_ERROR(Annotate(ValidateBottleneck(c), source));
  return c;
}

}  // namespace

// ---- PeftModel -------------------------------------------------------------------------------------------------

PeftModel::PeftModel(CausalLM model, PeftType type)
    : model_(std::move(model)), type_(type), module_(std::make_shared<torch::nn::Module>("PeftModel")) {}

PeftModel::~PeftModel() { Detach(); }

void PeftModel::SetDropoutGenerator(const at::Generator& generator) {
  for (auto& [name, adapter] : adapters_) adapter->SetGenerator(generator);
}

absl::StatusOr<std::unique_ptr<PeftModel>> PeftModel::CreateLora(CausalLM model, const LoraConfig& config) {
  if (!model) return absl::InvalidArgumentError("CreateLora: no model");
  RETURN_IF_ERROR(ValidateLora(config));
  ASSIGN_OR_RETURN(std::vector<NamedProjection> targets, ResolveTargets(*model, config.target_modules));
  std::unique_ptr<PeftModel> peft(new PeftModel(model, PeftType::kLora));
  peft->lora_ = config;
  const double scaling = config.use_rslora ? config.alpha / std::sqrt(static_cast<double>(config.r))
                                           : config.alpha / static_cast<double>(config.r);
  try {
    auto gen = at::detail::createCPUGenerator(config.seed);
    std::vector<std::pair<std::string, std::shared_ptr<Adapter>>> adapters;
    for (const NamedProjection& p : targets) {
      auto delta = std::make_shared<LoraDelta>(p.module, config.r, scaling, config.dropout);
      delta->Init(gen);
      peft->module_->register_module(SanitizedName(p.path), delta);
      adapters.emplace_back(p.path, std::move(delta));
    }
    RETURN_IF_ERROR(peft->Attach(std::move(adapters)));
  } catch (const c10::Error& e) {
    return TorchError("CreateLora", e);
  }
  return peft;
}

absl::StatusOr<std::unique_ptr<PeftModel>> PeftModel::CreateBottleneck(CausalLM model, const BottleneckConfig& config) {
  if (!model) return absl::InvalidArgumentError("CreateBottleneck: no model");
  RETURN_IF_ERROR(ValidateBottleneck(config));
  std::unique_ptr<PeftModel> peft(new PeftModel(model, PeftType::kBottleneck));
  peft->bottleneck_ = config;
  try {
    auto gen = at::detail::createCPUGenerator(config.seed);
    const int64_t hidden = model->config().hidden_size;
    std::vector<std::pair<std::string, std::shared_ptr<Adapter>>> adapters;
    for (const NamedLayer& layer : model->Layers()) {
      // Any parameter of the layer gives the device and dtype (the first one is a norm weight or a projection).
      torch::TensorOptions opts = layer.module->parameters().front().options();
      for (auto [site, on, name] : {std::tuple{AdapterSite::kAfterAttention, config.after_attention, "attn_adapter"},
                                    std::tuple{AdapterSite::kAfterMlp, config.after_mlp, "mlp_adapter"}}) {
        if (!on) continue;
        auto adapter = std::make_shared<BottleneckAdapter>(layer.module, site, hidden, config.bottleneck_size,
                                                           config.non_linearity == "gelu", opts);
        adapter->Init(config.init_std, gen);
        std::string path = absl::StrCat(layer.path, ".", name);
        peft->module_->register_module(SanitizedName(path), adapter);
        adapters.emplace_back(path, std::move(adapter));
      }
    }
    RETURN_IF_ERROR(peft->Attach(std::move(adapters)));
  } catch (const c10::Error& e) {
    return TorchError("CreateBottleneck", e);
  }
  return peft;
}

absl::Status PeftModel::Attach(std::vector<std::pair<std::string, std::shared_ptr<Adapter>>> adapters) {
  for (const auto& [path, adapter] : adapters) {
    if (!adapter->HookFree()) {
      return absl::FailedPreconditionError(
          absl::StrCat(path, ": the model already has an adapter attached here (detach the other PeftModel first)"));
    }
  }
  adapters_ = std::move(adapters);
  for (Tensor& p : model_->parameters()) {
    frozen_.emplace_back(p, p.requires_grad());
    p.requires_grad_(false);
  }
  if (model_->config().head == HeadKind::kScore) {
    // The reward model's head trains in full (PEFT's modules_to_save for SEQ_CLS); its base value is kept aside.
    auto params = model_->named_parameters();
    if (const Tensor* w = params.find("score.weight")) {
      score_ = *w;
      score_stash_ = score_.detach().clone();
      score_.requires_grad_(true);
    }
  }
  attached_ = true;
  ApplyHooks(true);
  return absl::OkStatus();
}

void PeftModel::ApplyHooks(bool on) {
  for (auto& [path, adapter] : adapters_) adapter->Hook(on);
}

void PeftModel::Detach() {
  if (!attached_) return;
  ApplyHooks(false);
  for (auto& [p, requires_grad] : frozen_) p.requires_grad_(requires_grad);
  frozen_.clear();
  attached_ = false;
}

void PeftModel::SetEnabled(bool enabled) {
  if (enabled == enabled_) return;
  if (!enabled && merged_ && attached_) {
    for (auto& [path, adapter] : adapters_) static_cast<LoraDelta&>(*adapter).Merge(/*add=*/false);
    merged_ = false;
  }
  enabled_ = enabled;
  if (attached_) ApplyHooks(enabled);
  if (attached_ && score_.defined()) {  // swap the trained and the base head
    torch::NoGradGuard no_grad;
    Tensor live = score_.detach().clone();
    score_.copy_(score_stash_);
    score_stash_ = live;
  }
}

absl::Status PeftModel::Merge() {
  if (type_ != PeftType::kLora) return absl::FailedPreconditionError("only LoRA adapters can be merged");
  if (!attached_) return absl::FailedPreconditionError("Merge: the adapters are detached");
  if (!enabled_) return absl::FailedPreconditionError("Merge: the adapters are disabled");
  if (merged_) return absl::FailedPreconditionError("Merge: already merged");
  try {
    for (auto& [path, adapter] : adapters_) static_cast<LoraDelta&>(*adapter).Merge(/*add=*/true);
  } catch (const c10::Error& e) {
    return TorchError("Merge", e);
  }
  ApplyHooks(false);
  merged_ = true;
  return absl::OkStatus();
}

absl::Status PeftModel::Unmerge() {
  if (type_ != PeftType::kLora) return absl::FailedPreconditionError("only LoRA adapters can be merged");
  if (!attached_) return absl::FailedPreconditionError("Unmerge: the adapters are detached");
  if (!merged_) return absl::FailedPreconditionError("Unmerge: not merged");
  try {
    for (auto& [path, adapter] : adapters_) static_cast<LoraDelta&>(*adapter).Merge(/*add=*/false);
  } catch (const c10::Error& e) {
    return TorchError("Unmerge", e);
  }
  merged_ = false;
  ApplyHooks(enabled_);
  return absl::OkStatus();
}

std::vector<Tensor> PeftModel::parameters() const {
  std::vector<Tensor> out = module_->parameters();
  if (score_.defined()) out.push_back(score_);
  return out;
}

std::vector<std::pair<std::string, Tensor>> PeftModel::named_parameters() const {
  std::vector<std::pair<std::string, Tensor>> out;
  for (const auto& [path, adapter] : adapters_) {
    for (auto& [suffix, t] : adapter->Tensors()) out.emplace_back(absl::StrCat(kSavedPrefix, path, ".", suffix), t);
  }
  // PEFT saves a modules_to_save copy under the module's own name.
  if (score_.defined()) out.emplace_back(absl::StrCat(kSavedPrefix, "score.weight"), score_);
  return out;
}

// ---- Save / Load -----------------------------------------------------------------------------------------------

absl::Status PeftModel::Save(const std::string& dir) const {
  json config;
  if (type_ == PeftType::kLora) {
    std::vector<std::string> targets = lora_.target_modules;
    if (targets.size() == 1 && targets[0] == "all-linear") {
      // PEFT, too, saves the leaf names "all-linear" stood for.
      std::set<std::string> leaves;
      for (const auto& [path, adapter] : adapters_) leaves.insert(LeafName(path));
      targets.assign(leaves.begin(), leaves.end());
    }
    config = LoraConfigJson(lora_, targets, model_->config().family == ModelFamily::kGpt2, score_.defined());
  } else {
    config = BottleneckConfigJson(bottleneck_, model_->config());
    if (score_.defined()) {
      config["task_type"] = "SEQ_CLS";
      config["modules_to_save"] = json::array({"score"});
    }
  }
  std::vector<Tensor> keep_alive;
  std::vector<safetensors::TensorToWrite> tensors;
  try {
    for (const auto& [name, t] : named_parameters()) {
      Tensor c = t.detach().to(torch::kCPU).contiguous();
      ASSIGN_OR_RETURN(safetensors::Dtype dtype, ToSafetensorsDtype(c.scalar_type()));
      keep_alive.push_back(c);
      tensors.push_back({name, dtype, c.sizes().vec(), c.data_ptr(), c.nbytes()});
    }
  } catch (const c10::Error& e) {
    return TorchError(dir, e);
  }
  return WriteDirAtomically(dir, [&](const std::string& staging) -> absl::Status {
    RETURN_IF_ERROR(WriteFileAtomic(JoinPath(staging, kConfigFile), config.dump(2)));
    return safetensors::Write(JoinPath(staging, kWeightsFile), tensors, {{"format", "pt"}});
  });
}

absl::Status PeftModel::CopyIn(const std::string& path, bool trainable) {
  ASSIGN_OR_RETURN(safetensors::File file, safetensors::File::Read(path));
  std::map<std::string, Tensor> want;
  for (auto& [name, t] : named_parameters()) want[name] = t;
  torch::NoGradGuard no_grad;
  for (const std::string& name : file.names()) {
    auto it = want.find(name);
    if (it == want.end()) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": unexpected tensor \"", name, "\" for this ",
                                                     model_->config().architecture, " and adapter_config.json"));
    }
    ASSIGN_OR_RETURN(safetensors::TensorView view, file.Get(name));
    if (view.shape != it->second.sizes().vec()) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": tensor \"", name, "\" has shape ",
                                                     ShapeString(view.shape), ", expected ",
                                                     ShapeString(it->second.sizes())));
    }
    absl::StatusOr<Tensor> t = TensorFromView(view);
    if (!t.ok()) return Annotate(t.status(), absl::StrCat(path, ": tensor \"", name, "\""));
    it->second.copy_(*t);
    want.erase(it);
  }
  if (!want.empty()) {
    std::vector<std::string> missing;
    for (const auto& [name, t] : want) missing.push_back(name);
    if (missing.size() > 5) {
      missing.resize(5);
      missing.push_back("...");
    }
    return absl::InvalidArgumentError(absl::StrCat(path, ": missing tensors: ", absl::StrJoin(missing, ", ")));
  }
  for (Tensor& p : parameters()) p.requires_grad_(trainable);
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<PeftModel>> PeftModel::Load(const std::string& dir, CausalLM model,
                                                           const PeftLoadOptions& options) {
  if (!model) return absl::InvalidArgumentError("Load: no model");
  const std::string config_path = JoinPath(dir, kConfigFile);
  ASSIGN_OR_RETURN(std::string text, ReadFile(config_path));
  json j = json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(config_path, ": must be a JSON object"));
  }
  if (!j.contains("peft_type") || !j["peft_type"].is_string()) {
    return absl::InvalidArgumentError(absl::StrCat(config_path, ": field \"peft_type\" must be a string"));
  }
  const std::string type = j["peft_type"].get<std::string>();
  std::unique_ptr<PeftModel> peft;
  if (type == "LORA") {
    ASSIGN_OR_RETURN(LoraConfig c, ParseLoraConfig(j, config_path));
    absl::StatusOr<std::unique_ptr<PeftModel>> created = CreateLora(model, c);
    if (!created.ok()) return Annotate(created.status(), config_path);
    peft = std::move(*created);
  } else if (type == "BOTTLENECK") {
    ASSIGN_OR_RETURN(BottleneckConfig c, ParseBottleneckConfig(j, config_path, model->config()));
    absl::StatusOr<std::unique_ptr<PeftModel>> created = CreateBottleneck(model, c);
    if (!created.ok()) return Annotate(created.status(), config_path);
    peft = std::move(*created);
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat(config_path, ": field \"peft_type\" is \"", type, "\"; alignd loads \"LORA\" and \"BOTTLENECK\""));
  }
  try {
    RETURN_IF_ERROR(peft->CopyIn(JoinPath(dir, kWeightsFile), options.trainable));
  } catch (const c10::Error& e) {
    return TorchError(dir, e);
  }
  return peft;
}

}  // namespace alignd
