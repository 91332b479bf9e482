// The registry of reward part types, and the job spec's `rewards` section that names them.
//
// A job's reward is a list of parts, each a mapping with `type` (required), `name` (default: the type), `weight`
// (default 1) and the type's own keys. Part types (README "Rewards" has an example of each):
//
//   answer_match   the response's answer against a field of the prompt record
//       field: answer              the record's field holding the right answer (required)
//       extract: last_number       how the response's answer is found: last_number, boxed (the last \boxed{...}),
//                                  regex (`pattern`'s first capture group, last match), or whole (the trimmed text)
//       pattern: "#### *(\S+)"     extract: regex only, with at least one capture group
//       reference_extract: whole   the same choices, applied to the field's value (default whole)
//       reference_pattern: ...     reference_extract: regex only
//       compare: numeric           numeric (|a - b| <= tolerance * max(1, |b|); commas and a leading $ are ignored),
//                                  exact, or normalized (case and runs of whitespace ignored). Default numeric.
//       tolerance: 1e-6
//     1 when they match, 0 when not (also when nothing is extracted); does not apply to a record without `field`.
//   format         1 when `pattern` (searched anywhere; anchor it with ^ and $) matches the
//                  response and `must_match` is true (the default), or does not match and `must_match` is false; else 0
//   length         -max(0, characters - target_chars) / target_chars: 0 up to the target, -1 at twice it
//       target_chars: 200
//   repetition     -(fraction of the response's word n-grams that repeat an earlier one); 0 for shorter responses
//       n: 3
//   reward_model   a trained reward model (an HF folder with a score head) on the prompt and response
//       path: runs/rm/final
//       chat_template: chatml      default: the job's data.chat_template
//       clip: 2.0                  clamp the scores to [-clip, clip] (default 0: unclipped), so that answers the
//                                  model overrates are worth weight * clip at most
//   server         an outside reward server: any implementation of alignd.v1.Reward (proto/alignd.proto), in any
//                  language; the part is the total of its answer, or one of its parts
//       address: localhost:50070   host:port
//       deadline_ms: 30000         per call
//       retries: 2                 more tries after UNAVAILABLE, DEADLINE_EXCEEDED or RESOURCE_EXHAUSTED
//       token_file: reward.token   sent as `authorization: Bearer <token>`; default none
//       tls_ca: ca.pem             TLS with this CA (and tls_cert/tls_key for a client certificate); default plaintext
//       part: ""                   one of the server's parts instead of its total
//       max_items: 256             items per call
//   toy.arithmetic, toy.refusal, toy.safety, toy.brevity   the toy assistant world's rules (reward/toy_rules.h)
//
// Patterns are RE2 syntax (Python's `re` without backreferences and lookaround), at most 1024 bytes; RE2 matches in
// time linear in the text, so no pattern in a spec can hang or crash a worker.
//
// Parsing is strict, like the rest of the spec: an unknown type or key, a wrong type or a bad value (a pattern that
// does not compile) is INVALID_ARGUMENT naming the file, line and key (`job.yaml:14: rewards[1].pattern: ...`).
#ifndef ALIGND_REWARD_REGISTRY_H_
#define ALIGND_REWARD_REGISTRY_H_

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "reward/scorer.h"

namespace YAML {
class Node;
}

namespace alignd::reward {

// One part as the spec names it: read and checked, not yet made.
struct RewardPartSpec {
  std::string type;
  std::string name;  // default: the type
  double weight = 1.0;
  std::map<std::string, std::string> params;  // the type's own keys, as written (scalars)
  std::string where;                          // "job.yaml:12: rewards[0]", the start of this part's errors
};

// What making a part may need beyond its keys.
struct ScorerContext {
  std::string chat_template = "chatml";  // reward_model parts' default
  // Loads a reward model (reward/model_scorer.h ModelScorerContext sets it); required by reward_model parts.
  std::function<absl::StatusOr<std::unique_ptr<Scorer>>(const std::string& model_dir, const std::string& chat_template)>
      load_reward_model;
};

// A part's keys, read strictly: every key must be read by a Get, or Finish names it.
class PartParams {
 public:
  // `spec` must outlive this object.
  explicit PartParams(const RewardPartSpec& spec) : spec_(spec) {}
  // Sets *out to the key's value when the part has it, leaving *out (its default) alone when not. INVALID_ARGUMENT
  // naming the key for a value that does not parse (doubles must be finite; bools true/false/1/0/yes/no ...).
  absl::Status Get(const std::string& key, std::string* out);
  absl::Status Get(const std::string& key, double* out);
  absl::Status Get(const std::string& key, int64_t* out);
  absl::Status Get(const std::string& key, bool* out);
  absl::Status Require(const std::string& key, std::string* out);  // Get, and INVALID_ARGUMENT when absent or empty
  // INVALID_ARGUMENT naming the first key that no Get read (the message lists the keys that were read).
  absl::Status Finish() const;
  // INVALID_ARGUMENT "<where>.<key>: <what>", for a make function's own checks.
  absl::Status Error(absl::string_view key, absl::string_view what) const;

