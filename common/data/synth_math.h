// GSM8K-style math word problems, generated: what examples/sft_math.yaml and examples/grpo_math.yaml train on, and
// the data of user shape that a `rewards` section's answer_match part reads (README, Rewards).
//
// Files (`alignctl data synth --task math`):
//   math_sft.jsonl    {"messages": [user: problem, assistant: solution]}       SFT on worked solutions
//   math_train.jsonl  {"prompt": problem, "answer": solution}                  GRPO prompts
//   math_eval.jsonl   the same, for problems never in the train files
// A solution is a line of working and then "#### <number>", as in GSM8K:
//   "Mia has 12 pears and buys 7 more. How many pears does Mia have now?"
//   -> "12 + 7 = 19.\n#### 19"
// Problems add, take away (never below 0), multiply, or do two of these in a row. The eval split holds the problems
// whose numbers hash into the eval eighth, whatever the seed. Output is a function of the options alone.
#ifndef ALIGND_COMMON_DATA_SYNTH_MATH_H_
#define ALIGND_COMMON_DATA_SYNTH_MATH_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/data/dataset.h"

namespace alignd {

struct MathSynthOptions {
  uint64_t seed = 1;
  int64_t sft = 2000;        // math_sft.jsonl
  int64_t train = 1000;      // math_train.jsonl
  int64_t eval = 200;        // math_eval.jsonl
  int32_t max_operand = 20;  // operands 1..max_operand (factors 2..min(max_operand, 9)); >= 2
};

struct MathSynthData {
  std::vector<Record> sft, train, eval;
};

// INVALID_ARGUMENT for a negative count or max_operand < 2.
absl::StatusOr<MathSynthData> MakeMathData(const MathSynthOptions& options);
// Creates `dir` and writes the three files, then manifest.json, each atomically. MakeMathData's errors, then those of
// writing (a failure part way leaves the files written so far, without manifest.json).
absl::Status WriteMathData(const std::string& dir, const MathSynthOptions& options);

}  // namespace alignd

#endif  // ALIGND_COMMON_DATA_SYNTH_MATH_H_
