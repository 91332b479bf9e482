#include "learner/checkpoint.h"

#include <torch/optim/optimizer.h>
#include <torch/serialize.h>
#include <torch/utils.h>

#include <filesystem>
#include <mutex>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/base/file_util.h"
#include "common/base/status.h"

namespace alignd::learner {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

at::Tensor GeneratorState(const at::Generator& generator) {
  at::Generator handle = generator;  // the same generator
  std::lock_guard<std::mutex> lock(handle.mutex());
  return handle.get_state();
}

}  // namespace

std::string CheckpointDir(const std::string& output_dir, int64_t step) {
  return JoinPath(JoinPath(output_dir, "checkpoints"), absl::StrFormat("step-%06d", step));
}

std::string LatestCheckpoint(const std::string& output_dir) {
  std::string dir = JoinPath(output_dir, "checkpoints"), best;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return "";
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    std::string name = entry.path().filename().string();
    if (name.rfind("step-", 0) != 0 || name.find('.') != std::string::npos) continue;
    if (!fs::exists(entry.path() / "trainer_state.json")) continue;
    if (name > best) best = name;
  }
  return best.empty() ? "" : JoinPath(dir, best);
}

absl::Status SaveCheckpoint(const std::string& dir, const CheckpointParts& parts, const TrainerState& state) {
  return WriteDirAtomically(dir, [&](const std::string& staging) -> absl::Status {
    RETURN_IF_ERROR(parts.save_model(JoinPath(staging, "model")));
    try {
      torch::save(*parts.optimizer, JoinPath(staging, "optimizer.pt"));
      if (!parts.extra.empty()) torch::save(parts.extra, JoinPath(staging, "extra.pt"));
      torch::save(GeneratorState(parts.generator), JoinPath(staging, "rng.pt"));
    } catch (const c10::Error& e) {
      return absl::InternalError(absl::StrCat(staging, ": ", e.what_without_backtrace()));
    }
    json j;
    j["step"] = state.step;
    j["epoch"] = state.epoch;
    j["position"] = state.position;
    j["algorithm"] = state.algorithm;
    return WriteFileAtomic(JoinPath(staging, "trainer_state.json"), j.dump(2));
  });
}

absl::StatusOr<TrainerState> ReadTrainerState(const std::string& dir) {
  ASSIGN_OR_RETURN(std::string text, ReadFile(JoinPath(dir, "trainer_state.json")));
  json j = json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::DataLossError(absl::StrCat(dir, "/trainer_state.json: unreadable"));
  }
  // Every field is checked before anything is loaded: a wrong type is a DATA_LOSS naming it, never a JSON exception.
  auto field_error = [&](absl::string_view field, absl::string_view want) {
    return absl::DataLossError(absl::StrCat(dir, "/trainer_state.json: field \"", field, "\" is not ", want));
  };
  if (!j.contains("step") || !j["step"].is_number_integer() || j["step"].get<int64_t>() < 0) {
    return field_error("step", "a non-negative integer");
  }
  for (const char* field : {"epoch", "position"}) {
    if (j.contains(field) && !j[field].is_number_unsigned()) return field_error(field, "an unsigned integer");
  }
  if (j.contains("algorithm") && !j["algorithm"].is_object()) return field_error("algorithm", "an object");
  TrainerState state;
  state.step = j["step"].get<int64_t>();
  state.epoch = j.value("epoch", int64_t{0});
  state.position = j.value("position", uint64_t{0});
  state.algorithm = j.value("algorithm", json::object());
  return state;
}

absl::StatusOr<TrainerState> LoadCheckpoint(const std::string& dir, const CheckpointParts& parts, c10::Device device) {
  ASSIGN_OR_RETURN(TrainerState state, ReadTrainerState(dir));
  RETURN_IF_ERROR(parts.load_model(JoinPath(dir, "model")));
  try {
    torch::load(*parts.optimizer, JoinPath(dir, "optimizer.pt"), device);
    if (!parts.extra.empty()) {
      std::vector<at::Tensor> saved;
      torch::load(saved, JoinPath(dir, "extra.pt"), device);
      if (saved.size() != parts.extra.size()) return absl::DataLossError(absl::StrCat(dir, "/extra.pt: wrong count"));
      torch::NoGradGuard no_grad;
      for (size_t i = 0; i < parts.extra.size(); ++i) parts.extra[i].copy_(saved[i]);
    }
    at::Tensor rng;
    torch::load(rng, JoinPath(dir, "rng.pt"));
    at::Generator generator = parts.generator;  // a handle on the same generator
    std::lock_guard<std::mutex> lock(generator.mutex());
    generator.set_state(rng);
  } catch (const c10::Error& e) {
    return absl::DataLossError(absl::StrCat(dir, ": ", e.what_without_backtrace()));
  }
  return state;
}

}  // namespace alignd::learner
