#include "reward/rules.h"

#include <glog/logging.h>
#include <re2/re2.h>

#include <algorithm>
#include <cmath>
#include <iterator>
#include <set>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "common/base/status.h"
#include "reward/registry.h"

namespace alignd::reward {

namespace {

// Patterns are users' (a job spec's): RE2 matches in time linear in the text, and bounds the memory a pattern takes,
// so no pattern can hang or crash a worker. Longer patterns are refused before compiling.
constexpr size_t kMaxPatternBytes = 1024;

std::optional<std::string> LastGroup(const std::string& text, const RE2& re) {
  std::optional<std::string> last;
  re2::StringPiece match[2];
  const int groups = std::min(2, re.NumberOfCapturingGroups() + 1);
  size_t pos = 0;
  while (pos <= text.size() && re.Match(text, pos, text.size(), RE2::UNANCHORED, match, groups)) {
    last = groups > 1 && match[1].data() != nullptr ? std::string(match[1]) : std::string(match[0]);
    const size_t start = static_cast<size_t>(match[0].data() - text.data());
    pos = match[0].empty() ? start + 1 : start + match[0].size();
  }
  return last;
}

absl::StatusOr<std::shared_ptr<const RE2>> Compile(const std::string& pattern) {
  if (pattern.size() > kMaxPatternBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("is ", pattern.size(), " bytes; patterns are limited to ", kMaxPatternBytes));
  }
  RE2::Options options;
  options.set_log_errors(false);
  options.set_max_mem(8 << 20);
  auto re = std::make_shared<const RE2>(pattern, options);
  if (!re->ok()) return absl::InvalidArgumentError(absl::StrCat("\"", pattern, "\" does not compile: ", re->error()));
  return re;
}

}  // namespace

std::optional<std::string> LastNumber(absl::string_view text) {
  static const RE2* const kNumber =
      new RE2(R"(([-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?|[-+]?\.\d+))");
  return LastGroup(std::string(text), *kNumber);
}

std::optional<std::string> LastBoxed(absl::string_view text) {
  const size_t start = text.rfind("\\boxed{");
  if (start == absl::string_view::npos) return std::nullopt;
  const size_t open = start + 7;
  int depth = 1;
  for (size_t i = open; i < text.size(); ++i) {
    if (text[i] == '{') ++depth;
    if (text[i] == '}' && --depth == 0) return std::string(text.substr(open, i - open));
  }
  return std::nullopt;
}

absl::StatusOr<std::optional<std::string>> LastRegexGroup(const std::string& text, const std::string& pattern) {
  ASSIGN_OR_RETURN(std::shared_ptr<const RE2> re, Compile(pattern));
  if (re->NumberOfCapturingGroups() < 1) return absl::InvalidArgumentError("needs a capture group");
  return LastGroup(text, *re);
}

std::optional<double> ParseNumber(absl::string_view text) {
  std::string s = absl::StrReplaceAll(absl::StripAsciiWhitespace(text), {{",", ""}});
  absl::string_view v = s;
  if (absl::ConsumePrefix(&v, "$")) v = absl::StripLeadingAsciiWhitespace(v);
  double out;
  if (!absl::SimpleAtod(v, &out) || !std::isfinite(out)) return std::nullopt;
  return out;
}

std::string NormalizeText(absl::string_view text) {
  std::vector<absl::string_view> words = absl::StrSplit(text, absl::ByAnyChar(" \t\n\r\f\v"), absl::SkipEmpty());
  return absl::AsciiStrToLower(absl::StrJoin(words, " "));
}

double RepeatedNgramFraction(absl::string_view text, int64_t n) {
  std::vector<absl::string_view> words = absl::StrSplit(text, absl::ByAnyChar(" \t\n\r"), absl::SkipEmpty());
  if (n < 1 || static_cast<int64_t>(words.size()) < n) return 0;
  std::set<std::string> seen;
  int64_t total = 0, repeated = 0;
  for (size_t i = 0; i + n <= words.size(); ++i) {
    ++total;
    if (!seen.insert(absl::StrJoin(words.begin() + i, words.begin() + i + n, " ")).second) ++repeated;
  }
  return static_cast<double>(repeated) / static_cast<double>(total);
}

namespace {

class ItemScorer : public Scorer {
 public:
  explicit ItemScorer(std::function<std::optional<double>(const ScoreInput&)> f) : f_(std::move(f)) {}
  absl::StatusOr<std::vector<std::optional<double>>> ScoreBatch(const std::vector<ScoreInput>& inputs) override {
    std::vector<std::optional<double>> out;
    out.reserve(inputs.size());
    for (const ScoreInput& in : inputs) out.push_back(f_(in));
    return out;
  }

