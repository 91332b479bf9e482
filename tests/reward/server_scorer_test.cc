// The `server` reward part against an outside alignd.v1.Reward server on 127.0.0.1: the fields travel, the token is
// sent, retryable failures are retried, others are not, and a slow server hits the part's deadline.
#include <grpcpp/grpcpp.h>
#include <yaml-cpp/yaml.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "proto/alignd.grpc.pb.h"
#include "reward/registry.h"

namespace alignd::reward {
namespace {

using ::testing::HasSubstr;

// Scores len(response) + the item's "bonus" field; part "len" is the length alone. Answers `fail_first` calls with
// `failure` first, checks the bearer token, and sleeps `delay` per call.
class FakeReward final : public v1::Reward::Service {
 public:
  grpc::Status Score(grpc::ServerContext* context, const v1::ScoreRequest* request,
                     v1::ScoreResponse* response) override {
    calls++;
    auto auth = context->client_metadata().find("authorization");
    if (auth == context->client_metadata().end() ||
        std::string(auth->second.data(), auth->second.size()) != "Bearer s3cret") {
      return grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "bad token");
    }
    if (calls <= fail_first) return grpc::Status(failure, "not now");
    std::this_thread::sleep_for(delay);
    for (const v1::ScoreItem& item : request->items()) {
      v1::Score* s = response->add_scores();
      double bonus = item.fields().count("bonus") ? std::stod(item.fields().at("bonus")) : 0;
      s->set_total(static_cast<double>(item.response().size()) + bonus);
      (*s->mutable_parts())["len"] = static_cast<double>(item.response().size());
    }
    return grpc::Status::OK;
  }
  std::atomic<int> calls{0};
  int fail_first = 0;
  grpc::StatusCode failure = grpc::StatusCode::UNAVAILABLE;
  std::chrono::milliseconds delay{0};
};

class ServerPartTest : public ::testing::Test {
 protected:
  void SetUp() override {
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port_);
    builder.RegisterService(&service_);
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    dir_ = std::filesystem::path(::testing::TempDir()) / ("server_part_" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir_);
    std::ofstream(dir_ / "token") << "s3cret\n";
  }
  void TearDown() override {
    server_->Shutdown();
    std::filesystem::remove_all(dir_);
  }

  absl::StatusOr<std::vector<std::optional<double>>> Run(const std::string& extra, std::vector<ScoreInput> inputs) {
    const std::string yaml = absl::StrCat("rewards: [{type: server, address: \"127.0.0.1:", port_, "\", token_file: \"",
                                          (dir_ / "token").string(), "\"", extra, "}]");
    auto parts = ParseRewardParts(YAML::Load(yaml)["rewards"], "job.yaml");
    if (!parts.ok()) return parts.status();
    auto scorers = MakeScorers(*parts, ScorerContext());
    if (!scorers.ok()) return scorers.status();
    return (*scorers)[0].scorer->ScoreBatch(inputs);
  }

  static ScoreInput In(std::string response, std::map<std::string, std::string> fields = {}) {
    ScoreInput in;
    in.prompt = "p";
    in.response = std::move(response);
    in.fields = std::move(fields);
    return in;
  }

  FakeReward service_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
  std::filesystem::path dir_;
};

TEST_F(ServerPartTest, SendsFieldsAndTokenInChunks) {
  auto v = Run(", max_items: 2", {In("abc", {{"bonus", "10"}}), In("de"), In("f", {{"bonus", "0.5"}})});
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(*v, (std::vector<std::optional<double>>{13.0, 2.0, 1.5}));
  EXPECT_EQ(service_.calls.load(), 2);  // 3 items, 2 per call
}

TEST_F(ServerPartTest, TakesOnePartWhenAsked) {
  auto v = Run(", part: len", {In("abc", {{"bonus", "10"}})});
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(*v, (std::vector<std::optional<double>>{3.0}));
  auto missing = Run(", part: nope", {In("abc")});
  ASSERT_TRUE(missing.ok());
  EXPECT_EQ(*missing, (std::vector<std::optional<double>>{std::nullopt}));  // does not apply
}

TEST_F(ServerPartTest, RetriesUnavailableThenSucceeds) {
  service_.fail_first = 2;
  auto v = Run(", retries: 2", {In("ab")});
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(service_.calls.load(), 3);
}

TEST_F(ServerPartTest, GivesUpAfterItsRetries) {
  service_.fail_first = 5;
  auto v = Run(", retries: 1", {In("ab")});
  EXPECT_EQ(v.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(v.status().message()), HasSubstr("reward server 127.0.0.1:"));
  EXPECT_EQ(service_.calls.load(), 2);
}

TEST_F(ServerPartTest, DoesNotRetryAnAnswerThatWillNotChange) {
  service_.fail_first = 1;
  service_.failure = grpc::StatusCode::INVALID_ARGUMENT;
  auto v = Run(", retries: 3", {In("ab")});
  EXPECT_EQ(v.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(service_.calls.load(), 1);
}

TEST_F(ServerPartTest, AWrongTokenIsUnauthenticated) {
  std::ofstream(dir_ / "token") << "guess\n";
  auto v = Run("", {In("ab")});
  EXPECT_EQ(v.status().code(), absl::StatusCode::kUnauthenticated);
}

TEST_F(ServerPartTest, ASlowServerMeetsTheDeadline) {
  service_.delay = std::chrono::milliseconds(500);
  const auto start = std::chrono::steady_clock::now();
  auto v = Run(", deadline_ms: 50, retries: 0", {In("ab")});
  EXPECT_EQ(v.status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(450));
}

TEST_F(ServerPartTest, AMissingTokenFileIsNamed) {
  auto parts = ParseRewardParts(YAML::Load(absl::StrCat("rewards: [{type: server, address: \"127.0.0.1:", port_,
                                                        "\", token_file: /nonexistent/t}]"))["rewards"],
                                "job.yaml");
  ASSERT_TRUE(parts.ok()) << parts.status();  // files are read when the part is made, on the machine that runs it
  auto scorers = MakeScorers(*parts, ScorerContext());
  EXPECT_EQ(scorers.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(scorers.status().message()), HasSubstr("rewards[0].token_file:"));
}

}  // namespace
}  // namespace alignd::reward
