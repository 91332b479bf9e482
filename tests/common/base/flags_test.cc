#include "common/base/flags.h"

#include <cstdlib>
#include <map>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace alignd {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

// The flags of an `alignd eval`-like subcommand, with a fake environment.
class FlagsTest : public ::testing::Test {
 protected:
  FlagsTest() : flags_("alignd eval --model DIR [flags]", [this](const std::string& name) { return Env(name); }) {
    flags_.String("model", "", "model directory");
    flags_.Int("steps", 100, "evaluation steps");
    flags_.Double("lr", 1e-4, "learning rate");
    flags_.Bool("verbose", false, "log every batch");
    flags_.String("coordinator", "localhost:7070", "coordinator address", "ALIGND_COORDINATOR");
    flags_.Int("port", 0, "port to listen on", "ALIGND_PORT");
  }

  std::optional<std::string> Env(const std::string& name) const {
    auto it = env_.find(name);
    if (it == env_.end()) return std::nullopt;
    return it->second;
  }

  absl::Status Parse(std::vector<std::string> args) { return flags_.Parse(args); }

  // Parsing `args` must fail with INVALID_ARGUMENT and a message containing `part`.
  void ExpectInvalid(std::vector<std::string> args, const std::string& part) {
    absl::Status status = flags_.Parse(args);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
    EXPECT_THAT(status.message(), HasSubstr(part));
  }

  std::map<std::string, std::string> env_;
  FlagSet flags_;
};

TEST_F(FlagsTest, DefaultsBeforeAndWithoutArguments) {
  EXPECT_EQ(flags_.GetInt("steps"), 100);
  ASSERT_TRUE(Parse({}).ok());
  EXPECT_EQ(flags_.GetString("model"), "");
  EXPECT_EQ(flags_.GetInt("steps"), 100);
  EXPECT_DOUBLE_EQ(flags_.GetDouble("lr"), 1e-4);
  EXPECT_FALSE(flags_.GetBool("verbose"));
  EXPECT_EQ(flags_.GetString("coordinator"), "localhost:7070");
  EXPECT_FALSE(flags_.IsSet("model"));
  EXPECT_THAT(flags_.positional(), IsEmpty());
  EXPECT_FALSE(flags_.help_requested());
}

TEST_F(FlagsTest, AcceptsEqualsAndSeparateValues) {
  ASSERT_TRUE(Parse({"--model=/m", "--steps", "7", "--lr=-0.5", "--coordinator", "x:1"}).ok());
  EXPECT_EQ(flags_.GetString("model"), "/m");
  EXPECT_EQ(flags_.GetInt("steps"), 7);
  EXPECT_DOUBLE_EQ(flags_.GetDouble("lr"), -0.5);
  EXPECT_EQ(flags_.GetString("coordinator"), "x:1");
}

TEST_F(FlagsTest, SeparateValueMayStartWithOneDash) {
  ASSERT_TRUE(Parse({"--steps", "-3", "--model", "-"}).ok());
  EXPECT_EQ(flags_.GetInt("steps"), -3);
  EXPECT_EQ(flags_.GetString("model"), "-");
}

TEST_F(FlagsTest, EmptyValueAfterEquals) {
  ASSERT_TRUE(Parse({"--coordinator="}).ok());
  EXPECT_EQ(flags_.GetString("coordinator"), "");
  EXPECT_TRUE(flags_.IsSet("coordinator"));
}

TEST_F(FlagsTest, BooleanForms) {
  ASSERT_TRUE(Parse({"--verbose"}).ok());
  EXPECT_TRUE(flags_.GetBool("verbose"));
  ASSERT_TRUE(Parse({"--verbose=false"}).ok());
  EXPECT_FALSE(flags_.GetBool("verbose"));
  ASSERT_TRUE(Parse({"--verbose=1"}).ok());
  EXPECT_TRUE(flags_.GetBool("verbose"));
  ASSERT_TRUE(Parse({"--verbose=true", "--noverbose"}).ok());
  EXPECT_FALSE(flags_.GetBool("verbose"));
  EXPECT_TRUE(flags_.IsSet("verbose"));
}

