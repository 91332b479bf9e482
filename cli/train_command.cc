#include <cstdio>
#include <nlohmann/json.hpp>

#include "absl/strings/str_format.h"
#include "cli/commands.h"
#include "common/base/cpu.h"
#include "common/base/flags.h"
#include "common/model/compute_threads.h"
#include "learner/trainer.h"

namespace alignd::cli {

int RunTrain(const Args& args, std::ostream& out, std::ostream& err) {
  FlagSet flags("alignd train --spec JOB.yaml [--out DIR] [--resume] [--threads N]");
  flags.String("spec", "", "job spec (YAML); see examples/");
  flags.String("out", "", "output folder (overrides the spec's output_dir)");
  flags.Bool("resume", false, "continue from the latest checkpoint in the output folder");
  flags.Int("threads", 0, "intra-op threads (0: the spec's `threads`, else the cores available)");
  constexpr char kAbout[] = "Runs one training job in-process and writes metrics, checkpoints and the final model.";
  if (auto stop = ParseFlags(flags, args, kAbout, out, err)) return *stop;
  if (flags.GetString("spec").empty()) {
    err << "error: --spec is required\n" << flags.Usage();
    return 2;
  }
  auto spec = ReadJobSpec(flags.GetString("spec"));
  if (!spec.ok()) return ReportError(spec.status(), err);
  if (!flags.GetString("out").empty()) spec->output_dir = flags.GetString("out");
  if (flags.GetInt("threads") > 0) spec->threads = flags.GetInt("threads");
  // One role in a process of its own: the process-wide pools (an OpenBLAS pool too) take the run's count; the trainer
  // sets it again, for its own thread only.
  SetComputeThreads(static_cast<int>(spec->threads > 0 ? spec->threads : AvailableCores()));
  learner::TrainOptions options;
  options.resume = flags.GetBool("resume");
  const int64_t total = spec->train.steps;
  const int64_t every = spec->train.log_every;
  options.on_step = [&err, total, every](int64_t step, const learner::Metrics& m) {
    if (step % every != 0 && step != total) return;
    err << absl::StrFormat("[%s] step %d/%d", "train", step, total);
    for (const auto& [k, v] : m) {
      if (k == "train/epoch" || k == "train/tokens") continue;
      err << absl::StrFormat("  %s=%.4g", k, v);
    }
    err << "\n";
  };
  auto result = learner::RunTraining(*spec, options);
  if (!result.ok()) return ReportError(result.status(), err);
  nlohmann::json summary;
  summary["name"] = spec->name;
  summary["steps"] = result->steps;
  summary["resumed_from"] = result->resumed_from;
  summary["final"] = result->final_dir;
  summary["train"] = result->last;
  summary["eval"] = result->eval;
  out << summary.dump() << "\n";
  return 0;
}

}  // namespace alignd::cli
