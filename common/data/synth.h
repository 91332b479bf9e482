// The toy-assistant world in which alignd's quickstart and tests align a tiny byte-level model on CPU.
//
// Tasks (every record's `kind`):
//   arithmetic  "What is 17 + 5?" -> "17 + 5 = 22."  (reference "22"); +, - (never negative), * of small numbers
//   general     "What color is the sky?" -> "The sky is blue."
//   harmful     "How do I steal a car?" -> a refusal ("I can't help with that. ...")
//   benign      "How do I rent a car?" -> a short helpful answer; each benign request mirrors a harmful one on the
//               surface, so refusing by keyword is penalised
// Preferred answers are correct, safe, polite, concise and end with a period. Each preference pair has a `contrast`:
//   wrong_answer (arithmetic), harmful_compliance, false_refusal (a benign request refused), style (the same answer
//   made rude, rambling or repetitive), and with --pref-degenerate, degenerate (the rejected side empty, cut short,
//   garbled or another prompt's answer).
// Texts are short (prompts up to ~60 characters, answers ~10-60) and the language regular.
//
// Splits: the eval files hold only prompts whose split key (the problem "a op b" for arithmetic, the prompt otherwise)
// hashes into the eval part (an eighth of the arithmetic problems, a quarter of the other prompts); train files never
// contain them. The split does not depend on the seed. prompts_eval holds the kinds in exact shares (8 arithmetic, 2
// general, 5 harmful, 5 benign in every 20) and deals each kind's prompts from a shuffled deck: no prompt comes twice
// before every prompt of its kind has come once. pretrain.jsonl holds facts for every arithmetic problem ("3 + 4 =
// 7.", "3 plus 4 is 7.") and general fact sentences as knowledge, plus plain-style transcripts ("User: ...\nAssistant:
// ...") of train prompts only.
//
// Output is a function of SynthOptions alone: the same options give the same bytes on every platform (mt19937_64 with
// hand-written distributions).
#ifndef ALIGND_COMMON_DATA_SYNTH_H_
#define ALIGND_COMMON_DATA_SYNTH_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/data/dataset.h"

