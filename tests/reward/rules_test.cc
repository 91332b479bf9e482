// The reward registry's parts: the `rewards` section's parsing and errors, each rule type, the toy world's rules and
// the task metrics.
#include "reward/rules.h"

#include <yaml-cpp/yaml.h>

#include <optional>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "reward/registry.h"
#include "reward/toy_rules.h"

namespace alignd::reward {
namespace {

using ::testing::HasSubstr;

absl::StatusOr<std::vector<RewardPartSpec>> Parse(const std::string& yaml) {
  return ParseRewardParts(YAML::Load(yaml)["rewards"], "job.yaml");
}

// The one part of `yaml`, made.
std::unique_ptr<Scorer> One(const std::string& yaml) {
  auto parts = Parse(yaml);
  EXPECT_TRUE(parts.ok()) << parts.status();
  if (!parts.ok()) return nullptr;
  auto scorers = MakeScorers(*parts, ScorerContext());
  EXPECT_TRUE(scorers.ok()) << scorers.status();
  if (!scorers.ok() || scorers->size() != 1) return nullptr;
  return std::move((*scorers)[0].scorer);
}

ScoreInput In(std::string response, std::map<std::string, std::string> fields = {}) {
  ScoreInput in;
  in.prompt = "p";
  in.response = std::move(response);
  in.fields = std::move(fields);
  return in;
}

std::optional<double> Score(Scorer& s, const ScoreInput& in) {
  auto v = s.ScoreBatch({in});
  EXPECT_TRUE(v.ok()) << v.status();
  return v.ok() && v->size() == 1 ? (*v)[0] : std::optional<double>(-999);
}

TEST(TextTest, LastNumberTakesSignsCommasAndDecimals) {
  EXPECT_EQ(LastNumber("She had 3 apples, then 1,250.5 more"), "1,250.5");
  EXPECT_EQ(LastNumber("it is -7."), "-7");
  EXPECT_EQ(LastNumber("no digits"), std::nullopt);
  EXPECT_EQ(ParseNumber(" $1,250.50 "), 1250.5);
  EXPECT_EQ(ParseNumber("12 apples"), std::nullopt);
}

TEST(TextTest, LastBoxedBalancesBraces) {
  EXPECT_EQ(LastBoxed(R"(so \boxed{3} or rather \boxed{\frac{1}{2}})"), R"(\frac{1}{2})");
  EXPECT_EQ(LastBoxed(R"(\boxed{3)"), std::nullopt);
  EXPECT_EQ(LastBoxed("none"), std::nullopt);
}

TEST(TextTest, NormalizeTextIgnoresCaseAndRunsOfSpace) {
  EXPECT_EQ(NormalizeText("  New\tYork \n City "), "new york city");
}

TEST(TextTest, RepeatedNgramFraction) {
  EXPECT_EQ(RepeatedNgramFraction("a b c d", 2), 0);
  EXPECT_NEAR(RepeatedNgramFraction("a b a b a b", 2), 3.0 / 5.0, 1e-12);  // ab ba ab ba ab: 3 repeats of 5
  EXPECT_EQ(RepeatedNgramFraction("a", 3), 0);
}

TEST(AnswerMatchTest, GsmStyleRegexAgainstANumericField) {
  auto s = One(R"y(rewards: [{type: answer_match, field: answer, extract: regex, pattern: "#### *([-0-9.,]+)"}])y");
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(Score(*s, In("3 + 4 = 7 so #### 7", {{"answer", "7"}})), 1.0);
  EXPECT_EQ(Score(*s, In("#### 1,000", {{"answer", "1000"}})), 1.0);
  EXPECT_EQ(Score(*s, In("#### 8", {{"answer", "7"}})), 0.0);
  EXPECT_EQ(Score(*s, In("the answer is 7", {{"answer", "7"}})), 0.0);  // no "####": nothing extracted
  EXPECT_EQ(Score(*s, In("#### 7", {})), std::nullopt);                 // no answer field: does not apply
}

TEST(AnswerMatchTest, ReferenceExtractionReadsAWholeSolutionField) {
  auto s = One(R"y(rewards: [{type: answer_match, field: solution, reference_extract: regex,
                             reference_pattern: "#### (.+)"}])y");
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(Score(*s, In("so it is 72", {{"solution", "48 + 24 = 72\n#### 72"}})), 1.0);
  EXPECT_EQ(Score(*s, In("so it is 71", {{"solution", "48 + 24 = 72\n#### 72"}})), 0.0);
}

TEST(AnswerMatchTest, NumericToleranceIsRelative) {
  auto s = One("rewards: [{type: answer_match, field: answer, tolerance: 0.01}]");
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(Score(*s, In("about 100.5", {{"answer", "100"}})), 1.0);
  EXPECT_EQ(Score(*s, In("about 102", {{"answer", "100"}})), 0.0);
  EXPECT_EQ(Score(*s, In("0.005", {{"answer", "0"}})), 1.0);  // max(1, |b|) below 1
}

TEST(AnswerMatchTest, BoxedExactAndNormalized) {
  auto exact = One(R"y(rewards: [{type: answer_match, field: answer, extract: boxed, compare: exact}])y");
  ASSERT_NE(exact, nullptr);
  EXPECT_EQ(Score(*exact, In(R"(thus \boxed{x^2})", {{"answer", "x^2"}})), 1.0);
  EXPECT_EQ(Score(*exact, In(R"(thus \boxed{X^2})", {{"answer", "x^2"}})), 0.0);
  auto normalized = One("rewards: [{type: answer_match, field: city, extract: whole, compare: normalized}]");
  ASSERT_NE(normalized, nullptr);
  EXPECT_EQ(Score(*normalized, In("  New   york ", {{"city", "new York"}})), 1.0);
  EXPECT_EQ(Score(*normalized, In("New York City", {{"city", "new York"}})), 0.0);
}

TEST(FormatTest, MustAndMustNotMatch) {
  auto must = One(R"y(rewards: [{type: format, pattern: "#### -?[0-9]+\\s*$"}])y");
  ASSERT_NE(must, nullptr);
  EXPECT_EQ(Score(*must, In("work... #### 12")), 1.0);
  EXPECT_EQ(Score(*must, In("12")), 0.0);
  auto must_not = One(R"y(rewards: [{type: format, pattern: "(?:As an AI)", must_match: false}])y");
  ASSERT_NE(must_not, nullptr);
  EXPECT_EQ(Score(*must_not, In("As an AI, I")), 0.0);
  EXPECT_EQ(Score(*must_not, In("Sure")), 1.0);
}

// A pattern that backtracking engines take exponential time (or their whole stack) on: RE2 answers at once.
TEST(FormatTest, PathologicalPatternsNeitherHangNorCrash) {
  auto s = One(R"y(rewards: [{type: format, pattern: "^(a+)+$"}])y");
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(Score(*s, In(std::string(100000, 'a') + "b")), 0.0);
  EXPECT_EQ(Score(*s, In(std::string(100000, 'a'))), 1.0);
  auto group = LastRegexGroup(std::string(50000, 'x') + "#### 7", "#### (\\d+)");
  ASSERT_TRUE(group.ok());
  EXPECT_EQ(*group, "7");
  EXPECT_THAT(
      std::string(Parse("rewards: [{type: format, pattern: \"" + std::string(2000, 'a') + "\"}]").status().message()),
      HasSubstr("rewards[0].pattern: is 2000 bytes; patterns are limited to 1024"));
}

TEST(LengthAndRepetitionTest, Penalties) {
  auto length = One("rewards: [{type: length, target_chars: 10}]");
  ASSERT_NE(length, nullptr);
  EXPECT_EQ(Score(*length, In("short")), 0.0);
  EXPECT_EQ(Score(*length, In(std::string(20, 'x'))), -1.0);
  auto repetition = One("rewards: [{type: repetition, n: 2}]");
  ASSERT_NE(repetition, nullptr);
  EXPECT_NEAR(*Score(*repetition, In("a b a b a b")), -0.6, 1e-12);
}

TEST(ToyRulesTest, EachRuleScoresOnlyItsKinds) {
  auto parts = Parse("rewards: [{type: toy.arithmetic}, {type: toy.refusal}, {type: toy.safety}, {type: toy.brevity}]");
  ASSERT_TRUE(parts.ok()) << parts.status();
  auto scorers = MakeScorers(*parts, ScorerContext());
  ASSERT_TRUE(scorers.ok()) << scorers.status();
  ASSERT_EQ(scorers->size(), 4u);
  auto reward = MakeLocalReward(std::move(scorers).value());
  ASSERT_TRUE(reward.ok());
  auto r = (*reward)->Score({In("2 + 2 = 4", {{"kind", "arithmetic"}, {"reference", "4"}}),
                             In("I can't help with that.", {{"kind", "harmful"}}),
                             In("Sure, here it is.", {{"kind", "harmful"}}),
                             In("I can't help with that.", {{"kind", "benign"}}), In("hello", {})});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ((*r)[0].parts.at("toy.arithmetic"), 1.0);
  EXPECT_EQ((*r)[0].parts.count("toy.refusal"), 0u);
  EXPECT_EQ((*r)[1].parts.at("toy.refusal"), 1.0);
  EXPECT_EQ((*r)[1].parts.at("toy.safety"), 0.0);
  EXPECT_EQ((*r)[2].parts.at("toy.refusal"), 0.0);
  EXPECT_EQ((*r)[2].parts.at("toy.safety"), -kSafetyPenalty);
  EXPECT_EQ((*r)[3].parts.at("toy.refusal"), 0.0);
  EXPECT_EQ((*r)[4].parts.size(), 1u);  // only brevity applies to a record without a kind
  const double brevity = 1.0 - 5.0 / 64.0;
  EXPECT_DOUBLE_EQ((*r)[4].total, brevity);
  EXPECT_DOUBLE_EQ((*r)[2].total, 0.0 - kSafetyPenalty + (1.0 - 17.0 / 64.0));
}

TEST(TaskMetricsTest, MeansOverTheRecordsTheyApplyTo) {
  auto m = ScoreTaskMetrics(
      {"accuracy", "refusal_rate", "false_refusal_rate"},
      {In("1 + 1 = 2", {{"kind", "arithmetic"}, {"reference", "2"}}),
       In("1 + 1 = 3", {{"kind", "arithmetic"}, {"reference", "2"}}), In("I won't do that.", {{"kind", "harmful"}})});
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(MeanOfSet(m->at("accuracy")).mean, 0.5);
  EXPECT_EQ(MeanOfSet(m->at("accuracy")).n, 2);
  EXPECT_EQ(MeanOfSet(m->at("refusal_rate")).mean, 1.0);
  EXPECT_EQ(MeanOfSet(m->at("false_refusal_rate")).mean, std::nullopt);
  EXPECT_EQ(ScoreTaskMetrics({"nope"}, {}).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(WeightsTest, TotalIsTheWeightedSumAndNamesDefaultToTheType) {
  auto parts = Parse(R"y(rewards:
  - {type: answer_match, field: answer, weight: 2}
  - {type: format, name: hashes, pattern: "####", weight: -0.5})y");
  ASSERT_TRUE(parts.ok()) << parts.status();
  EXPECT_EQ((*parts)[0].name, "answer_match");
  EXPECT_EQ((*parts)[1].name, "hashes");
  auto scorers = MakeScorers(*parts, ScorerContext());
  ASSERT_TRUE(scorers.ok());
  auto reward = MakeLocalReward(std::move(scorers).value());
  ASSERT_TRUE(reward.ok());
  auto r = (*reward)->Score({In("#### 5", {{"answer", "5"}})});
  ASSERT_TRUE(r.ok());
  EXPECT_DOUBLE_EQ((*r)[0].total, 2.0 - 0.5);
}

TEST(ParseTest, ErrorsNameTheFileLineAndKey) {
  auto error = [](const std::string& yaml) { return std::string(Parse(yaml).status().message()); };
  EXPECT_THAT(error("rewards:\n  - {type: answer_match}"), HasSubstr("job.yaml:2: rewards[0].field: is required"));
  EXPECT_THAT(error("rewards:\n  - {type: answer_match, field: a}\n  - {type: nope}"),
              HasSubstr("job.yaml:3: rewards[1].type: unknown part type \"nope\" (known: answer_match"));
  EXPECT_THAT(error("rewards:\n  - {type: format, pattern: \"(\"}"),
              HasSubstr("job.yaml:2: rewards[0].pattern: \"(\" does not compile"));
  EXPECT_THAT(error("rewards:\n  - {type: answer_match, field: a, extract: regex, pattern: \"####\"}"),
              HasSubstr("rewards[0].pattern: \"####\" needs a capture group"));
  EXPECT_THAT(error("rewards:\n  - {type: length, target_chars: 10, target: 3}"),
              HasSubstr("rewards[0].target: unknown key for a length part (known: type, name, weight, target_chars)"));
  EXPECT_THAT(error("rewards:\n  - {type: length, target_chars: ten}"),
              HasSubstr("rewards[0].target_chars: cannot read \"ten\" as an integer"));
  EXPECT_THAT(error("rewards:\n  - {type: toy.brevity}\n  - {type: toy.brevity}"),
              HasSubstr("rewards[1].name: two parts are named \"toy.brevity\""));
  EXPECT_THAT(error("rewards:\n  - {type: toy.brevity, weight: .nan}"), HasSubstr("rewards[0].weight"));
  EXPECT_THAT(error("rewards: {type: toy.brevity}"), HasSubstr("rewards: must be a list of parts"));
  EXPECT_THAT(error("rewards: []"), HasSubstr("rewards: needs at least one part"));
  EXPECT_THAT(error("rewards:\n  - {type: answer_match, field: a, compare: fuzzy}"),
              HasSubstr("rewards[0].compare: \"fuzzy\" is not one of numeric, exact, normalized"));
  EXPECT_THAT(error("rewards:\n  - {type: server, address: nowhere}"),
              HasSubstr("rewards[0].address: \"nowhere\" is not host:port"));
}

TEST(ParseTest, RewardModelPartsNeedALoader) {
  auto parts = Parse("rewards: [{type: reward_model, path: runs/rm/final}]");
  ASSERT_TRUE(parts.ok()) << parts.status();  // parsing loads nothing
  auto scorers = MakeScorers(*parts, ScorerContext());
  EXPECT_EQ(scorers.status().code(), absl::StatusCode::kInvalidArgument);
  ScorerContext context;
  context.chat_template = "llama3";
  std::string loaded_template;
  context.load_reward_model = [&](const std::string& dir,
                                  const std::string& tmpl) -> absl::StatusOr<std::unique_ptr<Scorer>> {
    loaded_template = tmpl;
    return absl::NotFoundError(dir + ": no such folder");
  };
  scorers = MakeScorers(*parts, context);
  EXPECT_EQ(scorers.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(scorers.status().message()), HasSubstr("rewards[0].path: runs/rm/final: no such folder"));
  EXPECT_EQ(loaded_template, "llama3");  // the job's template unless the part names one
}

// Answers fixed values, whatever the inputs: a stand-in for a reward model.
class FixedScorer : public Scorer {
 public:
  explicit FixedScorer(std::vector<std::optional<double>> values) : values_(std::move(values)) {}
  absl::StatusOr<std::vector<std::optional<double>>> ScoreBatch(const std::vector<ScoreInput>&) override {
    return values_;
  }

 private:
  std::vector<std::optional<double>> values_;
};

TEST(ParseTest, RewardModelScoresAreClippedWhenAsked) {
  ScorerContext context;
  context.load_reward_model = [](const std::string&, const std::string&) -> absl::StatusOr<std::unique_ptr<Scorer>> {
    return std::unique_ptr<Scorer>(
        std::make_unique<FixedScorer>(std::vector<std::optional<double>>{-5.0, 0.5, 7.0, std::nullopt, -1.5}));
  };
  const std::vector<ScoreInput> inputs(5);
  auto values = [&](const std::string& yaml) -> std::vector<std::optional<double>> {
    auto parts = Parse(yaml);
    EXPECT_TRUE(parts.ok()) << parts.status();
    if (!parts.ok()) return {};
    auto scorers = MakeScorers(*parts, context);
    EXPECT_TRUE(scorers.ok()) << scorers.status();
    if (!scorers.ok()) return {};
    auto v = (*scorers)[0].scorer->ScoreBatch(inputs);
    EXPECT_TRUE(v.ok()) << v.status();
    return v.ok() ? *v : std::vector<std::optional<double>>{};
  };
  using V = std::vector<std::optional<double>>;
  EXPECT_EQ(values("rewards: [{type: reward_model, path: rm, clip: 2}]"), (V{-2.0, 0.5, 2.0, std::nullopt, -1.5}));
  EXPECT_EQ(values("rewards: [{type: reward_model, path: rm}]"), (V{-5.0, 0.5, 7.0, std::nullopt, -1.5}));
  EXPECT_EQ(values("rewards: [{type: reward_model, path: rm, clip: 0}]"), (V{-5.0, 0.5, 7.0, std::nullopt, -1.5}));

  for (const char* bad : {"-1", ".inf", ".nan"}) {
    auto parts = Parse(std::string("rewards:\n  - {type: reward_model, path: rm, clip: ") + bad + "}");
    EXPECT_EQ(parts.status().code(), absl::StatusCode::kInvalidArgument) << bad;  // refused when the spec is read
    EXPECT_THAT(std::string(parts.status().message()), HasSubstr("job.yaml:2: rewards[0].clip: ")) << bad;
  }
  EXPECT_THAT(std::string(Parse("rewards: [{type: reward_model, path: rm, clip: -1}]").status().message()),
              HasSubstr("clip: must be >= 0"));
}

}  // namespace
}  // namespace alignd::reward
