#include "reward/scorer.h"

#include <cmath>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/base/status.h"
#include "common/data/dataset.h"

namespace alignd::reward {

std::optional<absl::string_view> ScoreInput::Field(absl::string_view key) const {
  auto it = fields.find(std::string(key));
  if (it == fields.end()) return std::nullopt;
  return absl::string_view(it->second);
}

ScoreInput InputFor(const Record& record, std::string response) {
  ScoreInput in;
  in.prompt = record.prompt.FirstContent();
  in.response = std::move(response);
  for (const auto& [key, value] : record.extra.items()) {
    in.fields[key] = value.is_string() ? value.get<std::string>() : value.dump();
  }
  return in;
}

absl::Status ValidateParts(const std::vector<WeightedScorer>& parts) {
  if (parts.empty()) return absl::InvalidArgumentError("rewards: needs at least one part");
  std::set<std::string> names;
  for (const WeightedScorer& s : parts) {
    if (s.name.empty()) return absl::InvalidArgumentError("rewards: a part has an empty name");
    if (!names.insert(s.name).second) {
      return absl::InvalidArgumentError(absl::StrCat("rewards: two parts are named \"", s.name, "\""));
    }
    if (!std::isfinite(s.weight)) {
      return absl::InvalidArgumentError(absl::StrCat("rewards: part \"", s.name, "\" has a non-finite weight"));
    }
    if (s.scorer == nullptr)
      return absl::InvalidArgumentError(absl::StrCat("rewards: part \"", s.name, "\" has no scorer"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<ScoreResult>> ScoreWeighted(std::vector<WeightedScorer>& parts,
                                                       const std::vector<ScoreInput>& inputs) {
  std::vector<ScoreResult> out(inputs.size());
  for (WeightedScorer& s : parts) {
    absl::StatusOr<std::vector<std::optional<double>>> values = s.scorer->ScoreBatch(inputs);
    if (!values.ok()) return Annotate(values.status(), absl::StrCat("reward part \"", s.name, "\""));
    if (values->size() != inputs.size()) {
      return absl::InternalError(absl::StrCat("reward part \"", s.name, "\" returned ", values->size(), " values for ",
                                              inputs.size(), " items"));
    }
    for (size_t i = 0; i < inputs.size(); ++i) {
      const std::optional<double>& v = (*values)[i];
      if (!v.has_value()) continue;
      out[i].parts[s.name] = *v;
      out[i].total += s.weight * *v;
    }
  }
  return out;
}

std::map<std::string, double> PartMeans(const std::vector<ScoreResult>& results) {
  std::map<std::string, std::pair<double, int64_t>> sums;  // sum, count
  for (const ScoreResult& r : results) {
    for (const auto& [name, value] : r.parts) {
      sums[name].first += value;
      ++sums[name].second;
    }
  }
  std::map<std::string, double> means;
  for (const auto& [name, sum] : sums) means[name] = sum.first / static_cast<double>(sum.second);
  return means;
}

namespace {

class LocalReward : public Reward {
 public:
  explicit LocalReward(std::vector<WeightedScorer> parts) : parts_(std::move(parts)) {}
  absl::StatusOr<std::vector<ScoreResult>> Score(const std::vector<ScoreInput>& inputs) override {
    return ScoreWeighted(parts_, inputs);
  }

 private:
  std::vector<WeightedScorer> parts_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Reward>> MakeLocalReward(std::vector<WeightedScorer> parts) {
  RETURN_IF_ERROR(ValidateParts(parts));
  return std::unique_ptr<Reward>(new LocalReward(std::move(parts)));
}

}  // namespace alignd::reward
