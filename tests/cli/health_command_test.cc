// alignctl health (the image's HEALTHCHECK) against a real health server, and --token-file.
#include <sstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "cli/commands.h"
#include "common/base/file_util.h"
#include "common/rpc/health_server.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace alignd::cli {
namespace {

using ::testing::HasSubstr;

struct Result {
  int code;
  std::string out, err;
};

Result Alignctl(const Args& args) {
  std::ostringstream out, err;
  int code = RunAlignctl(args, out, err);
  return {code, out.str(), err.str()};
}

TEST(AlignctlHealth, ExitsZeroWhileServingAndOneAfter) {
  auto server = HealthServer::Start("127.0.0.1:0");
  ASSERT_TRUE(server.ok()) << server.status();
  const std::string address = absl::StrCat("--address=127.0.0.1:", (*server)->port());
  Result r = Alignctl({"health", address});
  EXPECT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("SERVING"));
  (*server)->SetServing(false);
  r = Alignctl({"health", address});
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("NOT_SERVING"));
}

TEST(AlignctlHealth, NobodyListeningIsUnavailableOrDeadline) {
  int port;
  {
    auto server = HealthServer::Start("127.0.0.1:0");
    ASSERT_TRUE(server.ok()) << server.status();
    port = (*server)->port();
  }
  Result r = Alignctl({"health", absl::StrCat("--address=127.0.0.1:", port), "--timeout=1"});
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, ::testing::AnyOf(HasSubstr("UNAVAILABLE"), HasSubstr("DEADLINE_EXCEEDED"))) << r.err;
}

TEST(AlignctlHealth, UnknownServiceIsNotServing) {
  auto server = HealthServer::Start("127.0.0.1:0");
  ASSERT_TRUE(server.ok()) << server.status();
  Result r = Alignctl({"health", absl::StrCat("--address=127.0.0.1:", (*server)->port()), "--service=no.such"});
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("NOT_FOUND")) << r.err;
}

TEST(AlignctlHealth, BadTimeoutIsAUsageError) { EXPECT_EQ(Alignctl({"health", "--timeout=0"}).code, 2); }

class TokenFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = ::testing::TempDir() + "/token_file_test";
    ASSERT_TRUE(MakeDirs(dir_).ok());
  }
  absl::StatusOr<std::string> Token(const Args& args) {
    FlagSet flags("test");
    DeclareTokenFlags(flags, "token");
    absl::Status parsed = flags.Parse(args);
    if (!parsed.ok()) return parsed;
    return TokenFromFlags(flags);
  }
  std::string dir_;
};

TEST_F(TokenFileTest, ReadsTheFileTrimmed) {
  ASSERT_TRUE(WriteFileAtomic(dir_ + "/t", "  abc-123_\n").ok());
  auto token = Token({"--token-file=" + dir_ + "/t"});
  ASSERT_TRUE(token.ok()) << token.status();
  EXPECT_EQ(*token, "abc-123_");
  token = Token({"--token=plain"});
  ASSERT_TRUE(token.ok()) << token.status();
  EXPECT_EQ(*token, "plain");
}

TEST_F(TokenFileTest, BothEmptyOrMissingAreErrorsNamingTheFlag) {
  ASSERT_TRUE(WriteFileAtomic(dir_ + "/t", "abc").ok());
  EXPECT_EQ(Token({"--token=x", "--token-file=" + dir_ + "/t"}).status().code(), absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE(WriteFileAtomic(dir_ + "/empty", " \n").ok());
  auto empty = Token({"--token-file=" + dir_ + "/empty"});
  EXPECT_EQ(empty.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(empty.status().message()), HasSubstr("--token-file"));
  auto missing = Token({"--token-file=" + dir_ + "/none"});
  EXPECT_FALSE(missing.ok());
  EXPECT_THAT(std::string(missing.status().message()), HasSubstr("--token-file"));
}

TEST_F(TokenFileTest, WorkerRefusesAMissingTokenFileBeforeStarting) {
  std::ostringstream out, err;
  int code = RunWorker({"--token-file=" + dir_ + "/none", "--coordinator=127.0.0.1:1"}, out, err);
  EXPECT_EQ(code, 1);
  EXPECT_THAT(err.str(), HasSubstr("--token-file"));
}

}  // namespace
}  // namespace alignd::cli
