#include "reward/registry.h"

#include <yaml-cpp/yaml.h>

#include <cmath>
#include <fstream>
#include <set>
#include <sstream>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/base/status.h"

namespace alignd::reward {

absl::Status PartParams::Error(absl::string_view key, absl::string_view what) const {
  return absl::InvalidArgumentError(absl::StrCat(spec_.where, key.empty() ? "" : ".", key, ": ", what));
}

const std::string* PartParams::Read(const std::string& key) {
  read_.push_back(key);
  auto it = spec_.params.find(key);
  return it == spec_.params.end() ? nullptr : &it->second;
}

absl::Status PartParams::Get(const std::string& key, std::string* out) {
  if (const std::string* text = Read(key)) *out = *text;
  return absl::OkStatus();
}

template <typename T, typename Parse>
absl::Status PartParams::GetParsed(const std::string& key, T* out, Parse parse, absl::string_view what) {
  const std::string* text = Read(key);
  if (text == nullptr) return absl::OkStatus();
  T v;
  if (!parse(*text, &v)) return Error(key, absl::StrCat("cannot read \"", *text, "\" as ", what));
  *out = v;
  return absl::OkStatus();
}

absl::Status PartParams::Get(const std::string& key, double* out) {
  return GetParsed(
      key, out, [](const std::string& t, double* v) { return absl::SimpleAtod(t, v) && std::isfinite(*v); },
      "a finite number");
}

absl::Status PartParams::Get(const std::string& key, int64_t* out) {
  return GetParsed(
      key, out, [](const std::string& t, int64_t* v) { return absl::SimpleAtoi(t, v); }, "an integer");
}

absl::Status PartParams::Get(const std::string& key, bool* out) {
  return GetParsed(
      key, out, [](const std::string& t, bool* v) { return absl::SimpleAtob(t, v); }, "true or false");
}

absl::Status PartParams::Require(const std::string& key, std::string* out) {
  RETURN_IF_ERROR(Get(key, out));
  if (out->empty()) return Error(key, absl::StrCat("is required by a ", spec_.type, " part"));
  return absl::OkStatus();
}

absl::Status PartParams::Finish() const {
  for (const auto& [key, value] : spec_.params) {
    if (std::find(read_.begin(), read_.end(), key) == read_.end()) {
      std::vector<std::string> known = read_;
      std::sort(known.begin(), known.end());
      return Error(key, absl::StrCat("unknown key for a ", spec_.type, " part (known: type, name, weight",
                                     known.empty() ? "" : ", ", absl::StrJoin(known, ", "), ")"));
    }
  }
  return absl::OkStatus();
}

absl::Status Registry::Register(PartType type) {
  std::string name = type.name;
  if (name.empty() || !type.make) return absl::InvalidArgumentError("reward registry: a type needs a name and make");
  if (!types_.emplace(name, std::move(type)).second) {
    return absl::InvalidArgumentError(absl::StrCat("reward registry: type \"", name, "\" is registered twice"));
  }
  return absl::OkStatus();
}

absl::Status Registry::RegisterMetric(TaskMetric metric) {
  std::string name = metric.name;
  if (name.empty() || !metric.make)
    return absl::InvalidArgumentError("reward registry: a metric needs a name and make");
  if (!metrics_.emplace(name, std::move(metric)).second) {
    return absl::InvalidArgumentError(absl::StrCat("reward registry: metric \"", name, "\" is registered twice"));
  }
  return absl::OkStatus();
}

const PartType* Registry::Find(absl::string_view name) const {
  auto it = types_.find(name);
  return it == types_.end() ? nullptr : &it->second;
}

const TaskMetric* Registry::FindMetric(absl::string_view name) const {
  auto it = metrics_.find(name);
  return it == metrics_.end() ? nullptr : &it->second;
}

std::vector<std::string> Registry::Names() const {
  std::vector<std::string> out;
  for (const auto& [name, type] : types_) out.push_back(name);
  return out;
}

std::vector<std::string> Registry::MetricNames() const {
  std::vector<std::string> out;
  for (const auto& [name, metric] : metrics_) out.push_back(name);
  return out;
}

const Registry& DefaultRegistry() {
  static const Registry* const kRegistry = [] {
    auto* r = new Registry;
    RegisterRulePartTypes(*r);
    RegisterServerPartType(*r);
    RegisterToyRules(*r);
    return r;
  }();
  return *kRegistry;
}

namespace {

absl::Status At(absl::string_view source, const YAML::Node& node, absl::string_view where, absl::string_view what) {
  return absl::InvalidArgumentError(
      absl::StrCat(source, ":", std::max(node.Mark().line + 1, 1), ": ", where, ": ", what));
}

}  // namespace

absl::StatusOr<std::vector<RewardPartSpec>> ParseRewardParts(const YAML::Node& list, absl::string_view source,
                                                             absl::string_view path, const Registry& registry) {
  if (!list.IsSequence()) {
    return At(source, list, path, "must be a list of parts, each a mapping with a `type` (see README, Rewards)");
  }
  std::vector<RewardPartSpec> parts;
  std::set<std::string> names;
  for (size_t i = 0; i < list.size(); ++i) {
    const YAML::Node item = list[i];
    const std::string where = absl::StrCat(path, "[", i, "]");
    if (!item.IsMap()) return At(source, item, where, "must be a mapping with a `type`");
    RewardPartSpec part;
    part.where = absl::StrCat(source, ":", std::max(item.Mark().line + 1, 1), ": ", where);
    for (const auto& kv : item) {
      const std::string key = kv.first.as<std::string>();
      const YAML::Node& value = kv.second;
      if (!value.IsScalar()) return At(source, value, absl::StrCat(where, ".", key), "must be a single value");
      if (key == "type") {
        part.type = value.Scalar();
      } else if (key == "name") {
        part.name = value.Scalar();
      } else if (key == "weight") {
        double w;
        if (!absl::SimpleAtod(value.Scalar(), &w) || !std::isfinite(w)) {
          return At(source, value, where + ".weight",
                    absl::StrCat("cannot read \"", value.Scalar(), "\" as a finite number"));
        }
        part.weight = w;
      } else {
        part.params[key] = value.Scalar();
      }
    }
    if (part.type.empty()) return At(source, item, where + ".type", "is required");
    const PartType* type = registry.Find(part.type);
    if (type == nullptr) {
      return At(
          source, item, where + ".type",
          absl::StrCat("unknown part type \"", part.type, "\" (known: ", absl::StrJoin(registry.Names(), ", "), ")"));
    }
    if (part.name.empty()) part.name = part.type;
    if (!names.insert(part.name).second) {
      return At(source, item, where + ".name",
                absl::StrCat("two parts are named \"", part.name, "\"; give one a `name`"));
    }
    PartParams params(part);
    ASSIGN_OR_RETURN(std::unique_ptr<Scorer> unused, type->make(params, nullptr));
    RETURN_IF_ERROR(params.Finish());
    parts.push_back(std::move(part));
  }
  if (parts.empty()) return At(source, list, path, "needs at least one part");
  return parts;
}

absl::StatusOr<std::vector<RewardPartSpec>> ReadRewardParts(const std::string& path, const Registry& registry) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open"));
  std::stringstream text;
  text << in.rdbuf();
  YAML::Node root;
  try {
    root = YAML::Load(text.str());
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(path, ":", e.mark.line + 1, ": ", e.msg));
  }
  if (!root.IsMap() || !root["rewards"].IsDefined()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": has no `rewards` list"));
  }
  return ParseRewardParts(root["rewards"], path, "rewards", registry);
}

