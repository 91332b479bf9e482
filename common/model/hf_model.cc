#include "common/model/hf_model.h"

#include <cstring>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/base/file_util.h"
#include "common/base/status.h"

namespace alignd {
namespace {

using json = nlohmann::json;
using safetensors::Dtype;

constexpr char kIndexFile[] = "model.safetensors.index.json";
constexpr char kSingleFile[] = "model.safetensors";

// Tensors that Hugging Face checkpoints may hold but which are buffers derived from the config, not weights.
bool IsDerivedBuffer(const std::string& name) {
  return absl::EndsWith(name, ".attn.bias") || absl::EndsWith(name, ".attn.masked_bias") ||
         absl::EndsWith(name, "rotary_emb.inv_freq");
}

// The safetensors files making up the model: the single file, or the shards the index names.
absl::StatusOr<std::vector<std::string>> WeightFiles(const std::string& dir) {
  std::string index_path = JoinPath(dir, kIndexFile);
  if (PathExists(index_path)) {
    ASSIGN_OR_RETURN(std::string text, ReadFile(index_path));
    json j = json::parse(text, nullptr, false);
    if (j.is_discarded() || !j.is_object() || !j.contains("weight_map") || !j["weight_map"].is_object()) {
      return absl::InvalidArgumentError(
          absl::StrCat(index_path, ": must be a JSON object with a \"weight_map\" object"));
    }
    std::set<std::string> files;
    for (auto& [name, file] : j["weight_map"].items()) {
      if (!file.is_string()) {
        return absl::InvalidArgumentError(absl::StrCat(index_path, ": weight_map[\"", name, "\"] must be a file name"));
      }
      std::string f = file.get<std::string>();
      if (f.empty() || f.find('/') != std::string::npos || f == "..") {
        return absl::InvalidArgumentError(
            absl::StrCat(index_path, ": weight_map[\"", name, "\"] = \"", f, "\" must be a plain file name"));
      }
      files.insert(f);
    }
    std::vector<std::string> out;
    for (const auto& f : files) out.push_back(JoinPath(dir, f));
    return out;
  }
  std::string single = JoinPath(dir, kSingleFile);
  if (!PathExists(single)) {
    return absl::NotFoundError(absl::StrCat(dir, ": no ", kSingleFile, " or ", kIndexFile));
  }
  return std::vector<std::string>{single};
}

// Maps a checkpoint's tensor name onto the model's parameter names (GPT-2 checkpoints may omit "transformer.").
std::string CanonicalName(const std::string& name, const ModelConfig& config,
                          const std::map<std::string, torch::Tensor>& params) {
  if (params.count(name)) return name;
  if (config.family == ModelFamily::kGpt2 && !absl::StartsWith(name, "transformer.")) {
    std::string prefixed = absl::StrCat("transformer.", name);
    if (params.count(prefixed)) return prefixed;
  }
  return name;
}

std::string ShapeString(at::IntArrayRef shape) { return absl::StrCat("[", absl::StrJoin(shape, ", "), "]"); }

}  // namespace

absl::StatusOr<torch::ScalarType> ToTorchType(safetensors::Dtype d) {
  switch (d) {
    case Dtype::kF32:
      return torch::kFloat;
    case Dtype::kF16:
      return torch::kHalf;
    case Dtype::kBF16:
      return torch::kBFloat16;
    case Dtype::kF64:
      return torch::kDouble;
    case Dtype::kI64:
      return torch::kLong;
    case Dtype::kI32:
      return torch::kInt;
    case Dtype::kI16:
      return torch::kShort;
    case Dtype::kI8:
      return torch::kChar;
    case Dtype::kU8:
      return torch::kByte;
    case Dtype::kBool:
      return torch::kBool;
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("dtype ", safetensors::DtypeName(d), " has no LibTorch equivalent"));
  }
}

absl::StatusOr<torch::Tensor> TensorFromView(const safetensors::TensorView& view) {
  ASSIGN_OR_RETURN(torch::ScalarType type, ToTorchType(view.dtype));
  torch::Tensor t = torch::empty(view.shape, torch::TensorOptions().dtype(type));
  if (view.nbytes != t.nbytes()) {
    return absl::InvalidArgumentError(absl::StrCat("tensor byte size ", view.nbytes, " != ", t.nbytes()));
  }
  if (view.nbytes > 0) std::memcpy(t.data_ptr(), view.data, view.nbytes);
  return t;
}

absl::StatusOr<Dtype> ToSafetensorsDtype(torch::ScalarType type) {
  switch (type) {
    case torch::kFloat:
      return Dtype::kF32;
    case torch::kHalf:
      return Dtype::kF16;
    case torch::kBFloat16:
      return Dtype::kBF16;
    case torch::kDouble:
      return Dtype::kF64;
    case torch::kLong:
      return Dtype::kI64;
    case torch::kInt:
      return Dtype::kI32;
    case torch::kByte:
      return Dtype::kU8;
    case torch::kBool:
      return Dtype::kBool;
    default:
      return absl::InvalidArgumentError(absl::StrCat("cannot store ", c10::toString(type), " in safetensors"));
  }
}

