// The learner's calls to its gang's servers (learner/remote.h) end at the job's cancel, not at their deadline: a
// cancelled learner whose peer is unreachable must be free for new work at once (the netns test's after-heal jobs
// waited on one that was not).
#include "learner/remote.h"

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <string>
#include <thread>

#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "common/model/model_config.h"
#include "common/text/tokenizer.h"
#include "proto/alignd.grpc.pb.h"
#include "rollout/service.h"

namespace alignd::learner {
namespace {

// How long a call may take to notice a cancel: far below the five-minute deadlines the services are given, far above
// what a loaded machine needs.
constexpr absl::Duration kPromptly = absl::Seconds(20);

// Holds every Generate until the client goes away, as a peer behind a dead link looks to its caller.
class SilentRollout final : public v1::Rollout::Service {
 public:
  grpc::Status Generate(grpc::ServerContext* context, const v1::GenerateRequest*, v1::GenerateResponse*) override {
    if (!arrived_.HasBeenNotified()) arrived_.Notify();
    while (!context->IsCancelled()) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    return grpc::Status(grpc::StatusCode::CANCELLED, "the client went away");
  }
  absl::Notification arrived_;
};

// Refuses every Score as a server whose assignment has not arrived does (UNAVAILABLE), which a learner retries for
// its arrival window.
class UnassignedReward final : public v1::Reward::Service {
 public:
  grpc::Status Score(grpc::ServerContext*, const v1::ScoreRequest*, v1::ScoreResponse*) override {
    if (!asked_.HasBeenNotified()) asked_.Notify();
    return grpc::Status(grpc::StatusCode::UNAVAILABLE, "this worker serves no job now");
  }
  absl::Notification asked_;
};

class RemoteCancelTest : public ::testing::Test {
 protected:
  void SetUp() override {
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port_);
    builder.RegisterService(&rollout_);
    builder.RegisterService(&reward_);
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    ASSERT_GT(port_, 0);
    services_.rollout_addresses = {"127.0.0.1:" + std::to_string(port_)};
    services_.reward_addresses = services_.rollout_addresses;
    services_.rpc_timeout = absl::Minutes(5);
    services_.arrival_window = absl::Minutes(5);
    services_.cancel = &cancel_;
  }
  void TearDown() override { server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5)); }

  int port_ = 0;
  SilentRollout rollout_;
  UnassignedReward reward_;
  std::unique_ptr<grpc::Server> server_;
  CancelSignal cancel_;
  RemoteServices services_;
};

TEST_F(RemoteCancelTest, AGenerateInFlightEndsAtTheCancel) {
  auto generator = RemoteGenerator::Create(services_);
  ASSERT_TRUE(generator.ok()) << generator.status();
  std::thread canceller([this] {
    rollout_.arrived_.WaitForNotificationWithTimeout(kPromptly);  // the call is in flight
    cancel_.Cancel();
  });
  const absl::Time start = absl::Now();
  rollout::SamplingParams params;
  auto samples = (*generator)->Generate({{1, 2, 3}}, params);
  const absl::Duration took = absl::Now() - start;
  canceller.join();
  ASSERT_TRUE(rollout_.arrived_.HasBeenNotified());
  ASSERT_FALSE(samples.ok());
  EXPECT_EQ(samples.status().code(), absl::StatusCode::kCancelled) << samples.status();
  EXPECT_NE(samples.status().message().find("Generate on 127.0.0.1:"), std::string::npos) << samples.status();
  EXPECT_LT(took, kPromptly);
}

TEST_F(RemoteCancelTest, ARetryingScoreEndsAtTheCancel) {
  auto remote = MakeRemoteReward(services_);
  ASSERT_TRUE(remote.ok()) << remote.status();
  std::thread canceller([this] {
    reward_.asked_.WaitForNotificationWithTimeout(kPromptly);  // refused once: now retrying with backoff
    cancel_.Cancel();
  });
  const absl::Time start = absl::Now();
  reward::ScoreInput input;
  input.prompt = "2+2=";
  input.response = "4";
  auto scores = (*remote)->Score({input});
  const absl::Duration took = absl::Now() - start;
  canceller.join();
  ASSERT_FALSE(scores.ok());
  EXPECT_EQ(scores.status().code(), absl::StatusCode::kCancelled) << scores.status();
  EXPECT_LT(took, kPromptly);
}

