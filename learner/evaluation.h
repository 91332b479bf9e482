// Generation metrics of a policy on prompt records: each prompt is answered once with greedy decoding by the rollout
// engine, and the answers are scored by the same reward parts and task metrics the trainers use (reward/registry.h).
// `alignd eval` is its command-line front end.
//
// Metrics (names as they appear in GenerationEvalResult::metrics and in `alignd eval`'s JSON):
//   every task metric of the reward registry (the toy world's accuracy, refusal_rate and false_refusal_rate,
//   reward/toy_rules.h): the mean over the prompts the metric applies to
//   reward_mean         mean over prompts of `reward`'s total (a job's `rewards`, as PPO trains on); the mean of each
//                       part over the prompts it applies to is in reward_parts
//   kl_to_ref           mean over prompts of sum_t (log p_policy - log p_reference) over the policy's own completion
//                       tokens. A Monte-Carlo KL(policy || reference) estimate would need sampled completions; greedy
//                       ones make it a proxy (the log-ratio on the policy's most likely answers), and it can be < 0.
//   win_rate            the reference model answers too (greedily); `judge` scores both answers; win 1, tie 0.5,
//                       loss 0, mean over prompts
//   repetition          mean over completions of the repeated word-3-gram fraction (reward::RepeatedNgramFraction)
// A task metric that applies to no prompt is nullopt (null in JSON) rather than a made-up 0.
//
// Not thread-safe with respect to the models: it puts them in eval mode and runs them; do not train them meanwhile.
#ifndef ALIGND_LEARNER_EVALUATION_H_
#define ALIGND_LEARNER_EVALUATION_H_

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/data/dataset.h"
#include "common/model/transformer.h"
#include "common/text/tokenizer.h"
#include "nlohmann/json.hpp"
#include "reward/scorer.h"

namespace alignd::learner {

// Every generation metric, in output order.
// Whether `name` is one of them.
const std::vector<std::string>& GenerationMetricNames();
bool IsGenerationMetric(absl::string_view name);

// The models and scorers the metrics need; the caller keeps ownership. Only `policy` and `tokenizer` are always
// required; each other member is required by the metrics named beside it and ignored otherwise.
struct GenerationEvalModels {
  CausalLM policy{nullptr};                    // a language-model head
  std::shared_ptr<const Tokenizer> tokenizer;  // the policy's; the reference must share its vocabulary
  CausalLM reference{nullptr};                 // kl_to_ref, win_rate; may be `policy` itself (see below)
  reward::Reward* reward = nullptr;            // reward_mean: the total is the reward
  reward::Reward* judge = nullptr;             // win_rate: the total is the judge's score (e.g. a reward model alone)
};

// The reference's greedy answers to the same records, and the judge's scores of them, from an earlier evaluation of
// the reference model as the policy with the same options and judge (alignd eval --cache): win_rate takes them
// instead of generating and judging them again. One entry per record, in order.
struct ReferenceAnswers {
  std::vector<std::string> completions;
  std::vector<double> judge_scores;
};

// When `reference` is the same module as `policy` (one model evaluated against itself), the reference's answers,
// log-probs and judge scores are the policy's, computed once: kl_to_ref is 0 and win_rate 0.5, as a second identical
// pass would give.
struct GenerationEvalOptions {
  std::vector<std::string> metrics;      // non-empty subset of GenerationMetricNames()
  std::string chat_template = "chatml";  // prompts are rendered with it (rollout::Engine::EncodePrompt)
  int64_t max_new_tokens = 32;           // greedy decoding (temperature 0), the template's default stop tokens
  int64_t batch_size = 32;               // rows decoded together, and sequences per forward pass for kl_to_ref
  std::optional<ReferenceAnswers> reference_answers;  // win_rate: the reference's side, if already known
};

// One prompt's answer and its scores; a member is set only when a requested metric needs it.
struct PromptEval {
  std::map<std::string, std::string> fields;  // the record's fields besides the prompt (reward::ScoreInput)
  std::string completion;                     // the policy's greedy answer
  int64_t completion_tokens = 0;
  std::map<std::string, double> task;                        // each requested task metric that applies to this record
  std::optional<double> reward;                              // reward_mean
  std::map<std::string, double> reward_parts;                // reward_mean: the parts that apply, unweighted
  std::optional<double> kl;                                  // kl_to_ref
  std::optional<double> repetition;                          // repetition
  std::optional<std::string> reference_completion;           // win_rate: the reference model's greedy answer
  std::optional<double> judge_policy, judge_reference, win;  // win_rate

  nlohmann::json ToJson() const;  // the set members, by these names
};

struct GenerationEvalResult {
  std::map<std::string, std::optional<double>> metrics;  // the requested metrics only
  int64_t n_prompts = 0;
  std::map<std::string, int64_t> n_scored;     // per requested task metric: the prompts it applies to
  std::map<std::string, double> reward_parts;  // reward_mean: each part's mean over the prompts it applies to
  std::vector<PromptEval> prompts;             // one per input record, in order
};

// Answers every record's `prompt` and computes options.metrics. INVALID_ARGUMENT naming the field for: no records,
// an empty or unknown metric list, max_new_tokens or batch_size < 1, a missing policy or tokenizer, a metric whose
// model or scorer is missing ("reference: kl_to_ref needs a reference model"), or a reference whose vocabulary
// differs from the policy's; the engine's errors (e.g. a prompt too long for the context) pass through; INTERNAL
// when LibTorch fails. Runs without gradients.
absl::StatusOr<GenerationEvalResult> EvaluateGeneration(const std::vector<Record>& records,
                                                        const GenerationEvalModels& models,
                                                        const GenerationEvalOptions& options);

}  // namespace alignd::learner

#endif  // ALIGND_LEARNER_EVALUATION_H_