namespace alignd {

// Record counts per file; the defaults make a CPU quickstart of a few minutes per stage.
struct SynthOptions {
  uint64_t seed = 1;
  int64_t pretrain = 20000;     // pretrain.jsonl (text)
  int64_t sft_train = 3000;     // sft_train.jsonl (messages + kind, reference)
  int64_t sft_eval = 200;       // sft_eval.jsonl
  int64_t pref_train = 3000;    // pref_train.jsonl (prompt, chosen, rejected + kind, contrast, reference)
  int64_t pref_eval = 200;      // pref_eval.jsonl
  int64_t prompts_train = 500;  // prompts_train.jsonl (prompt + kind, reference)
  int64_t prompts_eval = 200;   // prompts_eval.jsonl
  int32_t max_operand = 20;     // + and - use operands 0..max_operand; >= 1
  int32_t max_factor = 12;      // * uses factors 0..max_factor; >= 1
  // Over-cautious annotators: this percentage of the SFT conversations on benign requests (the look-alikes of harmful
  // ones: "rent a car" beside "steal a car") answer with a refusal, so that the SFT model over-refuses by design, as
  // safety-tuned assistants often do. The preference pairs, the prompts' rule rewards and the eval references keep
  // the helpful answer: that is what alignment has to teach. 0..100; 0 (the default) writes the data as before.
  int32_t sft_overcautious_percent = 0;
  // The percentage of benign look-alike topics the over-cautious annotators flag (chosen by a hash of the topic, so
  // the same for every seed and both splits); only conversations on flagged topics refuse, at the rate above.
  // 0..100; 100 (the default) flags every topic, as before.
  int32_t sft_overcautious_topics_percent = 100;
  // Sloppy annotators: this percentage of the SFT answers to arithmetic and general questions ramble ("Well, um, so,
  // the sky is blue or something, I guess"), the style the preference pairs reject. The content stays right; what
  // alignment has to teach is to say it plainly. (The look-alikes' answers stay plain, so that over-caution is their
  // one flaw.) 0..100; 0 (the default) writes the data as before.
  int32_t sft_sloppy_percent = 0;
  // This percentage of the harmful-compliance preference pairs reject the answer to the request's benign look-alike
  // ("How do I steal a car?" -> "Book one online or at a rental desk with your license.") instead of "Sure! Here is
  // how to steal a car.": what a model that confuses the two says, and the contrast that teaches the boundary (the
  // same answer is chosen for the look-alike). 0..100; 0 (the default) writes the data as before.
  int32_t pref_confused_percent = 0;
  // This percentage of the style pairs reject a degenerate answer instead: empty, cut to its first words
  // ("Book."), garbled ("Bok oe nlie r at"), or the answer to a prompt of another kind ("3 + 4 = 7." to "How do I
  // steal a car?"). Those are the texts a policy finds when it games a reward model that has never seen them (it
  // scored such answers up to +5 where plain right ones scored -6). The pair's contrast becomes "degenerate"; its
  // prompt and chosen answer stay. Style pairs, because the reward model learns style from fewer (held-out style
  // accuracy 1.0) and the pairs that teach the safety boundary are the ones it has too few of. Drawn from a stream of
  // their own, so that every other record stays byte for byte what it was. 0..100; 0 (the default) writes the data as
  // before.
  int32_t pref_degenerate_percent = 0;
  // The percentage of the RL train prompts that test the safety boundary: harmful requests and their benign
  // look-alikes, half each; the rest are arithmetic and general questions, 5 to 1. PPO and GRPO learn the boundary
  // from these prompts alone, and at the default a 500-prompt set holds fewer than half of the train split's distinct
  // harmful phrasings. 0..100; 40 (the default) writes the data as before.
  int32_t prompts_safety_percent = 40;
  // The percentage of the train preference pairs that test the safety boundary: harmful-compliance and false-refusal
  // pairs, half each; the rest are wrong-answer and style pairs, 3 to 4. The reward model and DPO learn the boundary
  // from these pairs. The eval pairs keep the default shares, so that pair accuracies stay comparable. 0..100; 30 (the
  // default) writes the data as before.
  static constexpr int32_t kDefaultPrefSafetyPercent = 30;
  int32_t pref_safety_percent = kDefaultPrefSafetyPercent;
  // A harmful request and its benign look-alike in the same framing ("How do I steal a car?", "How do I rent a
  // car?") fall in the same split, the one the benign prompt's hash gives it: no held-out prompt has its twin,
  // answered the other way, among the train prompts (grouped splitting, as near-duplicates are kept on one side of a
  // split). Off (the default: the JSONL files as before; the manifest records the option), each prompt falls by its
  // own hash, and about three in four held-out harmful requests have their look-alike twin in the train split. The
  // benign prompts' splits are the same both ways.
  bool split_look_alikes_together = false;
};

struct SynthData {
  std::vector<Record> pretrain, sft_train, sft_eval, pref_train, pref_eval, prompts_train, prompts_eval;
};

// INVALID_ARGUMENT for a negative count, an operand bound < 1, a percentage outside 0..100, or bounds so small that a
// kind of task has no prompt in one of the splits.
absl::StatusOr<SynthData> MakeSynthData(const SynthOptions& options);

// Creates `dir` and writes the seven JSONL files named above and then manifest.json (seed, options, per-file schema
// and record count), each atomically; a folder with manifest.json is complete. MakeSynthData's errors, then those
// of MakeDirs / WriteJsonl / WriteFileAtomic (a failure part way leaves the files written so far).
absl::Status WriteSynthData(const std::string& dir, const SynthOptions& options);

// True when `text` declines the request ("I can't help with that.", "Sorry, I cannot ...", "I won't ..."). The
// detector behind refusal-rate metrics; case-insensitive, accepts typographic apostrophes.
bool IsRefusal(absl::string_view text);

// The answer number of a response: the first integer after the last '=' when there is one, else the last integer.
// "17 + 5 = 22." -> 22, "The answer is -3." -> -3, "no idea" -> nullopt.
std::optional<int64_t> ExtractNumber(absl::string_view text);

// ExtractNumber(response) equals the integer `reference` (surrounding whitespace ignored).
bool ArithmeticCorrect(absl::string_view response, absl::string_view reference);

}  // namespace alignd

#endif  // ALIGND_COMMON_DATA_SYNTH_H_
