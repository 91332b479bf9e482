#include "absl/strings/str_cat.h"
#include "cli/commands.h"
#include "common/flags.h"
#include "common/synth.h"

namespace alignd::cli {

int RunDataSynth(const Args& args, std::ostream& out, std::ostream& err) {
  SynthOptions defaults;
  FlagSet flags("alignctl data synth --out DIR [--seed N] [counts]");
  flags.String("out", "", "output folder (created if missing)");
  flags.Int("seed", static_cast<int64_t>(defaults.seed), "random seed: the same seed writes the same bytes");
  flags.Int("pretrain", defaults.pretrain, "lines of pretraining text");
  flags.Int("sft_train", defaults.sft_train, "SFT conversations, train split");
  flags.Int("sft_eval", defaults.sft_eval, "SFT conversations, eval split");
  flags.Int("pref_train", defaults.pref_train, "preference pairs, train split");
  flags.Int("pref_eval", defaults.pref_eval, "preference pairs, eval split");
  flags.Int("prompts_train", defaults.prompts_train, "RL prompts, train split");
  flags.Int("prompts_eval", defaults.prompts_eval, "RL prompts, eval split");
  flags.Int("sft_overcautious", defaults.sft_overcautious_percent,
            "percent of the SFT conversations on benign look-alike requests that refuse (over-cautious annotators)");
  constexpr char kAbout[] =
      "Writes the synthetic toy-assistant data set (arithmetic, safety, style) with train/eval splits.";
  if (auto stop = ParseFlags(flags, args, kAbout, out, err)) return *stop;
  if (flags.GetString("out").empty()) {
    err << "error: --out is required\n" << flags.Usage();
    return 2;
  }
  SynthOptions options = defaults;
  options.seed = static_cast<uint64_t>(flags.GetInt("seed"));
  options.pretrain = flags.GetInt("pretrain");
  options.sft_train = flags.GetInt("sft_train");
  options.sft_eval = flags.GetInt("sft_eval");
  options.pref_train = flags.GetInt("pref_train");
  options.pref_eval = flags.GetInt("pref_eval");
  options.prompts_train = flags.GetInt("prompts_train");
  options.prompts_eval = flags.GetInt("prompts_eval");
  options.sft_overcautious_percent = static_cast<int32_t>(flags.GetInt("sft_overcautious"));
  absl::Status s = WriteSynthData(flags.GetString("out"), options);
  if (!s.ok()) return ReportError(s, err);
  out << "wrote toy-assistant data to " << flags.GetString("out") << " (seed " << options.seed << ")\n";
  return 0;
}

}  // namespace alignd::cli