 private:
  std::function<std::optional<double>(const ScoreInput&)> f_;
};

}  // namespace

std::unique_ptr<Scorer> MakeItemScorer(std::function<std::optional<double>(const ScoreInput&)> f) {
  return std::make_unique<ItemScorer>(std::move(f));
}

namespace {

// The scorer of `f`, or (checking only, without a context) none.
template <typename F>
absl::StatusOr<std::unique_ptr<Scorer>> Rule(F f, const ScorerContext* context) {
  if (context == nullptr) return std::unique_ptr<Scorer>();
  return MakeItemScorer(std::move(f));
}

absl::StatusOr<std::shared_ptr<const RE2>> CompileRegex(PartParams& params, const std::string& key,
                                                        const std::string& pattern, bool needs_group) {
  absl::StatusOr<std::shared_ptr<const RE2>> re = Compile(pattern);
  if (!re.ok()) return params.Error(key, re.status().message());
  if (needs_group && (*re)->NumberOfCapturingGroups() < 1) {
    return params.Error(key, absl::StrCat("\"", pattern, "\" needs a capture group, ( ), around the answer"));
  }
  return re;
}

// How an answer is taken out of a text: `extract` and, for regex, `pattern`.
struct Extractor {
  std::string method = "whole";
  std::shared_ptr<const RE2> pattern;

  std::optional<std::string> operator()(const std::string& text) const {
    if (method == "last_number") return LastNumber(text);
    if (method == "boxed") return LastBoxed(text);
    if (method == "regex") return LastGroup(text, *pattern);
    return std::string(absl::StripAsciiWhitespace(text));
  }
};

absl::StatusOr<Extractor> ReadExtractor(PartParams& params, const std::string& method_key,
                                        const std::string& pattern_key, const std::string& default_method) {
  Extractor e;
  e.method = default_method;
  std::string pattern;
  RETURN_IF_ERROR(params.Get(method_key, &e.method));
  RETURN_IF_ERROR(params.Get(pattern_key, &pattern));
  constexpr absl::string_view kMethods[] = {"last_number", "boxed", "regex", "whole"};
  if (std::find(std::begin(kMethods), std::end(kMethods), e.method) == std::end(kMethods)) {
    return params.Error(method_key, absl::StrCat("\"", e.method, "\" is not one of last_number, boxed, regex, whole"));
  }
  if (e.method == "regex") {
    if (pattern.empty()) return params.Error(pattern_key, absl::StrCat("is required by ", method_key, ": regex"));
    ASSIGN_OR_RETURN(e.pattern, CompileRegex(params, pattern_key, pattern, /*needs_group=*/true));
  } else if (!pattern.empty()) {
    return params.Error(pattern_key, absl::StrCat("is read only with ", method_key, ": regex"));
  }
  return e;
}

absl::StatusOr<std::unique_ptr<Scorer>> MakeAnswerMatch(PartParams& params, const ScorerContext* context) {
  std::string field, compare = "numeric";
  double tolerance = 1e-6;
  RETURN_IF_ERROR(params.Require("field", &field));
  ASSIGN_OR_RETURN(Extractor extract, ReadExtractor(params, "extract", "pattern", "last_number"));
  ASSIGN_OR_RETURN(Extractor reference, ReadExtractor(params, "reference_extract", "reference_pattern", "whole"));
  RETURN_IF_ERROR(params.Get("compare", &compare));
  RETURN_IF_ERROR(params.Get("tolerance", &tolerance));
  if (compare != "numeric" && compare != "exact" && compare != "normalized") {
    return params.Error("compare", absl::StrCat("\"", compare, "\" is not one of numeric, exact, normalized"));
  }
  if (tolerance < 0) return params.Error("tolerance", absl::StrCat("must be >= 0, got ", tolerance));
  return Rule(
      [=](const ScoreInput& in) -> std::optional<double> {
        std::optional<absl::string_view> value = in.Field(field);
        if (!value.has_value()) return std::nullopt;
        std::optional<std::string> want = reference(std::string(*value));
        std::optional<std::string> got = extract(in.response);
        if (!want.has_value() || !got.has_value()) return 0.0;
        if (compare == "exact") return *got == *want ? 1.0 : 0.0;
        if (compare == "normalized") return NormalizeText(*got) == NormalizeText(*want) ? 1.0 : 0.0;
        std::optional<double> a = ParseNumber(*got), b = ParseNumber(*want);
        if (!a.has_value() || !b.has_value()) return 0.0;
        return std::abs(*a - *b) <= tolerance * std::max(1.0, std::abs(*b)) ? 1.0 : 0.0;
      },
      context);
}

absl::StatusOr<std::unique_ptr<Scorer>> MakeFormat(PartParams& params, const ScorerContext* context) {
  std::string pattern;
  bool must_match = true;
  RETURN_IF_ERROR(params.Require("pattern", &pattern));
  RETURN_IF_ERROR(params.Get("must_match", &must_match));
  ASSIGN_OR_RETURN(std::shared_ptr<const RE2> re, CompileRegex(params, "pattern", pattern, /*needs_group=*/false));
  return Rule(
      [re, must_match](const ScoreInput& in) -> std::optional<double> {
        return RE2::PartialMatch(in.response, *re) == must_match ? 1.0 : 0.0;
      },
      context);
}

absl::StatusOr<std::unique_ptr<Scorer>> MakeLength(PartParams& params, const ScorerContext* context) {
  int64_t target = 0;
  RETURN_IF_ERROR(params.Get("target_chars", &target));
  if (target < 1) return params.Error("target_chars", absl::StrCat("must be >= 1, got ", target));
  return Rule(
      [target](const ScoreInput& in) -> std::optional<double> {
        const double over = static_cast<double>(in.response.size()) - static_cast<double>(target);
        return over > 0 ? -over / static_cast<double>(target) : 0.0;
      },
      context);
}

absl::StatusOr<std::unique_ptr<Scorer>> MakeRepetition(PartParams& params, const ScorerContext* context) {
  int64_t n = 3;
  RETURN_IF_ERROR(params.Get("n", &n));
  if (n < 1) return params.Error("n", absl::StrCat("must be >= 1, got ", n));
  return Rule([n](const ScoreInput& in) -> std::optional<double> { return -RepeatedNgramFraction(in.response, n); },
              context);
}

// A scorer's values clamped to [-bound, bound]: a reward model's scores, bounded so that the policy cannot buy more
// from it than `bound` (times the part's weight) by drifting to answers the model overrates.
class ClippedScorer : public Scorer {
 public:
  ClippedScorer(std::unique_ptr<Scorer> inner, double bound) : inner_(std::move(inner)), bound_(bound) {}
  absl::StatusOr<std::vector<std::optional<double>>> ScoreBatch(const std::vector<ScoreInput>& inputs) override {
    ASSIGN_OR_RETURN(std::vector<std::optional<double>> values, inner_->ScoreBatch(inputs));
    for (std::optional<double>& v : values) {
      if (v.has_value()) v = std::clamp(*v, -bound_, bound_);
    }
    return values;
  }

