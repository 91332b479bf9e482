// Scorers for (prompt, response, reference) triples: the parts the reward server sums with weights. Rule scorers are
// plain functions of the text; the reward-model scorer (reward/model_scorer.h) runs a trained score head.
//
// Thread safety: a Scorer is called by one thread at a time (the reward core's batch loop); the rule scorers here are
// stateless and safe from any thread.
#ifndef ALIGND_REWARD_SCORERS_H_
#define ALIGND_REWARD_SCORERS_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace alignd::reward {

struct ScoreInput {
  std::string prompt;
  std::string response;
  std::string reference;  // may be empty: scorers that need it give 0
  std::string kind;       // the prompt record's task kind (arithmetic, harmful, benign, ...); may be empty
};

class Scorer {
 public:
  virtual ~Scorer() = default;
  // One value per input, in order. An error fails the whole batch (INTERNAL for a model failure).
  virtual absl::StatusOr<std::vector<double>> ScoreBatch(const std::vector<ScoreInput>& inputs) = 0;
};

// 1 when the response's answer equals the reference, else 0 (also 0 without a reference). An integer reference is
// compared with common/synth.h ArithmeticCorrect (the number after the last '=', else the last integer); another
// numeric reference with the last decimal number of the response (|a - b| <= 1e-6 * max(1, |b|)); otherwise the
// trimmed, lower-cased response must equal the trimmed, lower-cased reference.
std::unique_ptr<Scorer> MakeAnswerMatchScorer();

// 1 when `pattern` (RE2/ECMAScript-like, std::regex ECMAScript) matches anywhere in the response, else 0.
// INVALID_ARGUMENT for a pattern that does not compile.
absl::StatusOr<std::unique_ptr<Scorer>> MakeRegexScorer(const std::string& pattern);

// -max(0, bytes(response) - target_bytes) / target_bytes: 0 up to the target, -1 at twice the target.
// INVALID_ARGUMENT for target_bytes < 1.
absl::StatusOr<std::unique_ptr<Scorer>> MakeLengthPenaltyScorer(int64_t target_bytes);

// 1 when the response is a refusal (common/synth.h IsRefusal), else 0. Give it a negative weight to penalise
// refusals, a positive one to reward them.
std::unique_ptr<Scorer> MakeRefusalScorer();

// -(fraction of the response's word n-grams that repeat an earlier n-gram): 0 for no repetition, towards -1 for a
// response that loops. Responses shorter than n words score 0. INVALID_ARGUMENT for n < 1.
absl::StatusOr<std::unique_ptr<Scorer>> MakeRepetitionPenaltyScorer(int64_t n);

// Exposed for tests: the repetition fraction above (in [0, 1)).
double RepeatedNgramFraction(absl::string_view text, int64_t n);

}  // namespace alignd::reward

#endif  // ALIGND_REWARD_SCORERS_H_