absl::StatusOr<std::vector<WeightedScorer>> MakeScorers(const std::vector<RewardPartSpec>& parts,
                                                        const ScorerContext& context, const Registry& registry) {
  std::vector<WeightedScorer> out;
  for (const RewardPartSpec& part : parts) {
    const PartType* type = registry.Find(part.type);
    if (type == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(part.where, ".type: unknown part type \"", part.type, "\""));
    }
    PartParams params(part);
    ASSIGN_OR_RETURN(std::unique_ptr<Scorer> scorer, type->make(params, &context));
    RETURN_IF_ERROR(params.Finish());
    out.push_back({part.name, part.weight, std::move(scorer)});
  }
  RETURN_IF_ERROR(ValidateParts(out));
  return out;
}

absl::StatusOr<std::map<std::string, std::vector<std::optional<double>>>> ScoreTaskMetrics(
    const std::vector<std::string>& names, const std::vector<ScoreInput>& inputs, const Registry& registry) {
  std::map<std::string, std::vector<std::optional<double>>> out;
  for (const std::string& name : names) {
    const TaskMetric* metric = registry.FindMetric(name);
    if (metric == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("unknown task metric \"", name,
                                                     "\" (known: ", absl::StrJoin(registry.MetricNames(), ", "), ")"));
    }
    std::unique_ptr<Scorer> scorer = metric->make();
    ASSIGN_OR_RETURN(out[name], scorer->ScoreBatch(inputs));
  }
  return out;
}

Mean MeanOfSet(const std::vector<std::optional<double>>& values) {
  Mean m;
  double sum = 0;
  for (const std::optional<double>& v : values) {
    if (!v.has_value()) continue;
    sum += *v;
    ++m.n;
  }
  if (m.n > 0) m.mean = sum / static_cast<double>(m.n);
  return m;
}

}  // namespace alignd::reward
