#include "common/data/synth_math.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/base/file_util.h"
#include "common/base/status.h"
#include "common/data/synth_rng.h"
#include "nlohmann/json.hpp"

namespace alignd {
namespace {

struct Problem {
  std::string question, solution;
  int64_t answer = 0;
  std::string key;  // the numbers and operations: what the split hashes
};

const std::vector<std::string>& Names() {
  static const auto* const kNames =
      new std::vector<std::string>{"Mia", "Tom", "Ava", "Sam", "Leo", "Zoe", "Ben", "Ivy", "Max", "Eva"};
  return *kNames;
}

const std::vector<std::string>& Items() {
  static const auto* const kItems =
      new std::vector<std::string>{"apples", "pears", "books", "stamps", "coins", "shells", "pens", "cards"};
  return *kItems;
}

Problem Draw(SynthRng& rng, int32_t max_operand) {
  const std::string& name = rng.Pick(Names());
  const std::string& item = rng.Pick(Items());
  auto operand = [&] { return static_cast<int64_t>(1 + rng.Below(static_cast<uint64_t>(max_operand))); };
  const int64_t max_factor = std::min<int64_t>(max_operand, 9);
  auto factor = [&] { return static_cast<int64_t>(2 + rng.Below(static_cast<uint64_t>(max_factor - 1))); };
  Problem p;
  switch (rng.Below(4)) {
    case 0: {
      const int64_t a = operand(), b = operand();
      p.answer = a + b;
      p.question = absl::StrCat(name, " has ", a, " ", item, " and buys ", b, " more. How many ", item, " does ", name,
                                " have now?");
      p.solution = absl::StrCat(a, " + ", b, " = ", p.answer, ".");
      p.key = absl::StrCat(a, "+", b);
      break;
    }
    case 1: {
      int64_t a = operand(), b = operand();
      if (a < b) std::swap(a, b);
      p.answer = a - b;
      p.question = absl::StrCat(name, " had ", a, " ", item, " and gave ", b, " away. How many ", item, " are left?");
      p.solution = absl::StrCat(a, " - ", b, " = ", p.answer, ".");
      p.key = absl::StrCat(a, "-", b);
      break;
    }
    case 2: {
      const int64_t a = factor(), b = factor();
      p.answer = a * b;
      p.question = absl::StrCat(name, " buys ", a, " boxes of ", b, " ", item, ". How many ", item, " is that?");
      p.solution = absl::StrCat(a, " * ", b, " = ", p.answer, ".");
      p.key = absl::StrCat(a, "*", b);
      break;
    }
    default: {
      const int64_t a = operand(), b = operand();
      const int64_t c = 1 + static_cast<int64_t>(rng.Below(static_cast<uint64_t>(a + b)));
      const int64_t s = a + b;
      p.answer = s - c;
      p.question =
          absl::StrCat(name, " has ", a, " ", item, ", buys ", b, " more and gives ", c, " away. How many are left?");
      p.solution = absl::StrCat(a, " + ", b, " = ", s, ". ", s, " - ", c, " = ", p.answer, ".");
      p.key = absl::StrCat(a, "+", b, "-", c);
      break;
    }
  }
  p.solution = absl::StrCat(p.solution, "\n#### ", p.answer);
  return p;
}

// FNV-1a: the split must not depend on std::hash's implementation.
bool InEvalSplit(const std::string& key) {
  uint64_t h = 1469598103934665603ULL;
  for (unsigned char c : key) h = (h ^ c) * 1099511628211ULL;
  return h % 8 == 0;
}

// `n` problems of one split.
std::vector<Problem> DrawSplit(SynthRng& rng, const MathSynthOptions& o, int64_t n, bool eval) {
  std::vector<Problem> out;
  while (static_cast<int64_t>(out.size()) < n) {
    Problem p = Draw(rng, o.max_operand);
    if (InEvalSplit(p.key) == eval) out.push_back(std::move(p));
  }
  return out;
}

Record PromptRecord(const Problem& p) {
  Record r;
  r.prompt = Turns::Text(p.question);
  r.extra["answer"] = p.solution;
  return r;
}

}  // namespace

absl::StatusOr<MathSynthData> MakeMathData(const MathSynthOptions& o) {
  if (o.sft < 0 || o.train < 0 || o.eval < 0) return absl::InvalidArgumentError("math synth: counts must be >= 0");
  if (o.max_operand < 2) return absl::InvalidArgumentError("math synth: max_operand must be >= 2");
  SynthRng rng(o.seed);
  MathSynthData d;
  for (const Problem& p : DrawSplit(rng, o, o.sft, /*eval=*/false)) {
    Record r;
    r.messages = {{"user", p.question}, {"assistant", p.solution}};
    d.sft.push_back(std::move(r));
  }
  for (const Problem& p : DrawSplit(rng, o, o.train, false)) d.train.push_back(PromptRecord(p));
  for (const Problem& p : DrawSplit(rng, o, o.eval, true)) d.eval.push_back(PromptRecord(p));
  return d;
}

absl::Status WriteMathData(const std::string& dir, const MathSynthOptions& o) {
  ASSIGN_OR_RETURN(MathSynthData d, MakeMathData(o));
  RETURN_IF_ERROR(MakeDirs(dir));
  RETURN_IF_ERROR(WriteJsonl(JoinPath(dir, "math_sft.jsonl"), DatasetSchema::kMessages, d.sft));
  RETURN_IF_ERROR(WriteJsonl(JoinPath(dir, "math_train.jsonl"), DatasetSchema::kPrompt, d.train));
  RETURN_IF_ERROR(WriteJsonl(JoinPath(dir, "math_eval.jsonl"), DatasetSchema::kPrompt, d.eval));
  nlohmann::ordered_json manifest;
  manifest["generator"] = "alignd synth --task math";
  manifest["version"] = 1;
  manifest["seed"] = o.seed;
  manifest["options"] = {{"max_operand", o.max_operand}};
  manifest["files"] = {{"math_sft.jsonl", {{"schema", "messages"}, {"records", d.sft.size()}}},
                       {"math_train.jsonl", {{"schema", "prompt"}, {"records", d.train.size()}}},
                       {"math_eval.jsonl", {{"schema", "prompt"}, {"records", d.eval.size()}}}};
  return WriteFileAtomic(JoinPath(dir, "manifest.json"), manifest.dump(2) + "\n");
}

}  // namespace alignd
