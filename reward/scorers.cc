#include "reward/scorers.h"

#include <cmath>
#include <regex>
#include <set>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/synth.h"

namespace alignd::reward {
namespace {

// A scorer that applies a per-item function.
template <typename F>
class RuleScorer : public Scorer {
 public:
  explicit RuleScorer(F f) : f_(std::move(f)) {}
  absl::StatusOr<std::vector<double>> ScoreBatch(const std::vector<ScoreInput>& inputs) override {
    std::vector<double> out;
    out.reserve(inputs.size());
    for (const ScoreInput& in : inputs) out.push_back(f_(in));
    return out;
  }

 private:
  F f_;
};

template <typename F>
std::unique_ptr<Scorer> MakeRule(F f) {
  return std::make_unique<RuleScorer<F>>(std::move(f));
}

bool NumbersEqual(double a, double b) { return std::abs(a - b) <= 1e-6 * std::max(1.0, std::abs(b)); }

double AnswerMatch(const ScoreInput& in) {
  absl::string_view ref = absl::StripAsciiWhitespace(in.reference);
  if (ref.empty()) return 0;
  int64_t integer;
  if (absl::SimpleAtoi(ref, &integer)) return ArithmeticCorrect(in.response, ref) ? 1 : 0;
  double number;
  if (absl::SimpleAtod(ref, &number) && std::isfinite(number)) {
    static const std::regex* const kNumber = new std::regex(R"(-?\d+(\.\d+)?([eE][-+]?\d+)?)");
    std::optional<double> last;
    for (auto it = std::sregex_iterator(in.response.begin(), in.response.end(), *kNumber);
         it != std::sregex_iterator(); ++it) {
      double v;
      if (absl::SimpleAtod(it->str(), &v)) last = v;
    }
    return last.has_value() && NumbersEqual(*last, number) ? 1 : 0;
  }
  return absl::AsciiStrToLower(absl::StripAsciiWhitespace(in.response)) == absl::AsciiStrToLower(ref) ? 1 : 0;
}

}  // namespace

double RepeatedNgramFraction(absl::string_view text, int64_t n) {
  std::vector<absl::string_view> words = absl::StrSplit(text, absl::ByAnyChar(" \t\n\r"), absl::SkipEmpty());
  if (n < 1 || static_cast<int64_t>(words.size()) < n) return 0;
  std::set<std::string> seen;
  int64_t total = 0, repeated = 0;
  for (size_t i = 0; i + n <= words.size(); ++i) {
    std::string gram = absl::StrJoin(words.begin() + i, words.begin() + i + n, " ");
    ++total;
    if (!seen.insert(std::move(gram)).second) ++repeated;
  }
  return static_cast<double>(repeated) / static_cast<double>(total);
}

std::unique_ptr<Scorer> MakeAnswerMatchScorer() { return MakeRule(AnswerMatch); }

absl::StatusOr<std::unique_ptr<Scorer>> MakeRegexScorer(const std::string& pattern) {
  std::regex re;
  try {
    re = std::regex(pattern, std::regex::ECMAScript);
  } catch (const std::regex_error& e) {
    return absl::InvalidArgumentError(absl::StrCat("regex scorer: bad pattern \"", pattern, "\": ", e.what()));
  }
  return MakeRule([re](const ScoreInput& in) { return std::regex_search(in.response, re) ? 1.0 : 0.0; });
}

absl::StatusOr<std::unique_ptr<Scorer>> MakeLengthPenaltyScorer(int64_t target_bytes) {
  if (target_bytes < 1) {
    return absl::InvalidArgumentError(absl::StrCat("length scorer: target_bytes must be >= 1, got ", target_bytes));
  }
  return MakeRule([target_bytes](const ScoreInput& in) {
    double over = static_cast<double>(in.response.size()) - static_cast<double>(target_bytes);
    return over > 0 ? -over / static_cast<double>(target_bytes) : 0.0;
  });
}

std::unique_ptr<Scorer> MakeRefusalScorer() {
  return MakeRule([](const ScoreInput& in) { return IsRefusal(in.response) ? 1.0 : 0.0; });
}

absl::StatusOr<std::unique_ptr<Scorer>> MakeRepetitionPenaltyScorer(int64_t n) {
  if (n < 1) return absl::InvalidArgumentError(absl::StrCat("repetition scorer: n must be >= 1, got ", n));
  return MakeRule([n](const ScoreInput& in) { return -RepeatedNgramFraction(in.response, n); });
}

}  // namespace alignd::reward
