#include "spec/job_spec.h"

#include <yaml-cpp/yaml.h>

#include <functional>
#include <iterator>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/base/file_util.h"
#include "common/base/status.h"

namespace alignd {
namespace {

// Reads one YAML mapping strictly: every key must be consumed by a Get, or Finish reports it.
class MapReader {
 public:
  MapReader(const YAML::Node& node, std::string path, std::string source)
      : node_(node), path_(std::move(path)), source_(std::move(source)) {}

  absl::Status Error(const YAML::Node& at, absl::string_view key, absl::string_view what) const {
    int line = at.IsDefined() ? at.Mark().line + 1 : node_.Mark().line + 1;
    std::string where = path_.empty() ? std::string(key) : key.empty() ? path_ : absl::StrCat(path_, ".", key);
    return absl::InvalidArgumentError(
        absl::StrCat(source_, ":", std::max(line, 1), ": ", where.empty() ? "" : where + ": ", what));
  }

  absl::Status CheckMap() const {
    if (!node_.IsMap()) return Error(node_, "", "must be a mapping of keys to values");
    return absl::OkStatus();
  }

  template <typename T>
  absl::Status Get(const char* key, T* out) {
    seen_.insert(key);
    YAML::Node v = node_[key];
    if (!v.IsDefined() || v.IsNull()) return absl::OkStatus();
    if (!v.IsScalar()) return Error(v, key, "must be a single value");
    try {
      *out = v.as<T>();
    } catch (const YAML::Exception&) {
      return Error(v, key, absl::StrCat("cannot read \"", v.Scalar(), "\" as ", TypeName<T>()));
    }
    return absl::OkStatus();
  }

  absl::Status GetList(const char* key, std::vector<std::string>* out) {
    seen_.insert(key);
    YAML::Node v = node_[key];
    if (!v.IsDefined() || v.IsNull()) return absl::OkStatus();
    if (v.IsScalar()) {
      *out = {v.Scalar()};
      return absl::OkStatus();
    }
    if (!v.IsSequence()) return Error(v, key, "must be a list of strings");
    out->clear();
    for (const auto& item : v) {
      if (!item.IsScalar()) return Error(item, key, "must be a list of strings");
      out->push_back(item.Scalar());
    }
    return absl::OkStatus();
  }

  // The sub-mapping at `key` (may be undefined: then `fn` is not called).
  absl::Status Section(const char* key, const std::function<absl::Status(MapReader&)>& fn) {
    seen_.insert(key);
    YAML::Node v = node_[key];
    if (!v.IsDefined() || v.IsNull()) return absl::OkStatus();
    MapReader sub(v, path_.empty() ? key : absl::StrCat(path_, ".", key), source_);
    RETURN_IF_ERROR(sub.CheckMap());
    RETURN_IF_ERROR(fn(sub));
    return sub.Finish();
  }

  // A key another reader handles (the coordinator's `resources`): accepted here without being read.
  void Ignore(const char* key) { seen_.insert(key); }

  bool Has(const char* key) const { return node_[key].IsDefined() && !node_[key].IsNull(); }

  absl::Status Finish() const {
    for (const auto& kv : node_) {
      std::string key = kv.first.Scalar();
      if (!seen_.count(key)) {
        std::vector<std::string> known(seen_.begin(), seen_.end());
        return Error(kv.first, "", absl::StrCat("unknown key \"", key, "\" (known: ", absl::StrJoin(known, ", "), ")"));
      }
    }
    return absl::OkStatus();
  }

  const YAML::Node& node() const { return node_; }
  const std::string& source() const { return source_; }

 private:
  template <typename T>
  static const char* TypeName() {
    if constexpr (std::is_same_v<T, bool>) return "true/false";
    if constexpr (std::is_integral_v<T>) return "an integer";
    if constexpr (std::is_floating_point_v<T>) return "a number";
    return "a string";
  }

