#include "reward/scorers.h"

#include "reward/scorer_config.h"

#include <cmath>
#include <vector>

#include "gtest/gtest.h"

namespace alignd::reward {
namespace {

double ScoreOne(Scorer& scorer, const std::string& response, const std::string& reference = "") {
  absl::StatusOr<std::vector<double>> v = scorer.ScoreBatch({ScoreInput{"p", response, reference}});
  EXPECT_TRUE(v.ok()) << v.status();
  return v.ok() && v->size() == 1 ? (*v)[0] : -999;
}

TEST(AnswerMatchTest, IntegerReferenceUsesTheAnswerNumber) {
  auto s = MakeAnswerMatchScorer();
  EXPECT_EQ(ScoreOne(*s, "17 + 5 = 22.", "22"), 1);
  EXPECT_EQ(ScoreOne(*s, "17 + 5 = 23.", "22"), 0);
  EXPECT_EQ(ScoreOne(*s, "The answer is -3", "-3"), 1);
}

TEST(AnswerMatchTest, DecimalReferenceComparesTheLastNumber) {
  auto s = MakeAnswerMatchScorer();
  EXPECT_EQ(ScoreOne(*s, "It is about 3.14159 or so, not 2", "3.14159"), 0);  // the last number is 2
  EXPECT_EQ(ScoreOne(*s, "pi is 3.1415900", "3.14159"), 1);
  EXPECT_EQ(ScoreOne(*s, "pi is 3.15", "3.14159"), 0);
}

TEST(AnswerMatchTest, TextReferenceIsCaseAndSpaceInsensitive) {
  auto s = MakeAnswerMatchScorer();
  EXPECT_EQ(ScoreOne(*s, "  Paris \n", "paris"), 1);
  EXPECT_EQ(ScoreOne(*s, "Paris, France", "paris"), 0);
  EXPECT_EQ(ScoreOne(*s, "anything", ""), 0);
}

TEST(RegexScorerTest, MatchesAnywhere) {
  auto s = MakeRegexScorer(R"(\\boxed\{\d+\})");
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(ScoreOne(**s, "so \\boxed{42}."), 1);
  EXPECT_EQ(ScoreOne(**s, "so 42."), 0);
}

TEST(RegexScorerTest, BadPatternIsInvalidArgument) {
  EXPECT_EQ(MakeRegexScorer("(unclosed").status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(LengthPenaltyTest, ZeroUpToTargetThenLinear) {
  auto s = MakeLengthPenaltyScorer(10);
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(ScoreOne(**s, "0123456789"), 0);
  EXPECT_DOUBLE_EQ(ScoreOne(**s, std::string(15, 'x')), -0.5);
  EXPECT_DOUBLE_EQ(ScoreOne(**s, std::string(20, 'x')), -1.0);
  EXPECT_EQ(MakeLengthPenaltyScorer(0).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(RefusalScorerTest, DetectsRefusals) {
  auto s = MakeRefusalScorer();
  EXPECT_EQ(ScoreOne(*s, "I can't help with that."), 1);
  EXPECT_EQ(ScoreOne(*s, "Sure, here is a poem."), 0);
}

TEST(RepetitionPenaltyTest, CountsRepeatedNgrams) {
  EXPECT_DOUBLE_EQ(RepeatedNgramFraction("a b c d", 2), 0.0);
  // bigrams: "a b" "b a" "a b" "b a" -> 2 of 4 repeat.
  EXPECT_DOUBLE_EQ(RepeatedNgramFraction("a b a b a", 2), 0.5);
  EXPECT_DOUBLE_EQ(RepeatedNgramFraction("a", 2), 0.0);
  auto s = MakeRepetitionPenaltyScorer(2);
  ASSERT_TRUE(s.ok());
  EXPECT_DOUBLE_EQ(ScoreOne(**s, "a b a b a"), -0.5);
  EXPECT_EQ(MakeRepetitionPenaltyScorer(0).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(ScorerConfigTest, EnabledScorersInOrderWithTheirWeights) {
  ScorerConfig config;
  config.refusal_weight = -0.5;
  config.answer_weight = 1;
  config.repetition_weight = 0.25;
  auto scorers = MakeScorers(config);
  ASSERT_TRUE(scorers.ok()) << scorers.status();
  ASSERT_EQ(scorers->size(), 3u);
  EXPECT_EQ((*scorers)[0].name, "answer");
  EXPECT_EQ((*scorers)[1].name, "refusal");
  EXPECT_EQ((*scorers)[1].weight, -0.5);
  EXPECT_EQ((*scorers)[2].name, "repetition");
}

TEST(ScorerConfigTest, BadConfigsAreInvalidArgument) {
  EXPECT_EQ(MakeScorers(ScorerConfig()).status().code(), absl::StatusCode::kInvalidArgument);  // nothing enabled
  ScorerConfig regex;
  regex.regex_weight = 1;  // without a pattern
  EXPECT_EQ(MakeScorers(regex).status().code(), absl::StatusCode::kInvalidArgument);
  ScorerConfig length;
  length.length_weight = 1;
  length.length_target_bytes = 0;
  EXPECT_EQ(MakeScorers(length).status().code(), absl::StatusCode::kInvalidArgument);
  ScorerConfig nan;
  nan.answer_weight = std::nan("");
  EXPECT_EQ(MakeScorers(nan).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace alignd::reward
