// The one reward interface. A Scorer computes one part of a reward for (prompt record, response) pairs; a Reward is
// the weighted sum of parts that a job trains on, computed in-process (MakeLocalReward) or by the job's reward
// servers (learner/remote.h), which run the same parts. Scorers are made from a job spec's `rewards` section by the
// registry (reward/registry.h).
//
// Thread safety: a Scorer is called by one thread at a time (the learner's loop, or the reward core's batch thread).
#ifndef ALIGND_REWARD_SCORER_H_
#define ALIGND_REWARD_SCORER_H_

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace alignd {
struct Record;
}

namespace alignd::reward {

// One response to score, with the prompt record it answers.
struct ScoreInput {
  std::string prompt;    // the prompt's text (a chat prompt's first message)
  std::string response;  // the policy's answer
  // The prompt record's other fields, by name (for example "answer", or the toy data's "kind" and "reference"):
  // strings as they are, other JSON values in JSON spelling (42, true, [1,2]).
  std::map<std::string, std::string> fields;

  // fields[key], or nullopt when the record has no such field.
  std::optional<absl::string_view> Field(absl::string_view key) const;
};

// The input for `response` to `record` (a prompt record): its prompt's first message, and its other keys as fields.
ScoreInput InputFor(const Record& record, std::string response);

class Scorer {
 public:
  virtual ~Scorer() = default;
  // One value per input, in order; std::nullopt where the part does not apply to that record (an answer match on a
  // record without the answer field, a toy rule on a record of another kind). A part that does not apply adds 0 to
  // the total and is left out of the part's mean. An error fails the whole batch.
  virtual absl::StatusOr<std::vector<std::optional<double>>> ScoreBatch(const std::vector<ScoreInput>& inputs) = 0;
};

struct WeightedScorer {
  std::string name;  // the part's name, reported as the key of its value; unique, non-empty
  double weight = 1.0;
  std::unique_ptr<Scorer> scorer;
};

struct ScoreResult {
  double total = 0;                     // sum of weight * part over the parts that apply
  std::map<std::string, double> parts;  // each applying part's unweighted value, by name
};

// Runs every part over `inputs` and sums them with their weights. A scorer's error is returned with its part's name;
// a scorer that answers the wrong number of values is INTERNAL.
absl::StatusOr<std::vector<ScoreResult>> ScoreWeighted(std::vector<WeightedScorer>& parts,
                                                       const std::vector<ScoreInput>& inputs);

// Each part's mean over the results it appears in (the inputs it applies to), by name.
std::map<std::string, double> PartMeans(const std::vector<ScoreResult>& results);

// A job's whole reward: the weighted parts, wherever they run.
class Reward {
 public:
  virtual ~Reward() = default;
  // One result per input, in order. Errors: a part's (local), or the reward servers' status (learner/remote.h).
  virtual absl::StatusOr<std::vector<ScoreResult>> Score(const std::vector<ScoreInput>& inputs) = 0;
};

// The parts, run in this process. INVALID_ARGUMENT for no parts, an empty or repeated name, a non-finite weight or
// a null scorer.
absl::StatusOr<std::unique_ptr<Reward>> MakeLocalReward(std::vector<WeightedScorer> parts);

// Checks the parts as MakeLocalReward and the reward core do.
absl::Status ValidateParts(const std::vector<WeightedScorer>& parts);

}  // namespace alignd::reward

#endif  // ALIGND_REWARD_SCORER_H_