TEST_F(RemoteCancelTest, ACallAfterTheCancelDoesNotStart) {
  cancel_.Cancel();
  auto generator = RemoteGenerator::Create(services_);
  ASSERT_TRUE(generator.ok()) << generator.status();
  rollout::SamplingParams params;
  auto samples = (*generator)->Generate({{1, 2, 3}}, params);
  ASSERT_FALSE(samples.ok());
  EXPECT_EQ(samples.status().code(), absl::StatusCode::kCancelled) << samples.status();
  EXPECT_FALSE(rollout_.arrived_.HasBeenNotified());
}

// Two rollout workers, each with the same tiny model, serve a learner's batch in two chunks: every row draws what it
// draws on one worker and in-process (the same seed, each row's index in the whole batch), so a job's samples do not
// change with the number of its rollout workers.
TEST(RemoteGenerator, RowsDrawTheSameOnOneOrTwoWorkersAndInProcess) {
  const auto engine = [] {
    ModelConfig c = TinyLlamaConfig(261, 32, 2, 4, 2, 96);
    c.tie_word_embeddings = false;
    CausalLM model(c);
    model->InitWeights(3);
    rollout::Engine::Options options;
    options.model = model;
    options.tokenizer = std::shared_ptr<const Tokenizer>(MakeByteTokenizer());
    auto made = rollout::Engine::Create(std::move(options));
    EXPECT_TRUE(made.ok()) << made.status();
    return std::move(made).value();
  };
  std::vector<std::unique_ptr<rollout::Engine>> engines;
  std::vector<std::unique_ptr<rollout::RolloutService>> services;
  std::vector<std::unique_ptr<grpc::Server>> servers;
  std::vector<std::string> addresses;
  for (int i = 0; i < 2; ++i) {
    engines.push_back(engine());
    rollout::RolloutService::Options o;
    o.model_name = "tiny";
    services.push_back(std::make_unique<rollout::RolloutService>(engines.back().get(), o));
    int port = 0;
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(services.back().get());
    servers.push_back(builder.BuildAndStart());
    ASSERT_NE(servers.back(), nullptr);
    addresses.push_back("127.0.0.1:" + std::to_string(port));
  }
  const std::vector<std::vector<int32_t>> prompts = {{10, 11}, {12, 13, 14}, {15}, {16, 17, 18, 19}, {20, 21, 22}};
  rollout::SamplingParams params;
  params.temperature = 1;
  params.max_new_tokens = 10;
  params.stop_token_ids = std::vector<int32_t>{};
  params.n = 2;
  params.seed = 42;
  const auto tokens = [](const std::vector<rollout::Sample>& samples) {
    std::vector<std::vector<int32_t>> out;
    for (const rollout::Sample& s : samples) out.push_back(s.token_ids);
    return out;
  };
  auto local = engines[0]->Generate(prompts, params);
  ASSERT_TRUE(local.ok()) << local.status();
  for (size_t workers : {1, 2}) {
    RemoteServices remote;
    remote.rollout_addresses.assign(addresses.begin(), addresses.begin() + static_cast<std::ptrdiff_t>(workers));
    remote.rpc_timeout = absl::Seconds(60);
    auto generator = RemoteGenerator::Create(remote);
    ASSERT_TRUE(generator.ok()) << generator.status();
    auto samples = (*generator)->Generate(prompts, params);
    ASSERT_TRUE(samples.ok()) << samples.status();
    EXPECT_EQ(tokens(*samples), tokens(*local)) << workers << " worker(s)";
  }
  for (auto& server : servers) server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
}

}  // namespace
}  // namespace alignd::learner