absl::StatusOr<GenerationConfig> GenerationConfig::FromJson(absl::string_view text, absl::string_view source) {
  json j = json::parse(text.begin(), text.end(), nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": must be a JSON object"));
  }
  GenerationConfig g;
  auto int_field = [&](const char* f, std::optional<int64_t>* out) -> absl::Status {
    if (!j.contains(f) || j[f].is_null()) return absl::OkStatus();
    const json& v = j[f];
    if (v.is_number_integer()) {
      *out = v.get<int64_t>();
    } else if (v.is_array() && !v.empty() && v[0].is_number_integer()) {
      *out = v[0].get<int64_t>();
    } else {
      return absl::InvalidArgumentError(absl::StrCat(source, ": field \"", f, "\" must be an integer"));
    }
    return absl::OkStatus();
  };
  auto num_field = [&](const char* f, std::optional<double>* out) -> absl::Status {
    if (!j.contains(f) || j[f].is_null()) return absl::OkStatus();
    if (!j[f].is_number())
      return absl::InvalidArgumentError(absl::StrCat(source, ": field \"", f, "\" must be a number"));
    *out = j[f].get<double>();
    return absl::OkStatus();
  };
  RETURN_IF_ERROR(int_field("bos_token_id", &g.bos_token_id));
  RETURN_IF_ERROR(int_field("eos_token_id", &g.eos_token_id));
  RETURN_IF_ERROR(int_field("pad_token_id", &g.pad_token_id));
  RETURN_IF_ERROR(int_field("max_new_tokens", &g.max_new_tokens));
  RETURN_IF_ERROR(int_field("top_k", &g.top_k));
  RETURN_IF_ERROR(num_field("temperature", &g.temperature));
  RETURN_IF_ERROR(num_field("top_p", &g.top_p));
  if (j.contains("do_sample") && j["do_sample"].is_boolean()) g.do_sample = j["do_sample"].get<bool>();
  return g;
}

std::string GenerationConfig::ToJson() const {
  json j = json::object();
  if (bos_token_id) j["bos_token_id"] = *bos_token_id;
  if (eos_token_id) j["eos_token_id"] = *eos_token_id;
  if (pad_token_id) j["pad_token_id"] = *pad_token_id;
  if (max_new_tokens) j["max_new_tokens"] = *max_new_tokens;
  if (top_k) j["top_k"] = *top_k;
  if (temperature) j["temperature"] = *temperature;
  if (top_p) j["top_p"] = *top_p;
  if (do_sample) j["do_sample"] = *do_sample;
  return j.dump(2);
}

absl::Status LoadWeights(const std::string& dir, CausalLMImpl& model, const std::set<std::string>& allow_missing) {
  ASSIGN_OR_RETURN(std::vector<std::string> files, WeightFiles(dir));
  std::map<std::string, torch::Tensor> params;
  for (auto& item : model.named_parameters()) params[item.key()] = item.value();
  std::set<std::string> loaded;
  const ModelConfig& config = model.config();
  torch::NoGradGuard no_grad;
  for (const std::string& path : files) {
    ASSIGN_OR_RETURN(safetensors::File file, safetensors::File::Read(path));
    for (const std::string& raw : file.names()) {
      if (IsDerivedBuffer(raw)) continue;
      std::string name = CanonicalName(raw, config, params);
      if (name == "lm_head.weight" && !params.count(name)) continue;  // tied copy, or a score model's unused head
      auto it = params.find(name);
      if (it == params.end()) {
        return absl::InvalidArgumentError(
            absl::StrCat(path, ": unexpected tensor \"", raw, "\" for ", config.architecture));
      }
      if (!loaded.insert(name).second) {
        return absl::InvalidArgumentError(absl::StrCat(path, ": tensor \"", raw, "\" appears in more than one file"));
      }
      ASSIGN_OR_RETURN(safetensors::TensorView view, file.Get(raw));
      if (view.shape != it->second.sizes().vec()) {
        return absl::InvalidArgumentError(absl::StrCat(path, ": tensor \"", raw, "\" has shape ",
                                                       ShapeString(view.shape), ", config.json implies ",
                                                       ShapeString(it->second.sizes())));
      }
      absl::StatusOr<torch::Tensor> t = TensorFromView(view);
      if (!t.ok()) return Annotate(t.status(), absl::StrCat(path, ": tensor \"", raw, "\""));
      it->second.copy_(*t);
    }
  }
  std::vector<std::string> missing;
  for (const auto& [name, _] : params) {
    if (!loaded.count(name) && !allow_missing.count(name)) missing.push_back(name);
  }
  if (!missing.empty()) {
    if (missing.size() > 5) {
      missing.resize(5);
      missing.push_back("...");
    }
    return absl::InvalidArgumentError(absl::StrCat(dir, ": missing tensors: ", absl::StrJoin(missing, ", ")));
  }
  return absl::OkStatus();
}