// Dashes are the spelling shown; underscores are accepted wherever a name appears.
TEST(FlagSpelling, UnderscoreAndDashNameTheSameFlag) {
  FlagSet flags("alignd reward [flags]");
  flags.String("reward_model", "", "reward model folder");
  flags.Int("batch-size", 8, "sequences per batch");
  ASSERT_TRUE(flags.Parse({"--reward-model=/rm", "--batch_size", "4"}).ok());
  EXPECT_EQ(flags.GetString("reward_model"), "/rm");
  EXPECT_EQ(flags.GetString("reward-model"), "/rm");
  EXPECT_EQ(flags.GetInt("batch_size"), 4);
  EXPECT_TRUE(flags.IsSet("reward_model"));
  EXPECT_TRUE(flags.IsSet("batch-size"));

  ASSERT_TRUE(flags.Parse({"--reward_model", "/other", "--batch-size=2"}).ok());
  EXPECT_EQ(flags.GetString("reward-model"), "/other");
  EXPECT_EQ(flags.GetInt("batch-size"), 2);
}

TEST(FlagSpelling, UsagePrintsDashes) {
  FlagSet flags("alignctl submit [flags]");
  flags.String("request_id", "", "idempotency key");
  flags.Bool("dry_run", false, "check only");
  EXPECT_EQ(flags.Usage(),
            "usage: alignctl submit [flags]\n"
            "\n"
            "flags:\n"
            "  --request-id=STRING  idempotency key (default \"\")\n"
            "  --[no]dry-run        check only (default false)\n"
            "  -h, --help           show this help\n");
}

TEST(FlagSpelling, BooleansNegateInEverySpelling) {
  FlagSet flags("alignd train [flags]");
  flags.Bool("dry_run", true, "check only");
  for (const char* arg : {"--nodry-run", "--no-dry-run", "--no_dry_run", "--nodry_run"}) {
    ASSERT_TRUE(flags.Parse({arg}).ok()) << arg;
    EXPECT_FALSE(flags.GetBool("dry-run")) << arg;
  }
  ASSERT_TRUE(flags.Parse({"--dry_run=false", "--dry-run"}).ok());
  EXPECT_TRUE(flags.GetBool("dry_run"));
}

TEST(FlagSpelling, SuggestionsAndErrorsNameTheDashedFlag) {
  FlagSet flags("alignd reward [flags]");
  flags.String("reward_model", "", "reward model folder");
  flags.Int("batch_size", 8, "sequences per batch");
  absl::Status status = flags.Parse({"--reward_modle=x"});
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("did you mean --reward-model?"));
  status = flags.Parse({"--batch_size=many"});
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr(R"(--batch_size: expected an integer, got "many")"));
}

TEST_F(FlagsTest, BooleanDoesNotTakeTheNextArgument) {
  ASSERT_TRUE(Parse({"--verbose", "false"}).ok());
  EXPECT_TRUE(flags_.GetBool("verbose"));
  EXPECT_THAT(flags_.positional(), ElementsAre("false"));
}

TEST_F(FlagsTest, PositionalArgumentsAnywhere) {
  ASSERT_TRUE(Parse({"a", "--steps=1", "b", "-", "-5", "-.5"}).ok());
  EXPECT_THAT(flags_.positional(), ElementsAre("a", "b", "-", "-5", "-.5"));
}

TEST_F(FlagsTest, DoubleDashEndsFlags) {
  ASSERT_TRUE(Parse({"--steps=1", "--", "--steps=2", "-h", "--bogus"}).ok());
  EXPECT_EQ(flags_.GetInt("steps"), 1);
  EXPECT_FALSE(flags_.help_requested());
  EXPECT_THAT(flags_.positional(), ElementsAre("--steps=2", "-h", "--bogus"));
}

