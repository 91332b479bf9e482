// A training checkpoint: the folder <output>/checkpoints/step-NNNNNN/ holding
//   model/              the model (HF folder) or the PEFT adapter, as the caller's save_model writes it
//   optimizer.pt        the optimiser's state (torch::save)
//   extra.pt            the objective's extra parameters (a value head, say), when it has any
//   rng.pt              the run's random generator's state (at::Generator::get_state)
//   trainer_state.json  {"step": N, "epoch": E, "position": P, "algorithm": {...}}
// Folders are written whole (common/base/file_util.h's WriteDirAtomically), so a reader finds a complete one or none.
// Nothing is deleted: every checkpoint is kept.
#ifndef ALIGND_LEARNER_CHECKPOINT_H_
#define ALIGND_LEARNER_CHECKPOINT_H_

#include <ATen/core/Generator.h>
#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace torch::optim {
class Optimizer;
}  // namespace torch::optim

namespace alignd::learner {

// trainer_state.json: where the run stood after step `step`.
struct TrainerState {
  int64_t step = 0;                                     // the last completed step
  int64_t epoch = 0;                                    // Sampler::epoch()
  uint64_t position = 0;                                // Sampler::position()
  nlohmann::json algorithm = nlohmann::json::object();  // Objective::SaveState()
};

// What a checkpoint saves and restores in place. Nothing here is owned; every pointer must outlive the call.
struct CheckpointParts {
  std::function<absl::Status(const std::string& model_dir)> save_model;  // writes model/; required to save
  std::function<absl::Status(const std::string& model_dir)> load_model;  // reads model/; required to load
  torch::optim::Optimizer* optimizer = nullptr;                          // required
  std::vector<at::Tensor> extra;  // saved to extra.pt when non-empty, and copied back into on load
  at::Generator generator;        // a CPU generator; required
};

// <output_dir>/checkpoints/step-NNNNNN (six digits at least).
std::string CheckpointDir(const std::string& output_dir, int64_t step);

// The newest complete checkpoint folder under <output_dir>/checkpoints (a step-* folder with a trainer_state.json;
// staging folders are skipped), or "" when there is none.
std::string LatestCheckpoint(const std::string& output_dir);

// Writes the checkpoint folder `dir` atomically from `parts` and `state`. INTERNAL (naming the staging folder) when
// LibTorch cannot save; save_model's and the file writes' errors as they are. `dir` is untouched on failure.
absl::Status SaveCheckpoint(const std::string& dir, const CheckpointParts& parts, const TrainerState& state);

// Reads and checks <dir>/trainer_state.json alone. DATA_LOSS naming the file when it is not a JSON object, and naming
// the field when "step" is missing or not a non-negative integer, "epoch" or "position" not an unsigned integer, or
// "algorithm" not an object (the last three may be missing: 0, 0, {}); the read's error when it cannot be read.
absl::StatusOr<TrainerState> ReadTrainerState(const std::string& dir);

// Checks trainer_state.json first (as ReadTrainerState; nothing is loaded when it is bad), then restores the model,
// the optimiser (onto `device`), the extra parameters and the generator from `dir`, and returns the state. DATA_LOSS
// naming the folder when LibTorch cannot load a file or extra.pt holds the wrong number of tensors; load_model's
// errors as they are. On failure the parts may be partly restored.
absl::StatusOr<TrainerState> LoadCheckpoint(const std::string& dir, const CheckpointParts& parts, c10::Device device);

}  // namespace alignd::learner

#endif  // ALIGND_LEARNER_CHECKPOINT_H_