absl::StatusOr<LoadedModel> LoadModelDir(const std::string& dir, const LoadOptions& options) {
  std::string config_path = JoinPath(dir, "config.json");
  ASSIGN_OR_RETURN(std::string config_text, ReadFile(config_path));
  LoadedModel out;
  ASSIGN_OR_RETURN(out.config, ModelConfig::FromJson(config_text, config_path));
  try {
    out.model = CausalLM(out.config);
    RETURN_IF_ERROR(LoadWeights(dir, *out.model));
    out.model->to(options.device, options.dtype);
  } catch (const c10::Error& e) {
    return absl::InternalError(absl::StrCat(dir, ": ", e.what_without_backtrace()));
  }
  std::string gen_path = JoinPath(dir, "generation_config.json");
  if (PathExists(gen_path)) {
    ASSIGN_OR_RETURN(std::string gen_text, ReadFile(gen_path));
    ASSIGN_OR_RETURN(out.generation, GenerationConfig::FromJson(gen_text, gen_path));
  }
  if (options.load_tokenizer) {
    ASSIGN_OR_RETURN(out.tokenizer, LoadTokenizer(dir));
  }
  return out;
}

namespace {

struct Shard {
  std::vector<safetensors::TensorToWrite> tensors;
  int64_t bytes = 0;
};

absl::Status WriteWeights(const std::string& dir, CausalLMImpl& model, const SaveOptions& options) {
  std::vector<torch::Tensor> keep_alive;
  std::vector<Shard> shards(1);
  int64_t total = 0;
  torch::ScalarType type = options.dtype == Dtype::kF16    ? torch::kHalf
                           : options.dtype == Dtype::kBF16 ? torch::kBFloat16
                           : options.dtype == Dtype::kF32  ? torch::kFloat
                                                           : at::ScalarType::Undefined;
  if (type == at::ScalarType::Undefined) {
    return absl::InvalidArgumentError(
        absl::StrCat("save dtype must be F32, F16 or BF16, got ", safetensors::DtypeName(options.dtype)));
  }
  for (auto& item : model.named_parameters()) {
    torch::Tensor t = item.value().detach().to(torch::kCPU, type).contiguous();
    keep_alive.push_back(t);
    int64_t bytes = static_cast<int64_t>(t.nbytes());
    if (options.max_shard_bytes > 0 && shards.back().bytes > 0 &&
        shards.back().bytes + bytes > options.max_shard_bytes) {
      shards.emplace_back();
    }
    shards.back().tensors.push_back({item.key(), options.dtype, t.sizes().vec(), t.data_ptr(), t.nbytes()});
    shards.back().bytes += bytes;
    total += bytes;
  }
  const std::map<std::string, std::string> metadata = {{"format", "pt"}};
  if (shards.size() == 1) {
    return safetensors::Write(JoinPath(dir, kSingleFile), shards[0].tensors, metadata);
  }
  json index;
  index["metadata"] = {{"total_size", total}};
  index["weight_map"] = json::object();
  for (size_t i = 0; i < shards.size(); ++i) {
    std::string file = absl::StrFormat("model-%05d-of-%05d.safetensors", i + 1, shards.size());
    RETURN_IF_ERROR(safetensors::Write(JoinPath(dir, file), shards[i].tensors, metadata));
    for (const auto& t : shards[i].tensors) index["weight_map"][t.name] = file;
  }
  return WriteFileAtomic(JoinPath(dir, kIndexFile), index.dump(2));
}

}  // namespace

absl::Status SaveModelDir(const std::string& dir, CausalLMImpl& model, const Tokenizer* tokenizer,
                          const GenerationConfig& generation, const SaveOptions& options) {
  return WriteDirAtomically(dir, [&](const std::string& staging) -> absl::Status {
    ModelConfig config = model.config();
    config.torch_dtype = options.dtype == Dtype::kF16    ? "float16"
                         : options.dtype == Dtype::kBF16 ? "bfloat16"
                                                         : "float32";
    RETURN_IF_ERROR(WriteFileAtomic(JoinPath(staging, "config.json"), config.ToJson()));
    try {
      RETURN_IF_ERROR(WriteWeights(staging, model, options));
    } catch (const c10::Error& e) {
      return absl::InternalError(absl::StrCat(dir, ": ", e.what_without_backtrace()));
    }
    GenerationConfig gen = generation;
    if (!gen.bos_token_id) gen.bos_token_id = config.bos_token_id;
    if (!gen.eos_token_id) gen.eos_token_id = config.eos_token_id;
    if (!gen.pad_token_id) gen.pad_token_id = config.pad_token_id;
    RETURN_IF_ERROR(WriteFileAtomic(JoinPath(staging, "generation_config.json"), gen.ToJson()));
    if (tokenizer != nullptr) RETURN_IF_ERROR(tokenizer->Save(staging));
    return absl::OkStatus();
  });
}

}  // namespace alignd