TEST_F(FlagsTest, LastValueWins) {
  ASSERT_TRUE(Parse({"--steps=1", "--steps", "2"}).ok());
  EXPECT_EQ(flags_.GetInt("steps"), 2);
}

TEST_F(FlagsTest, IsSetOnlyForFlagsOnTheCommandLine) {
  env_["ALIGND_PORT"] = "9000";
  ASSERT_TRUE(Parse({"--steps=100"}).ok());
  EXPECT_TRUE(flags_.IsSet("steps"));  // Even when equal to the default.
  EXPECT_FALSE(flags_.IsSet("port"));
  EXPECT_FALSE(flags_.IsSet("model"));
}

TEST_F(FlagsTest, EachParseStartsFromTheDefaults) {
  ASSERT_TRUE(Parse({"--steps=1", "p", "--help"}).ok());
  ASSERT_TRUE(Parse({"q"}).ok());
  EXPECT_EQ(flags_.GetInt("steps"), 100);
  EXPECT_FALSE(flags_.IsSet("steps"));
  EXPECT_FALSE(flags_.help_requested());
  EXPECT_THAT(flags_.positional(), ElementsAre("q"));
}

TEST_F(FlagsTest, HelpIsRequestedNotAnError) {
  ASSERT_TRUE(Parse({"--help"}).ok());
  EXPECT_TRUE(flags_.help_requested());
  ASSERT_TRUE(Parse({"--bogus", "-h", "--steps=x"}).ok());
  EXPECT_TRUE(flags_.help_requested());
}

TEST_F(FlagsTest, EnvironmentReplacesTheDefault) {
  env_["ALIGND_COORDINATOR"] = "coord:1";
  env_["ALIGND_PORT"] = "9000";
  ASSERT_TRUE(Parse({}).ok());
  EXPECT_EQ(flags_.GetString("coordinator"), "coord:1");
  EXPECT_EQ(flags_.GetInt("port"), 9000);
}

TEST_F(FlagsTest, CommandLineBeatsEnvironment) {
  env_["ALIGND_COORDINATOR"] = "coord:1";
  ASSERT_TRUE(Parse({"--coordinator=cli:2"}).ok());
  EXPECT_EQ(flags_.GetString("coordinator"), "cli:2");
}

TEST(FlagSet, ProcessEnvReadsTheEnvironment) {
  ASSERT_EQ(::setenv("ALIGND_FLAGS_TEST_VAR", "v1", 1), 0);
  EXPECT_EQ(FlagSet::ProcessEnv("ALIGND_FLAGS_TEST_VAR"), "v1");
  ASSERT_EQ(::unsetenv("ALIGND_FLAGS_TEST_VAR"), 0);
  EXPECT_EQ(FlagSet::ProcessEnv("ALIGND_FLAGS_TEST_VAR"), std::nullopt);

  ASSERT_EQ(::setenv("ALIGND_FLAGS_TEST_TOKEN", "secret", 1), 0);
  FlagSet flags("alignctl status [flags]");
  flags.String("token", "", "bearer token", "ALIGND_FLAGS_TEST_TOKEN");
  ASSERT_TRUE(flags.Parse({}).ok());
  EXPECT_EQ(flags.GetString("token"), "secret");
  ::unsetenv("ALIGND_FLAGS_TEST_TOKEN");
}

TEST_F(FlagsTest, UsageListsFlagsAligned) {
  EXPECT_EQ(flags_.Usage(),
            "usage: alignd eval --model DIR [flags]\n"
            "\n"
            "flags:\n"
            "  --model=STRING        model directory (default \"\")\n"
            "  --steps=INT           evaluation steps (default 100)\n"
            "  --lr=DOUBLE           learning rate (default 0.0001)\n"
            "  --[no]verbose         log every batch (default false)\n"
            "  --coordinator=STRING  coordinator address (default \"localhost:7070\"; env ALIGND_COORDINATOR)\n"
            "  --port=INT            port to listen on (default 0; env ALIGND_PORT)\n"
            "  -h, --help            show this help\n");
}

