// `alignd reward` and `alignd rollout` in-process (cli/serve_commands.h): flags, a real port, one call each.
#include "cli/serve_commands.h"

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <fstream>
#include <sstream>
#include <thread>

#include "common/model/hf_model.h"
#include "common/model/model_config.h"
#include "common/text/tokenizer.h"
#include "gtest/gtest.h"
#include "proto/alignd.grpc.pb.h"

namespace alignd::cli {
namespace {

// Runs a Serve* function on a thread; Port() waits for it to listen.
class ServerThread {
 public:
  using ServeFn = int (*)(const Args&, std::ostream&, std::ostream&, const std::function<void(int)>&,
                          absl::Notification*);
  ServerThread(ServeFn serve, Args args) {
    thread_ = std::thread([this, serve, args] {
      code_ = serve(
          args, out_, err_,
          [this](int port) {
            port_ = port;
            ready_.Notify();
          },
          &stop_);
      if (!ready_.HasBeenNotified()) ready_.Notify();
    });
  }
  ~ServerThread() { Stop(); }
  int Port() {
    ready_.WaitForNotification();
    return port_;
  }
  int Stop() {
    if (!stop_.HasBeenNotified()) stop_.Notify();
    if (thread_.joinable()) thread_.join();
    return code_;
  }
  std::string err() const { return err_.str(); }

 private:
  std::ostringstream out_, err_;
  absl::Notification ready_, stop_;
  int port_ = 0;
  int code_ = -1;
  std::thread thread_;
};

std::shared_ptr<grpc::Channel> Connect(int port) {
  return grpc::CreateChannel("127.0.0.1:" + std::to_string(port), grpc::InsecureChannelCredentials());
}

void SetDeadline(grpc::ClientContext* context) {
  context->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
}

TEST(RewardServerCommandTest, ServesTheRewardsOfAFile) {
  const std::string file = ::testing::TempDir() + "/serve-rewards.yaml";
  std::ofstream(file) << "rewards:\n"
                         "  - {type: answer_match, field: answer, weight: 2}\n"
                         "  - {type: format, name: refusal, pattern: \"can't\", weight: -1}\n";
  ServerThread server(&ServeReward, {"--listen=127.0.0.1:0", "--rewards=" + file});
  ASSERT_GT(server.Port(), 0) << server.err();
  auto stub = alignd::v1::Reward::NewStub(Connect(server.Port()));
  alignd::v1::ScoreRequest request;
  alignd::v1::ScoreItem* item = request.add_items();
  item->set_response("3 + 4 = 7");
  (*item->mutable_fields())["answer"] = "7";
  alignd::v1::ScoreResponse response;
  grpc::ClientContext context;
  SetDeadline(&context);
  grpc::Status status = stub->Score(&context, request, &response);
  ASSERT_TRUE(status.ok()) << status.error_message();
  ASSERT_EQ(response.scores_size(), 1);
  EXPECT_DOUBLE_EQ(response.scores(0).total(), 2.0);
  EXPECT_EQ(response.scores(0).parts().size(), 2u);
  EXPECT_EQ(server.Stop(), 0);
}

TEST(RewardServerCommandTest, NoRewardsIsAUsageError) {
  std::ostringstream out, err;
  absl::Notification stop;
  EXPECT_EQ(ServeReward(
                {"--listen=127.0.0.1:0"}, out, err, [](int) {}, &stop),
            2);
  EXPECT_NE(err.str().find("--rewards is required"), std::string::npos) << err.str();
}

TEST(RewardServerCommandTest, ABadPartIsAUsageErrorNamingItsLine) {
  const std::string file = ::testing::TempDir() + "/bad-rewards.yaml";
  std::ofstream(file) << "rewards:\n  - {type: toy.brevity}\n  - {type: answer_match}\n";
  std::ostringstream out, err;
  absl::Notification stop;
  EXPECT_EQ(ServeReward(
                {"--listen=127.0.0.1:0", "--rewards=" + file}, out, err, [](int) {}, &stop),
            2);
  EXPECT_NE(err.str().find("bad-rewards.yaml:3: rewards[1].field: is required"), std::string::npos) << err.str();
}

TEST(RolloutServerCommandTest, ServesAModelFolder) {
  ModelConfig c = TinyLlamaConfig(261, 32, 2, 4, 2, 96);
  CausalLM model(c);
  model->InitWeights(1);
  std::string dir = ::testing::TempDir() + "/rollout-model";
  auto tokenizer = MakeByteTokenizer();
  ASSERT_TRUE(SaveModelDir(dir, *model, tokenizer.get()).ok());
  ServerThread server(&ServeRollout, {"--model=" + dir, "--listen=127.0.0.1:0", "--max-request-rows=2"});
  ASSERT_GT(server.Port(), 0) << server.err();
  auto stub = alignd::v1::Rollout::NewStub(Connect(server.Port()));
  alignd::v1::RolloutInfo info;
  grpc::ClientContext info_context;
  SetDeadline(&info_context);
  ASSERT_TRUE(stub->GetInfo(&info_context, alignd::v1::GetInfoRequest(), &info).ok());
  EXPECT_EQ(info.model(), dir);
  EXPECT_EQ(info.max_request_rows(), 2u);
  alignd::v1::GenerateRequest request;
  request.add_prompts("hi");
  request.mutable_sampling()->set_max_new_tokens(4);
  request.mutable_sampling()->set_n(3);  // 3 rows > 2
  alignd::v1::GenerateResponse response;
  grpc::ClientContext context;
  SetDeadline(&context);
  EXPECT_EQ(stub->Generate(&context, request, &response).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(server.Stop(), 0);
}

TEST(RolloutServerCommandTest, MissingModelIsAUsageError) {
  std::ostringstream out, err;
  absl::Notification stop;
  EXPECT_EQ(ServeRollout(
                {}, out, err, [](int) {}, &stop),
            2);
}

}  // namespace
}  // namespace alignd::cli
