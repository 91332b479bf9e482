#include "absl/strings/str_cat.h"
#include "cli/commands.h"
#include "common/base/flags.h"
#include "common/data/synth.h"
#include "common/data/synth_math.h"

namespace alignd::cli {

int RunDataSynth(const Args& args, std::ostream& out, std::ostream& err) {
  SynthOptions defaults;
  MathSynthOptions math_defaults;
  FlagSet flags("alignctl data synth --out DIR [--task toy|math] [--seed N] [counts]");
  flags.String("out", "", "output folder (created if missing)");
  flags.String("task", "toy",
               "toy: the toy-assistant set (arithmetic, safety, style); math: GSM8K-style word problems with "
               "\"#### <number>\" solutions (math_sft, math_train, math_eval)");
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
  flags.Int("sft_sloppy", defaults.sft_sloppy_percent,
            "percent of the SFT answers to arithmetic and general questions that ramble (\"Well, um, so, ...\")");
  flags.Int("pref_confused", defaults.pref_confused_percent,
            "percent of the harmful-compliance preference pairs whose rejected side is the benign look-alike's answer");
  flags.Int("pref_degenerate", defaults.pref_degenerate_percent,
            "percent of the style preference pairs whose rejected side is degenerate instead: empty, cut short, "
            "garbled or another prompt's answer");
  flags.Int("prompts_safety", defaults.prompts_safety_percent,
            "percent of the RL train prompts that are harmful requests or their benign look-alikes (half each)");
  flags.Int("pref_safety", defaults.pref_safety_percent,
            "percent of the train preference pairs that are harmful-compliance or false-refusal pairs (half each)");
  flags.Bool("split_look_alikes_together", defaults.split_look_alikes_together,
             "put a harmful request and its benign look-alike in the same framing in the same split (the benign "
             "prompt's), so that no held-out prompt has its twin in the train split");
  flags.Int("sft_overcautious_topics", defaults.sft_overcautious_topics_percent,
            "percent of the benign look-alike topics (fixed by a hash) on which --sft-overcautious applies");
  flags.Int("max_operand", defaults.max_operand, "arithmetic: + and - use the operands 0..N");
  flags.Int("max_factor", defaults.max_factor, "arithmetic: * uses the factors 0..N");
  flags.Int("math_sft", math_defaults.sft, "--task math: SFT conversations (worked solutions)");
  flags.Int("math_train", math_defaults.train, "--task math: GRPO prompts, train split");
  flags.Int("math_eval", math_defaults.eval, "--task math: prompts, eval split");
  constexpr char kAbout[] =
      "Writes a synthetic data set with train/eval splits: the toy assistant's (arithmetic, safety, style), or "
      "GSM8K-style math word problems.";
  if (auto stop = ParseFlags(flags, args, kAbout, out, err)) return *stop;
  if (flags.GetString("out").empty()) {
    err << "error: --out is required\n" << flags.Usage();
    return 2;
  }
  if (flags.GetString("task") == "math") {
    MathSynthOptions math = math_defaults;
    math.seed = static_cast<uint64_t>(flags.GetInt("seed"));
    math.sft = flags.GetInt("math_sft");
    math.train = flags.GetInt("math_train");
    math.eval = flags.GetInt("math_eval");
    absl::Status s = WriteMathData(flags.GetString("out"), math);
    if (!s.ok()) return ReportError(s, err);
    out << "wrote math word problems to " << flags.GetString("out") << " (seed " << math.seed << ")\n";
    return 0;
  }
  if (flags.GetString("task") != "toy") {
    err << "error: --task must be toy or math, got \"" << flags.GetString("task") << "\"\n";
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
  options.max_operand = static_cast<int32_t>(flags.GetInt("max_operand"));
  options.max_factor = static_cast<int32_t>(flags.GetInt("max_factor"));
  options.sft_overcautious_percent = static_cast<int32_t>(flags.GetInt("sft_overcautious"));
  options.sft_overcautious_topics_percent = static_cast<int32_t>(flags.GetInt("sft_overcautious_topics"));
  options.sft_sloppy_percent = static_cast<int32_t>(flags.GetInt("sft_sloppy"));
  options.pref_confused_percent = static_cast<int32_t>(flags.GetInt("pref_confused"));
  options.pref_degenerate_percent = static_cast<int32_t>(flags.GetInt("pref_degenerate"));
  options.prompts_safety_percent = static_cast<int32_t>(flags.GetInt("prompts_safety"));
  options.pref_safety_percent = static_cast<int32_t>(flags.GetInt("pref_safety"));
  options.split_look_alikes_together = flags.GetBool("split_look_alikes_together");
  absl::Status s = WriteSynthData(flags.GetString("out"), options);
  if (!s.ok()) return ReportError(s, err);
  out << "wrote toy-assistant data to " << flags.GetString("out") << " (seed " << options.seed << ")\n";
  return 0;
}

}  // namespace alignd::cli
