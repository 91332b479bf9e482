// The rule part types of the reward registry (answer_match, format, length, repetition) and the reward_model type,
// and the text functions they use, exposed for tests and for the evaluation. What each type reads and scores is
// documented in reward/registry.h.
#ifndef ALIGND_REWARD_RULES_H_
#define ALIGND_REWARD_RULES_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "reward/scorer.h"

namespace alignd::reward {

// A part computed item by item: `f` answers nullopt where the part does not apply (reward/scorer.h).
std::unique_ptr<Scorer> MakeItemScorer(std::function<std::optional<double>(const ScoreInput&)> f);

// The last number in `text` (an optional sign, digits with optional thousands commas, an optional fraction and
// exponent), as written; nullopt when there is none.
std::optional<std::string> LastNumber(absl::string_view text);
// The contents of the last \boxed{...} (braces inside balanced); nullopt when there is none or it is not closed.
std::optional<std::string> LastBoxed(absl::string_view text);
// The first capture group of the last match of `pattern` (RE2 syntax; INVALID_ARGUMENT when it does not compile or
// has no capture group), or of the whole match when the group did not take part. For tests; the answer_match part
// compiles its pattern once.
absl::StatusOr<std::optional<std::string>> LastRegexGroup(const std::string& text, const std::string& pattern);
// `text` as a number: thousands commas, a leading $ and surrounding spaces ignored; nullopt when it is not one.
std::optional<double> ParseNumber(absl::string_view text);
// Lower-cased, with runs of whitespace made one space, and trimmed.
std::string NormalizeText(absl::string_view text);

// The fraction (in [0, 1)) of `text`'s word n-grams that repeat an earlier one; 0 when it has fewer than n words.
double RepeatedNgramFraction(absl::string_view text, int64_t n);

}  // namespace alignd::reward

#endif  // ALIGND_REWARD_RULES_H_
