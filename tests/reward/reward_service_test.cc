// alignd.v1.Reward over a real in-process gRPC server: each case runs over Server::InProcessChannel and over a
// 127.0.0.1 port chosen by the OS.
#include "reward/reward_service.h"

#include <grpcpp/grpcpp.h>
#include <yaml-cpp/yaml.h>

#include <chrono>
#include <memory>
#include <thread>

#include "absl/synchronization/notification.h"
#include "gtest/gtest.h"
#include "reward/registry.h"

namespace alignd::reward {
namespace {

// Blocks every batch on `gate` (when set) after announcing itself on `entered`; scores 1 per item.
class GatedScorer : public Scorer {
 public:
  absl::StatusOr<std::vector<std::optional<double>>> ScoreBatch(const std::vector<ScoreInput>& inputs) override {
    if (gate != nullptr) {
      if (!entered.HasBeenNotified()) entered.Notify();
      gate->WaitForNotification();
    }
    return std::vector<std::optional<double>>(inputs.size(), 1.0);
  }
  absl::Notification* gate = nullptr;
  absl::Notification entered;
};

enum class Transport { kInProcess, kLoopbackPort };

class RewardServiceTest : public ::testing::TestWithParam<Transport> {
 protected:
  void SetUp() override {
    RewardCore::Options options;
    options.max_queued_requests = 1;
    options.max_request_items = 4;
    auto parts = ParseRewardParts(YAML::Load(R"(
      - {type: answer_match, name: answer, field: answer}
      - {type: format, name: refusal, pattern: "can't help", weight: -0.5})"),
                                  "test.yaml");
    ASSERT_TRUE(parts.ok()) << parts.status();
    auto scorers = MakeScorers(*parts, ScorerContext());
    ASSERT_TRUE(scorers.ok()) << scorers.status();
    options.scorers = std::move(scorers).value();
    auto gated = std::make_unique<GatedScorer>();
    gated_ = gated.get();
    options.scorers.push_back(WeightedScorer{"gated", 0.0, std::move(gated)});
    auto core = RewardCore::Create(std::move(options));
    ASSERT_TRUE(core.ok()) << core.status();
    core_ = std::move(core).value();
    service_ = std::make_unique<RewardService>(core_.get());
    grpc::ServerBuilder builder;
    int port = 0;
    if (GetParam() == Transport::kLoopbackPort) {
      builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    }
    builder.RegisterService(service_.get());
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    std::shared_ptr<grpc::Channel> channel;
    if (GetParam() == Transport::kLoopbackPort) {
      ASSERT_GT(port, 0);
      channel = grpc::CreateChannel("127.0.0.1:" + std::to_string(port), grpc::InsecureChannelCredentials());
    } else {
      channel = server_->InProcessChannel(grpc::ChannelArguments());
    }
    stub_ = alignd::v1::Reward::NewStub(channel);
  }
  void TearDown() override {
    if (server_) server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
  }

  grpc::Status Call(const alignd::v1::ScoreRequest& request, alignd::v1::ScoreResponse* response,
                    std::chrono::milliseconds timeout = std::chrono::seconds(30)) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + timeout);
    return stub_->Score(&context, request, response);
  }

  static alignd::v1::ScoreRequest Request(int items) {
    alignd::v1::ScoreRequest request;
    for (int i = 0; i < items; ++i) {
      alignd::v1::ScoreItem* item = request.add_items();
      item->set_prompt("What is 2 + 2?");
      item->set_response(i % 2 == 0 ? "2 + 2 = 4" : "I can't help with that.");
      (*item->mutable_fields())["answer"] = "4";
    }
    return request;
  }

  absl::Notification gate_;  // declared before core_: outlives the batch thread that may wait on it
  std::unique_ptr<RewardCore> core_;
  GatedScorer* gated_ = nullptr;
  std::unique_ptr<RewardService> service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<alignd::v1::Reward::Stub> stub_;
};

TEST_P(RewardServiceTest, ScoresEveryItemWithParts) {
  alignd::v1::ScoreResponse response;
  grpc::Status status = Call(Request(2), &response);
  ASSERT_TRUE(status.ok()) << status.error_message();
  ASSERT_EQ(response.scores_size(), 2);
  EXPECT_DOUBLE_EQ(response.scores(0).total(), 1.0);
  EXPECT_DOUBLE_EQ(response.scores(0).parts().at("answer"), 1.0);
  EXPECT_DOUBLE_EQ(response.scores(0).parts().at("refusal"), 0.0);
  EXPECT_DOUBLE_EQ(response.scores(1).total(), -0.5);
  EXPECT_DOUBLE_EQ(response.scores(1).parts().at("refusal"), 1.0);
  EXPECT_EQ(response.scores(1).parts().size(), 3u);
}

// --- Bad requests ---

TEST_P(RewardServiceTest, EmptyBatchIsInvalidArgument) {
  alignd::v1::ScoreResponse response;
  EXPECT_EQ(Call(Request(0), &response).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_P(RewardServiceTest, OversizedRequestIsInvalidArgument) {
  alignd::v1::ScoreResponse response;
  EXPECT_EQ(Call(Request(5), &response).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_P(RewardServiceTest, FullQueueIsResourceExhausted) {
  gated_->gate = &gate_;
  grpc::Status first, second;
  std::thread t1([&] {
    alignd::v1::ScoreResponse r;
    first = Call(Request(1), &r);
  });
  gated_->entered.WaitForNotification();
  std::thread t2([&] {
    alignd::v1::ScoreResponse r;
    second = Call(Request(1), &r);
  });
  core_->AwaitQueued(1);
  alignd::v1::ScoreResponse response;
  EXPECT_EQ(Call(Request(1), &response).error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  gate_.Notify();
  t1.join();
  t2.join();
  EXPECT_TRUE(first.ok()) << first.error_message();
  EXPECT_TRUE(second.ok()) << second.error_message();
}

TEST_P(RewardServiceTest, SlowScoringIsDeadlineExceeded) {
  gated_->gate = &gate_;
  alignd::v1::ScoreResponse response;
  EXPECT_EQ(Call(Request(1), &response, std::chrono::milliseconds(100)).error_code(),
            grpc::StatusCode::DEADLINE_EXCEEDED);
  gate_.Notify();
}

INSTANTIATE_TEST_SUITE_P(Transports, RewardServiceTest,
                         ::testing::Values(Transport::kInProcess, Transport::kLoopbackPort),
                         [](const ::testing::TestParamInfo<Transport>& info) {
                           return info.param == Transport::kInProcess ? "InProcess" : "LoopbackPort";
                         });

}  // namespace
}  // namespace alignd::reward