  YAML::Node node_;
  std::string path_, source_;
  std::set<std::string> seen_;
};

// A check on a parsed value, reported against its key.
absl::Status Require(MapReader& r, const char* key, bool ok, absl::string_view what) {
  if (ok) return absl::OkStatus();
  return r.Error(r.node()[key], key, what);
}

absl::Status OneOf(MapReader& r, const char* key, const std::string& value, std::vector<std::string> allowed) {
  for (const auto& a : allowed) {
    if (value == a) return absl::OkStatus();
  }
  return r.Error(r.node()[key], key,
                 absl::StrCat("must be one of ", absl::StrJoin(allowed, ", "), "; got \"", value, "\""));
}

absl::Status ParseModel(MapReader& r, ModelSpec* m) {
  RETURN_IF_ERROR(r.Get("path", &m->path));
  RETURN_IF_ERROR(r.Get("dtype", &m->dtype));
  RETURN_IF_ERROR(OneOf(r, "dtype", m->dtype, {"float32", "bfloat16"}));
  return r.Section("init", [&](MapReader& s) -> absl::Status {
    RETURN_IF_ERROR(s.Get("arch", &m->init_arch));
    RETURN_IF_ERROR(OneOf(s, "arch", m->init_arch, {"llama", "qwen2", "gpt2"}));
    RETURN_IF_ERROR(s.Get("hidden_size", &m->init_hidden_size));
    RETURN_IF_ERROR(s.Get("layers", &m->init_layers));
    RETURN_IF_ERROR(s.Get("heads", &m->init_heads));
    RETURN_IF_ERROR(s.Get("kv_heads", &m->init_kv_heads));
    RETURN_IF_ERROR(s.Get("max_positions", &m->init_max_positions));
    RETURN_IF_ERROR(s.Get("vocab_size", &m->init_vocab_size));
    RETURN_IF_ERROR(Require(s, "vocab_size", m->init_vocab_size >= 0, "must be >= 0 (0: the tokenizer's)"));
    RETURN_IF_ERROR(Require(s, "hidden_size", m->init_hidden_size > 0, "must be > 0"));
    RETURN_IF_ERROR(Require(s, "layers", m->init_layers > 0, "must be > 0"));
    RETURN_IF_ERROR(Require(s, "heads", m->init_heads > 0 && m->init_hidden_size % m->init_heads == 0,
                            "must be > 0 and divide hidden_size"));
    RETURN_IF_ERROR(Require(s, "kv_heads", m->init_kv_heads > 0 && m->init_heads % m->init_kv_heads == 0,
                            "must be > 0 and divide heads"));
    return Require(s, "max_positions", m->init_max_positions > 1, "must be > 1");
  });
}

absl::Status ParseData(MapReader& r, DataSpec* d) {
  RETURN_IF_ERROR(r.Get("train", &d->train));
  RETURN_IF_ERROR(r.GetList("mix", &d->mix));
  RETURN_IF_ERROR(r.Get("eval", &d->eval));
  RETURN_IF_ERROR(r.Get("chat_template", &d->chat_template));
  RETURN_IF_ERROR(OneOf(r, "chat_template", d->chat_template, {"chatml", "llama3", "plain", "raw"}));
  RETURN_IF_ERROR(r.Get("max_length", &d->max_length));
  RETURN_IF_ERROR(r.Get("max_prompt_length", &d->max_prompt_length));
  RETURN_IF_ERROR(r.Get("pack", &d->pack));
  RETURN_IF_ERROR(r.Get("padding_free", &d->padding_free));
  RETURN_IF_ERROR(r.Get("ptx", &d->ptx));
  RETURN_IF_ERROR(Require(r, "train", !d->train.empty(), "is required"));
  RETURN_IF_ERROR(Require(r, "max_length", d->max_length > 1, "must be > 1"));
  return Require(r, "max_prompt_length", d->max_prompt_length > 0 && d->max_prompt_length < d->max_length,
                 "must be > 0 and < max_length");
}

absl::Status ParseTrain(MapReader& r, TrainSpec* t) {
  RETURN_IF_ERROR(r.Get("steps", &t->steps));
  RETURN_IF_ERROR(r.Get("batch_size", &t->batch_size));
  RETURN_IF_ERROR(r.Get("grad_accum", &t->grad_accum));
  RETURN_IF_ERROR(r.Get("lr", &t->lr));
  RETURN_IF_ERROR(r.Get("weight_decay", &t->weight_decay));
  RETURN_IF_ERROR(r.Get("beta1", &t->beta1));
  RETURN_IF_ERROR(r.Get("beta2", &t->beta2));
  RETURN_IF_ERROR(r.Get("eps", &t->eps));
  RETURN_IF_ERROR(r.Get("warmup_steps", &t->warmup_steps));
  RETURN_IF_ERROR(r.Get("schedule", &t->schedule));
  RETURN_IF_ERROR(r.Get("min_lr_ratio", &t->min_lr_ratio));
  RETURN_IF_ERROR(r.Get("max_grad_norm", &t->max_grad_norm));
  RETURN_IF_ERROR(r.Get("eval_every", &t->eval_every));
  RETURN_IF_ERROR(r.Get("checkpoint_every", &t->checkpoint_every));
  RETURN_IF_ERROR(r.Get("log_every", &t->log_every));
  RETURN_IF_ERROR(Require(r, "steps", t->steps > 0, "must be > 0"));
  RETURN_IF_ERROR(Require(r, "batch_size", t->batch_size > 0, "must be > 0"));
  RETURN_IF_ERROR(Require(r, "grad_accum", t->grad_accum > 0 && t->batch_size % t->grad_accum == 0,
                          "must be > 0 and divide batch_size"));
  RETURN_IF_ERROR(Require(r, "lr", t->lr > 0, absl::StrCat("must be > 0, got ", t->lr)));
  RETURN_IF_ERROR(Require(r, "weight_decay", t->weight_decay >= 0, "must be >= 0"));
  RETURN_IF_ERROR(Require(r, "beta1", t->beta1 >= 0 && t->beta1 < 1, "must be in [0, 1)"));
  RETURN_IF_ERROR(Require(r, "beta2", t->beta2 >= 0 && t->beta2 < 1, "must be in [0, 1)"));
  RETURN_IF_ERROR(Require(r, "warmup_steps", t->warmup_steps >= 0, "must be >= 0"));
  RETURN_IF_ERROR(OneOf(r, "schedule", t->schedule, {"cosine", "linear", "constant"}));
  RETURN_IF_ERROR(Require(r, "min_lr_ratio", t->min_lr_ratio >= 0 && t->min_lr_ratio <= 1, "must be in [0, 1]"));
  RETURN_IF_ERROR(Require(r, "max_grad_norm", t->max_grad_norm >= 0, "must be >= 0"));
  RETURN_IF_ERROR(Require(r, "eval_every", t->eval_every >= 0, "must be >= 0"));
  RETURN_IF_ERROR(Require(r, "checkpoint_every", t->checkpoint_every >= 0, "must be >= 0"));
  return Require(r, "log_every", t->log_every > 0, "must be > 0");
}

absl::Status ParsePpo(MapReader& r, PpoSpec* p) {
  for (const char* moved : {"reward_model", "rule_rewards", "reward_model_weight"}) {
    r.Ignore(moved);
    if (r.Has(moved)) {
      return r.Error(r.node()[moved], moved,
                     "has moved to the top-level `rewards` list (README, Rewards): for example "
                     "`rewards: [{type: reward_model, path: runs/rm/final, weight: 0.2}, {type: toy.arithmetic}]`");
    }
  }
  RETURN_IF_ERROR(r.Get("max_new_tokens", &p->max_new_tokens));
  RETURN_IF_ERROR(r.Get("temperature", &p->temperature));
  RETURN_IF_ERROR(r.Get("samples_per_prompt", &p->samples_per_prompt));
  RETURN_IF_ERROR(r.Get("epochs", &p->epochs));
  RETURN_IF_ERROR(r.Get("minibatches", &p->minibatches));
  RETURN_IF_ERROR(r.Get("clip", &p->clip));
  RETURN_IF_ERROR(r.Get("value_clip", &p->value_clip));
  RETURN_IF_ERROR(r.Get("vf_coef", &p->vf_coef));
  RETURN_IF_ERROR(r.Get("entropy_coef", &p->entropy_coef));
  RETURN_IF_ERROR(r.Get("gamma", &p->gamma));
  RETURN_IF_ERROR(r.Get("lam", &p->lam));
  RETURN_IF_ERROR(r.Get("kl_coef", &p->kl_coef));
  RETURN_IF_ERROR(r.Get("adaptive_kl", &p->adaptive_kl));
  RETURN_IF_ERROR(r.Get("kl_target", &p->kl_target));
  RETURN_IF_ERROR(r.Get("kl_horizon", &p->kl_horizon));
  RETURN_IF_ERROR(r.Get("whiten_advantages", &p->whiten_advantages));
  RETURN_IF_ERROR(r.Get("scale_rewards", &p->scale_rewards));
  RETURN_IF_ERROR(OneOf(r, "scale_rewards", p->scale_rewards, {"group", "batch", "none"}));
  RETURN_IF_ERROR(r.Get("max_staleness", &p->max_staleness));
  RETURN_IF_ERROR(Require(r, "max_staleness", p->max_staleness >= 0, "must be >= 0"));
  RETURN_IF_ERROR(r.Get("ptx_coef", &p->ptx_coef));
  RETURN_IF_ERROR(r.Get("ptx_batch_size", &p->ptx_batch_size));
  RETURN_IF_ERROR(Require(r, "ptx_coef", p->ptx_coef >= 0, "must be >= 0"));
  RETURN_IF_ERROR(Require(r, "ptx_batch_size", p->ptx_batch_size > 0, "must be > 0"));
  RETURN_IF_ERROR(Require(r, "max_new_tokens", p->max_new_tokens > 0, "must be > 0"));
  RETURN_IF_ERROR(Require(r, "temperature", p->temperature > 0, "must be > 0"));
  RETURN_IF_ERROR(Require(r, "samples_per_prompt", p->samples_per_prompt > 0, "must be > 0"));
  RETURN_IF_ERROR(Require(r, "epochs", p->epochs > 0, "must be > 0"));
  RETURN_IF_ERROR(Require(r, "minibatches", p->minibatches > 0, "must be > 0"));
  RETURN_IF_ERROR(Require(r, "clip", p->clip > 0, "must be > 0"));
  RETURN_IF_ERROR(Require(r, "gamma", p->gamma > 0 && p->gamma <= 1, "must be in (0, 1]"));
  RETURN_IF_ERROR(Require(r, "lam", p->lam >= 0 && p->lam <= 1, "must be in [0, 1]"));
  return Require(r, "kl_coef", p->kl_coef >= 0, "must be >= 0");
}

absl::Status ParseTop(MapReader& r, JobSpec* spec) {
  RETURN_IF_ERROR(r.CheckMap());
  // `resources` is the gang a coordinator places (spec/job_validation.h validates all of it); in one process
  // only its device matters.
  r.Ignore("resources");
  if (const YAML::Node resources = r.node()["resources"];
      resources.IsDefined() && resources.IsMap() && resources["device"].IsDefined()) {
    const YAML::Node device = resources["device"];
    spec->device = device.IsScalar() ? device.Scalar() : "";
    if (spec->device != "cpu" && spec->device != "cuda") {
      return r.Error(device, "resources.device", absl::StrCat("must be cpu or cuda, got \"", spec->device, "\""));
    }
  }
  RETURN_IF_ERROR(r.Get("name", &spec->name));
  RETURN_IF_ERROR(Require(r, "name", !spec->name.empty(), "is required"));
  std::string algorithm = "sft";
  RETURN_IF_ERROR(r.Get("algorithm", &algorithm));
  // Spelt as AlgorithmName spells them.
  constexpr Algorithm kAlgorithms[] = {Algorithm::kPretrain, Algorithm::kSft,  Algorithm::kRm,   Algorithm::kDpo,
                                       Algorithm::kPpo,      Algorithm::kGrpo, Algorithm::kRloo, Algorithm::kOnlineDpo};
  std::vector<std::string> names;
  bool found = false;
  for (Algorithm a : kAlgorithms) {
    const std::string n(AlgorithmName(a));
    names.push_back(n);
    if (n == algorithm) {
      spec->algorithm = a;
      found = true;
    }
  }
  if (!found) RETURN_IF_ERROR(OneOf(r, "algorithm", algorithm, names));
  spec->output_dir = absl::StrCat("runs/", spec->name);
  RETURN_IF_ERROR(r.Get("output_dir", &spec->output_dir));
  RETURN_IF_ERROR(r.Get("seed", &spec->seed));
  RETURN_IF_ERROR(r.Get("threads", &spec->threads));
  RETURN_IF_ERROR(Require(r, "threads", spec->threads >= 0, "must be >= 0"));
  RETURN_IF_ERROR(r.Section("model", [&](MapReader& s) { return ParseModel(s, &spec->model); }));
  RETURN_IF_ERROR(Require(r, "data", r.Has("data"), "is required"));
  RETURN_IF_ERROR(r.Section("data", [&](MapReader& s) { return ParseData(s, &spec->data); }));
  RETURN_IF_ERROR(r.Section("train", [&](MapReader& s) { return ParseTrain(s, &spec->train); }));
  RETURN_IF_ERROR(r.Section("lora", [&](MapReader& s) -> absl::Status {
    spec->lora.enabled = true;
    RETURN_IF_ERROR(s.Get("enabled", &spec->lora.enabled));
    RETURN_IF_ERROR(s.Get("r", &spec->lora.r));
    RETURN_IF_ERROR(s.Get("alpha", &spec->lora.alpha));
    RETURN_IF_ERROR(s.Get("dropout", &spec->lora.dropout));
    RETURN_IF_ERROR(s.GetList("target_modules", &spec->lora.target_modules));
    RETURN_IF_ERROR(Require(s, "r", spec->lora.r > 0, "must be > 0"));
    RETURN_IF_ERROR(Require(s, "dropout", spec->lora.dropout >= 0 && spec->lora.dropout < 1, "must be in [0, 1)"));
    return Require(s, "target_modules", !spec->lora.target_modules.empty(), "must name at least one module");
  }));
  RETURN_IF_ERROR(r.Section("adapter", [&](MapReader& s) -> absl::Status {
    spec->adapter.enabled = true;
    RETURN_IF_ERROR(s.Get("enabled", &spec->adapter.enabled));
    RETURN_IF_ERROR(s.Get("bottleneck", &spec->adapter.bottleneck));
    RETURN_IF_ERROR(s.Get("after_attention", &spec->adapter.after_attention));
    RETURN_IF_ERROR(s.Get("after_mlp", &spec->adapter.after_mlp));
    RETURN_IF_ERROR(Require(s, "bottleneck", spec->adapter.bottleneck > 0, "must be > 0"));
    return Require(s, "after_mlp", spec->adapter.after_attention || spec->adapter.after_mlp,
                   "after_attention and after_mlp cannot both be false");
  }));
  if (spec->lora.enabled && spec->adapter.enabled) {
    return r.Error(r.node()["adapter"], "adapter", "cannot be combined with lora in one job");
  }
  RETURN_IF_ERROR(r.Section("rm", [&](MapReader& s) { return s.Get("margin", &spec->rm.margin); }));
  RETURN_IF_ERROR(r.Section("dpo", [&](MapReader& s) -> absl::Status {
    RETURN_IF_ERROR(s.Get("loss", &spec->dpo.loss));
    RETURN_IF_ERROR(OneOf(s, "loss", spec->dpo.loss, {"sigmoid", "ipo", "orpo"}));
    RETURN_IF_ERROR(s.Get("beta", &spec->dpo.beta));
    RETURN_IF_ERROR(s.Get("label_smoothing", &spec->dpo.label_smoothing));
    RETURN_IF_ERROR(s.Get("rpo_alpha", &spec->dpo.rpo_alpha));
    RETURN_IF_ERROR(s.Get("reward_scale", &spec->dpo.reward_scale));
    RETURN_IF_ERROR(Require(s, "beta", spec->dpo.beta > 0, "must be > 0"));
    RETURN_IF_ERROR(Require(s, "reward_scale", spec->dpo.reward_scale >= 0, "must be >= 0"));
    if (spec->dpo.reward_scale > 0) {
      RETURN_IF_ERROR(Require(s, "reward_scale", spec->algorithm == Algorithm::kOnlineDpo,
                              "needs scored answers: online_dpo only (preference records carry no scores)"));
      RETURN_IF_ERROR(Require(s, "reward_scale", spec->dpo.loss == "sigmoid", "is for the sigmoid loss"));
      RETURN_IF_ERROR(Require(s, "reward_scale", spec->dpo.label_smoothing == 0,
                              "replaces label_smoothing (each pair's label comes from its score gap): set one"));
    }
    RETURN_IF_ERROR(Require(s, "rpo_alpha", spec->dpo.rpo_alpha >= 0, "must be >= 0"));
    RETURN_IF_ERROR(Require(s, "rpo_alpha", spec->dpo.rpo_alpha == 0 || spec->dpo.loss != "orpo",
                            "is for sigmoid and ipo; orpo has its own NLL term"));
    return Require(s, "label_smoothing", spec->dpo.label_smoothing >= 0 && spec->dpo.label_smoothing < 0.5,
                   "must be in [0, 0.5)");
  }));
  RETURN_IF_ERROR(r.Section("ppo", [&](MapReader& s) { return ParsePpo(s, &spec->ppo); }));
  r.Ignore("rewards");
  const bool rl = LearnsFromRollouts(spec->algorithm);
  if (spec->algorithm == Algorithm::kOnlineDpo && spec->dpo.loss == "orpo") {
    return r.Error(r.node()["dpo"]["loss"], "dpo.loss",
                   "online_dpo takes sigmoid or ipo (orpo has no reference policy)");
  }
  if (r.Has("rewards")) {
    if (!rl) return r.Error(r.node()["rewards"], "rewards", "is read only by ppo, grpo, rloo and online_dpo");
    ASSIGN_OR_RETURN(spec->rewards, reward::ParseRewardParts(r.node()["rewards"], r.source(), "rewards"));
  } else if (rl) {
    return r.Error(r.node(), "rewards",
                   "is required by ppo, grpo, rloo and online_dpo: a list of reward parts, e.g. "
                   "`rewards: [{type: answer_match, field: answer}]` (README, Rewards)");
  }
  RETURN_IF_ERROR(r.Finish());
  if (!spec->data.mix.empty() && spec->algorithm != Algorithm::kPretrain && spec->algorithm != Algorithm::kSft) {
    return r.Error(r.node()["data"], "data.mix", "is only for pretrain and sft");
  }
  if (spec->data.padding_free && rl) {
    return r.Error(r.node()["data"], "data.padding_free",
                   "is for pretrain, sft, rm and the dpo family (not online_dpo)");
  }
  const bool ptx_algorithm =
      spec->algorithm == Algorithm::kPpo || spec->algorithm == Algorithm::kGrpo || spec->algorithm == Algorithm::kRloo;
  if (spec->ppo.ptx_coef > 0 && !ptx_algorithm) {
    return r.Error(r.node()["ppo"]["ptx_coef"], "ppo.ptx_coef", "is for ppo, grpo and rloo");
  }
  if (spec->ppo.ptx_coef > 0 && spec->data.ptx.empty()) {
    return r.Error(r.node()["ppo"]["ptx_coef"], "ppo.ptx_coef", "needs data.ptx: the demonstrations to train on");
  }
  if (!spec->data.ptx.empty() && spec->ppo.ptx_coef == 0) {
    return r.Error(r.node()["data"]["ptx"], "data.ptx", "is read only with ppo.ptx_coef > 0 (ppo, grpo and rloo)");
  }
  const bool may_init = spec->algorithm == Algorithm::kPretrain || spec->algorithm == Algorithm::kSft;
  if (spec->model.path.empty() && !may_init) {
    return r.Error(r.node()["model"], "model.path", "is required (only pretrain and sft can start from a fresh model)");
  }
  return absl::OkStatus();
}

}  // namespace

absl::string_view AlgorithmName(Algorithm a) {
  switch (a) {
    case Algorithm::kPretrain:
      return "pretrain";
    case Algorithm::kSft:
      return "sft";
    case Algorithm::kRm:
      return "rm";
    case Algorithm::kDpo:
      return "dpo";
    case Algorithm::kPpo:
      return "ppo";
    case Algorithm::kGrpo:
      return "grpo";
    case Algorithm::kRloo:
      return "rloo";
    case Algorithm::kOnlineDpo:
      return "online_dpo";
  }
  return "unknown";
}

bool LearnsFromRollouts(Algorithm a) {
  return a == Algorithm::kPpo || a == Algorithm::kGrpo || a == Algorithm::kRloo || a == Algorithm::kOnlineDpo;
}

absl::StatusOr<JobSpec> ParseJobSpec(absl::string_view text, absl::string_view source) {
  YAML::Node root;
  try {
    root = YAML::Load(std::string(text));
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(source, ":", e.mark.line + 1, ": invalid YAML: ", e.msg));
  }
  JobSpec spec;
  MapReader reader(root, "", std::string(source));
  RETURN_IF_ERROR(ParseTop(reader, &spec));
  return spec;
}

absl::StatusOr<JobSpec> ReadJobSpec(const std::string& path) {
  ASSIGN_OR_RETURN(std::string text, ReadFile(path));
  return ParseJobSpec(text, path);
}

}  // namespace alignd