 private:
  std::unique_ptr<Scorer> inner_;
  double bound_;
};

absl::StatusOr<std::unique_ptr<Scorer>> MakeRewardModel(PartParams& params, const ScorerContext* context) {
  std::string path, chat_template;
  double clip = 0;
  RETURN_IF_ERROR(params.Require("path", &path));
  RETURN_IF_ERROR(params.Get("chat_template", &chat_template));
  RETURN_IF_ERROR(params.Get("clip", &clip));
  if (clip < 0) return params.Error("clip", "must be >= 0 (0: no clipping)");  // Get refuses inf and nan
  if (context == nullptr) return std::unique_ptr<Scorer>();
  if (!context->load_reward_model) return params.Error("", "reward models cannot be loaded here");
  if (chat_template.empty()) chat_template = context->chat_template;
  absl::StatusOr<std::unique_ptr<Scorer>> s = context->load_reward_model(path, chat_template);
  if (!s.ok()) {
    absl::Status named = params.Error("path", s.status().message());
    return absl::Status(s.status().code(), named.message());
  }
  if (clip > 0) return std::unique_ptr<Scorer>(std::make_unique<ClippedScorer>(*std::move(s), clip));
  return s;
}

}  // namespace

void RegisterRulePartTypes(Registry& registry) {
  for (PartType t :
       {PartType{"answer_match", MakeAnswerMatch}, PartType{"format", MakeFormat}, PartType{"length", MakeLength},
        PartType{"repetition", MakeRepetition}, PartType{"reward_model", MakeRewardModel}}) {
    absl::Status s = registry.Register(std::move(t));
    CHECK(s.ok()) << s;
  }
}

}  // namespace alignd::reward
