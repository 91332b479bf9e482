// RunSubcommand, the dispatch of both binaries: flags before or after the command, help, unknown commands.
#include <sstream>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace alignd::cli {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

constexpr char kUsage[] = "usage: tool <command>\n";

// A binary with fake commands that record what they were called with.
class SubcommandTest : public ::testing::Test {
 protected:
  SubcommandTest()
      : commands_{{"list", Recorder("list")}, {"status", Recorder("status")}, {"data synth", Recorder("data synth")}} {}

  std::function<int(const Args&, std::ostream&, std::ostream&)> Recorder(std::string name) {
    return [this, name](const Args& args, std::ostream&, std::ostream&) {
      ran_ = name;
      args_ = args;
      return 7;
    };
  }

  int Run(const Args& argv) {
    out_.str("");
    err_.str("");
    ran_.clear();
    args_.clear();
    return RunSubcommand(argv, commands_, "tool", kUsage, out_, err_);
  }

  std::vector<Subcommand> commands_;
  std::string ran_;
  Args args_;
  std::ostringstream out_, err_;
};

TEST_F(SubcommandTest, FlagsAfterTheCommand) {
  EXPECT_EQ(Run({"list", "--coordinator=h:1", "--state", "RUNNING"}), 7);
  EXPECT_EQ(ran_, "list");
  EXPECT_THAT(args_, ElementsAre("--coordinator=h:1", "--state", "RUNNING"));
}

TEST_F(SubcommandTest, FlagsBeforeTheCommandGoToItInOrder) {
  EXPECT_EQ(Run({"--coordinator=h:1", "list"}), 7);
  EXPECT_EQ(ran_, "list");
  EXPECT_THAT(args_, ElementsAre("--coordinator=h:1"));

  EXPECT_EQ(Run({"--coordinator", "h:1", "--output=json", "status", "job-1", "--timeout=5"}), 7);
  EXPECT_EQ(ran_, "status");
  EXPECT_THAT(args_, ElementsAre("--coordinator", "h:1", "--output=json", "job-1", "--timeout=5"));
}

TEST_F(SubcommandTest, MultiWordCommands) {
  EXPECT_EQ(Run({"--seed=3", "data", "synth", "--out", "d"}), 7);
  EXPECT_EQ(ran_, "data synth");
  EXPECT_THAT(args_, ElementsAre("--seed=3", "--out", "d"));
}

TEST_F(SubcommandTest, TheFirstCommandWordIsTheCommand) {
  EXPECT_EQ(Run({"status", "list"}), 7);  // a job called "list"
  EXPECT_EQ(ran_, "status");
  EXPECT_THAT(args_, ElementsAre("list"));
  // A flag value equal to the command next to it: either way the command gets the same arguments.
  EXPECT_EQ(Run({"--token", "list", "list"}), 7);
  EXPECT_EQ(ran_, "list");
  EXPECT_THAT(args_, ElementsAre("--token", "list"));
}

TEST_F(SubcommandTest, NothingAfterDoubleDashIsACommand) {
  EXPECT_EQ(Run({"status", "--", "list"}), 7);
  EXPECT_EQ(ran_, "status");
  EXPECT_THAT(args_, ElementsAre("--", "list"));
  EXPECT_EQ(Run({"--", "list"}), 2);
  EXPECT_THAT(ran_, IsEmpty());
}

TEST_F(SubcommandTest, HelpWithoutACommandPrintsTheUsage) {
  for (const Args& argv : {Args{"--help"}, Args{"-h"}, Args{"help"}, Args{"--coordinator=h:1", "--help"}}) {
    EXPECT_EQ(Run(argv), 0) << argv[0];
    EXPECT_EQ(out_.str(), kUsage);
    EXPECT_THAT(err_.str(), IsEmpty());
  }
  // With a command, --help is the command's.
  EXPECT_EQ(Run({"--help", "list"}), 7);
  EXPECT_THAT(args_, ElementsAre("--help"));
}

// ---- Errors: exit 2, the usage on stderr ----

TEST_F(SubcommandTest, NoArgumentsIsAUsageError) {
  EXPECT_EQ(Run({}), 2);
  EXPECT_EQ(err_.str(), kUsage);
  EXPECT_THAT(out_.str(), IsEmpty());
}

TEST_F(SubcommandTest, OnlyFlagsSaysNoCommand) {
  EXPECT_EQ(Run({"--coordinator=h:1"}), 2);
  EXPECT_THAT(err_.str(), HasSubstr("tool: no command given\n"));
  EXPECT_THAT(err_.str(), HasSubstr(kUsage));
}

TEST_F(SubcommandTest, UnknownCommandIsNamedPassingOverFlagValues) {
  EXPECT_EQ(Run({"lst"}), 2);
  EXPECT_THAT(err_.str(), HasSubstr("tool: unknown command \"lst\"\n"));
  EXPECT_EQ(Run({"--coordinator", "h:1", "lst", "--x"}), 2);
  EXPECT_THAT(err_.str(), HasSubstr("tool: unknown command \"lst\"\n"));
  EXPECT_EQ(Run({"--coordinator=h:1", "data", "synthesize"}), 2);
  EXPECT_THAT(err_.str(), HasSubstr("tool: unknown command \"data\"\n"));
  EXPECT_THAT(ran_, IsEmpty());
}

}  // namespace
}  // namespace alignd::cli