 private:
  // The value of `key` (nullptr when absent), noting that it was read.
  const std::string* Read(const std::string& key);
  template <typename T, typename Parse>
  absl::Status GetParsed(const std::string& key, T* out, Parse parse, absl::string_view what);

  const RewardPartSpec& spec_;
  std::vector<std::string> read_;
};

// A part type. `make` reads the part's keys from `params` and returns its scorer; with `context` == nullptr it only
// checks them (nothing is loaded or connected) and returns nullptr.
struct PartType {
  std::string name;
  std::function<absl::StatusOr<std::unique_ptr<Scorer>>(PartParams& params, const ScorerContext* context)> make;
};

// A task metric: the fraction of applicable records that a scorer gives 1, reported by the evaluation (`alignd eval
// --metrics NAME`) and by PPO/GRPO/RLOO steps (`task/NAME`, for batches with an applicable record).
struct TaskMetric {
  std::string name;
  std::function<std::unique_ptr<Scorer>()> make;
};

class Registry {
 public:
  // INVALID_ARGUMENT when the name is taken, empty, or `make` is unset.
  absl::Status Register(PartType type);
  absl::Status RegisterMetric(TaskMetric metric);
  // The registered type or metric, nullptr when none has `name`; valid while the registry lives and is not changed.
  const PartType* Find(absl::string_view name) const;
  const TaskMetric* FindMetric(absl::string_view name) const;
  // The registered names, sorted.
  std::vector<std::string> Names() const;
  std::vector<std::string> MetricNames() const;

 private:
  std::map<std::string, PartType, std::less<>> types_;
  std::map<std::string, TaskMetric, std::less<>> metrics_;
};

// The built-in types and metrics (answer_match, format, length, repetition, reward_model, server, and the toy
// world's), made once on first use and never destroyed; thread-safe to read.
const Registry& DefaultRegistry();

// Reads a `rewards` list (a YAML sequence of mappings) and checks every part: its type is registered, its keys are
// the type's and their values are good, names are unique, weights finite. `path` is the list's key path in errors.
absl::StatusOr<std::vector<RewardPartSpec>> ParseRewardParts(const YAML::Node& list, absl::string_view source,
                                                             absl::string_view path = "rewards",
                                                             const Registry& registry = DefaultRegistry());
// The `rewards` list of a YAML file (a job spec, or a file with only that key). NOT_FOUND when the file cannot be
// opened; INVALID_ARGUMENT for YAML that does not parse, no `rewards` key, or ParseRewardParts' errors.
absl::StatusOr<std::vector<RewardPartSpec>> ReadRewardParts(const std::string& path,
                                                            const Registry& registry = DefaultRegistry());

// Makes the parts' scorers, with their names and weights, in order. INVALID_ARGUMENT for an unknown type, a bad or
// unknown key, or parts ValidateParts refuses; a part's own error otherwise (a reward model that does not load, ...).
absl::StatusOr<std::vector<WeightedScorer>> MakeScorers(const std::vector<RewardPartSpec>& parts,
                                                        const ScorerContext& context,
                                                        const Registry& registry = DefaultRegistry());

// Each named task metric's value per input (nullopt where it does not apply). INVALID_ARGUMENT for a name that is not
// registered; a metric scorer's error as it returns it.
absl::StatusOr<std::map<std::string, std::vector<std::optional<double>>>> ScoreTaskMetrics(
    const std::vector<std::string>& names, const std::vector<ScoreInput>& inputs,
    const Registry& registry = DefaultRegistry());

// The mean of the values that are set, and how many there are; nullopt mean when none is.
struct Mean {
  std::optional<double> mean;
  int64_t n = 0;
};
Mean MeanOfSet(const std::vector<std::optional<double>>& values);

// Registration of the built-in types (reward/rules.cc, reward/server_scorer.cc) and of the toy world's
// (reward/toy_rules.cc); DefaultRegistry calls them.
void RegisterRulePartTypes(Registry& registry);
void RegisterServerPartType(Registry& registry);
void RegisterToyRules(Registry& registry);

}  // namespace alignd::reward

#endif  // ALIGND_REWARD_REGISTRY_H_
