#include "spec/job_validation.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <filesystem>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/base/status.h"
#include "spec/job_spec.h"

namespace alignd {
namespace {

absl::Status Invalid(absl::string_view source, const YAML::Node& at, absl::string_view key, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(source, ":", at.Mark().line + 1, ": ", key, ": ", what));
}

absl::StatusOr<int64_t> ReadInt(absl::string_view source, const YAML::Node& node, absl::string_view key, int64_t lo,
                                int64_t hi) {
  int64_t v = 0;
  if (!node.IsScalar() || !YAML::convert<int64_t>::decode(node, v)) {
    return Invalid(source, node, key, "must be an integer");
  }
  if (v < lo || v > hi) return Invalid(source, node, key, absl::StrCat("must be in [", lo, ", ", hi, "], got ", v));
  return v;
}

absl::Status ParseResources(absl::string_view source, const YAML::Node& node, ValidatedSpec* out) {
  out->resources.set_learners(1);
  out->resources.set_device(v1::DEVICE_KIND_CPU);
  if (!node.IsDefined() || node.IsNull()) return absl::OkStatus();
  if (!node.IsMap()) return Invalid(source, node, "resources", "must be a mapping");
  for (const auto& kv : node) {
    const std::string key = kv.first.as<std::string>();
    const std::string path = absl::StrCat("resources.", key);
    const YAML::Node& v = kv.second;
    if (key == "learners") {
      ASSIGN_OR_RETURN(int64_t n, ReadInt(source, v, path, 1, 1024));
      out->resources.set_learners(n);
    } else if (key == "rollout_workers") {
      ASSIGN_OR_RETURN(int64_t n, ReadInt(source, v, path, 0, 1024));
      out->resources.set_rollout_workers(n);
    } else if (key == "reward_servers") {
      ASSIGN_OR_RETURN(int64_t n, ReadInt(source, v, path, 0, 1024));
      out->resources.set_reward_servers(n);
    } else if (key == "priority") {
      ASSIGN_OR_RETURN(int64_t n, ReadInt(source, v, path, -1000, 1000));
      out->resources.set_priority(static_cast<int32_t>(n));
    } else if (key == "max_restarts") {
      ASSIGN_OR_RETURN(int64_t n, ReadInt(source, v, path, 0, 100));
      out->max_restarts = n;
    } else if (key == "device") {
      const std::string d = v.IsScalar() ? v.as<std::string>() : "";
      if (d == "cpu") {
        out->resources.set_device(v1::DEVICE_KIND_CPU);
      } else if (d == "cuda") {
        out->resources.set_device(v1::DEVICE_KIND_CUDA);
      } else {
        return Invalid(source, v, path, absl::StrCat("must be one of cpu, cuda, got \"", d, "\""));
      }
    } else {
      return Invalid(source, kv.first, path,
                     "unknown key (known: learners, rollout_workers, reward_servers, device, priority, max_restarts)");
    }
  }
  return absl::OkStatus();
}

// The spec text without its top-level `resources` section. Block-style YAML keeps its line numbers (the section's
// lines become empty), so that ParseJobSpec's errors point at the user's lines; flow-style (JSON) text is re-emitted.
std::string WithoutResources(absl::string_view text, YAML::Node root) {
  std::vector<int> key_lines;
  int resources_line = -1;
  for (const auto& kv : root) {
    key_lines.push_back(kv.first.Mark().line);
    if (kv.first.as<std::string>() == "resources") resources_line = kv.first.Mark().line;
  }
  std::sort(key_lines.begin(), key_lines.end());
  const bool shares_line = std::count(key_lines.begin(), key_lines.end(), resources_line) > 1;
  if (resources_line < 0 || shares_line || root.Style() == YAML::EmitterStyle::Flow) {
    root.remove("resources");
    YAML::Emitter emitter;
    emitter << root;
    return emitter.c_str();
  }
  auto next = std::upper_bound(key_lines.begin(), key_lines.end(), resources_line);
  const int end = next == key_lines.end() ? 1 << 30 : *next;
  std::vector<std::string> lines = absl::StrSplit(text, '\n');
  for (int i = resources_line; i < end && i < static_cast<int>(lines.size()); ++i) lines[i].clear();
  return absl::StrJoin(lines, "\n");
}

// Whether `path` (normalised) is `root` or inside it.
bool Within(const std::filesystem::path& path, const std::filesystem::path& root) {
  auto p = path.begin();
  for (auto r = root.begin(); r != root.end(); ++r, ++p) {
    if (r->empty()) continue;  // a trailing separator
    if (p == path.end() || *p != *r) return false;
  }
  return true;
}

absl::Status CheckPaths(const JobSpec& spec, absl::string_view source, const std::vector<std::string>& roots) {
  if (roots.empty()) return absl::OkStatus();
  std::vector<std::filesystem::path> normal_roots;
  for (const std::string& r : roots) normal_roots.push_back(std::filesystem::path(r).lexically_normal());
  std::vector<std::pair<std::string, std::string>> paths = {{"model.path", spec.model.path},
                                                            {"data.train", spec.data.train},
                                                            {"data.eval", spec.data.eval},
                                                            {"data.ptx", spec.data.ptx},
                                                            {"output_dir", spec.output_dir}};
  // Files a reward part reads (a reward model, an outside server's token and certificates): a token file outside
  // the roots would be read by a worker and sent to the server the spec names.
  for (size_t i = 0; i < spec.rewards.size(); ++i) {
    for (const char* key : {"path", "token_file", "tls_ca", "tls_cert", "tls_key"}) {
      auto it = spec.rewards[i].params.find(key);
      if (it != spec.rewards[i].params.end()) paths.emplace_back(absl::StrCat("rewards[", i, "].", key), it->second);
    }
  }
  for (size_t i = 0; i < spec.data.mix.size(); ++i) {
    paths.emplace_back(absl::StrCat("data.mix[", i, "]"), spec.data.mix[i]);
  }
  for (const auto& [key, value] : paths) {
    if (value.empty()) continue;
    std::filesystem::path p(value);
    if (p.is_relative()) p = normal_roots.front() / p;
    p = p.lexically_normal();
    bool ok = false;
    for (const auto& root : normal_roots) ok = ok || Within(p, root);
    if (!ok) {
      return absl::InvalidArgumentError(absl::StrCat(
          source, ": ", key, ": \"", value, "\" is outside the allowed roots (", absl::StrJoin(roots, ", "), ")"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<ValidatedSpec> ValidateJobSpec(absl::string_view spec_yaml, absl::string_view source,
                                              const std::vector<std::string>& path_roots) {
  if (spec_yaml.size() > kMaxSpecBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": spec is ", spec_yaml.size(), " bytes, more than the limit of ", kMaxSpecBytes));
  }
  YAML::Node root;
  try {
    root = YAML::Load(std::string(spec_yaml));
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(source, ":", e.mark.line + 1, ": invalid YAML: ", e.msg));
  }
  if (!root.IsMap()) return absl::InvalidArgumentError(absl::StrCat(source, ": the spec must be a mapping"));
  ValidatedSpec out;
  std::string rest(spec_yaml);
  try {
    RETURN_IF_ERROR(ParseResources(source, root["resources"], &out));
    if (root["resources"]) rest = WithoutResources(spec_yaml, root);
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(source, ":", e.mark.line + 1, ": resources: ", e.msg));
  }
  ASSIGN_OR_RETURN(JobSpec spec, ParseJobSpec(rest, source));
  // The device is the one part of `resources` that the job itself reads (the workers place the model there); the
  // text above lost it with the section.
  spec.device = out.resources.device() == v1::DEVICE_KIND_CUDA ? "cuda" : "cpu";
  RETURN_IF_ERROR(CheckPaths(spec, source, path_roots));
  // What a gang can run: rollout workers and reward servers serve the RL algorithms (whose model.path the rollout
  // workers load; the learner then publishes its weights to them); learners split every batch evenly.
  const v1::Resources& r = out.resources;
  if (!LearnsFromRollouts(spec.algorithm) && (r.rollout_workers() > 0 || r.reward_servers() > 0)) {
    return absl::InvalidArgumentError(absl::StrCat(source,
                                                   ": resources: rollout_workers and reward_servers serve ppo, "
                                                   "grpo, rloo and online_dpo only; ",
                                                   AlgorithmName(spec.algorithm), " needs learners alone"));
  }
  if (r.learners() > 1 && spec.train.batch_size % r.learners() != 0) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": train.batch_size: ", spec.train.batch_size,
                                                   " does not split evenly over ", r.learners(), " learners"));
  }
  out.name = spec.name;
  out.spec = std::move(spec);
  return out;
}

}  // namespace alignd