// ---- Error paths ----

TEST_F(FlagsTest, RejectsUnknownFlag) { ExpectInvalid({"--bogus=1"}, "unknown flag --bogus"); }

TEST_F(FlagsTest, SuggestsACloseName) {
  ExpectInvalid({"--modle", "x"}, "unknown flag --modle; did you mean --model?");
  absl::Status status = Parse({"--zzzzz"});
  EXPECT_THAT(status.message(), ::testing::Not(HasSubstr("did you mean")));
}

TEST_F(FlagsTest, RejectsSingleDashFlags) {
  ExpectInvalid({"-model", "x"}, "unknown flag -model (flags are written --name); did you mean --model?");
}

TEST_F(FlagsTest, RejectsMissingValue) {
  ExpectInvalid({"--model"}, "--model needs a value");
  ExpectInvalid({"--model", "--steps=1"}, "--model needs a value");
  ExpectInvalid({"--model", "--"}, "--model needs a value");
}

TEST_F(FlagsTest, RejectsBadInt) {
  ExpectInvalid({"--steps=ten"}, R"(--steps: expected an integer, got "ten")");
  ExpectInvalid({"--steps", "1.5"}, R"(--steps: expected an integer, got "1.5")");
  ExpectInvalid({"--steps=9223372036854775808"}, "--steps: expected an integer");
}

TEST_F(FlagsTest, RejectsBadDouble) {
  ExpectInvalid({"--lr=fast"}, R"(--lr: expected a finite number, got "fast")");
  ExpectInvalid({"--lr=nan"}, "--lr: expected a finite number");
  ExpectInvalid({"--lr=1e999"}, "--lr: expected a finite number");
}

TEST_F(FlagsTest, RejectsBadBool) {
  ExpectInvalid({"--verbose=yes please"}, R"(--verbose: expected true, false, 1 or 0, got "yes please")");
  ExpectInvalid({"--noverbose=true"}, "--noverbose takes no value");
  ExpectInvalid({"--nosteps"}, "unknown flag --nosteps");
}

TEST_F(FlagsTest, RejectsBadEnvironmentValueNamingTheVariable) {
  env_["ALIGND_PORT"] = "http";
  ExpectInvalid({}, R"($ALIGND_PORT (for --port): expected an integer, got "http")");
}

// ---- Programming errors ----

using FlagsDeathTest = FlagsTest;

TEST_F(FlagsDeathTest, DeclaringTwiceCrashes) { EXPECT_DEATH(flags_.Int("model", 1, ""), "declared twice"); }

TEST(FlagSpellingDeathTest, DeclaringBothSpellingsCrashes) {
  FlagSet flags("alignd reward [flags]");
  flags.String("reward_model", "", "");
  EXPECT_DEATH(flags.String("reward-model", "", ""), "declared twice");
  flags.Bool("dry-run", false, "");
  EXPECT_DEATH(flags.Bool("no_dry_run", false, ""), "clashes");
}

TEST_F(FlagsDeathTest, BadNamesCrash) {
  EXPECT_DEATH(flags_.Bool("help", false, ""), "reserved");
  EXPECT_DEATH(flags_.Bool("-x", false, ""), "invalid flag name");
  EXPECT_DEATH(flags_.Bool("noverbose", false, ""), "clashes");
}

TEST_F(FlagsDeathTest, ReadingUndeclaredOrMistypedCrashes) {
  EXPECT_DEATH(flags_.GetString("nope"), "not declared");
  EXPECT_DEATH(flags_.GetInt("model"), "is STRING, read as INT");
}

}  // namespace
}  // namespace alignd
