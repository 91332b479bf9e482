// WorkerNode end to end in one process: a fake coordinator (WorkerService on a loopback port), the node's real
// control channel, executor, runners and server.
#include "node/node.h"

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "proto/alignd.grpc.pb.h"

namespace alignd::node {
namespace {

constexpr absl::Duration kRealBound = absl::Seconds(20);

class FakeCoordinator final : public v1::WorkerService::Service {
 public:
  grpc::Status Register(grpc::ServerContext*, const v1::RegisterWorkerRequest* q,
                        v1::RegisterWorkerResponse* r) override {
    absl::MutexLock lock(&mu_);
    registered_.push_back(*q);
    r->set_worker_id("w-000001");
    r->set_lease_id("lease-1");
    r->set_credential_key("key");
    return grpc::Status::OK;
  }
  // Writes what Push queued between reads (the node's heartbeats keep the reads coming), records what it reads.
  grpc::Status Control(grpc::ServerContext*,
                       grpc::ServerReaderWriter<v1::CoordinatorMessage, v1::WorkerMessage>* stream) override {
    v1::WorkerMessage m;
    while (true) {
      std::deque<v1::CoordinatorMessage> out;
      {
        absl::MutexLock lock(&mu_);
        out.swap(outbox_);
      }
      for (const auto& o : out) stream->Write(o);
      if (!stream->Read(&m)) break;
      absl::MutexLock lock(&mu_);
      if (!m.has_heartbeat()) received_.push_back(m);
    }
    return grpc::Status::OK;
  }

  void Push(v1::CoordinatorMessage m) {
    absl::MutexLock lock(&mu_);
    outbox_.push_back(std::move(m));
  }
  std::vector<v1::RegisterWorkerRequest> Registered(size_t n) {
    absl::MutexLock lock(&mu_);
    auto enough = [this, n]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return registered_.size() >= n; };
    mu_.AwaitWithTimeout(absl::Condition(&enough), kRealBound);
    return registered_;
  }
  std::vector<v1::WorkerMessage> Received(size_t n) {
    absl::MutexLock lock(&mu_);
    auto enough = [this, n]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return received_.size() >= n; };
    mu_.AwaitWithTimeout(absl::Condition(&enough), kRealBound);
    return received_;
  }

 private:
  absl::Mutex mu_;
  std::vector<v1::RegisterWorkerRequest> registered_ ABSL_GUARDED_BY(mu_);
  std::vector<v1::WorkerMessage> received_ ABSL_GUARDED_BY(mu_);
  std::deque<v1::CoordinatorMessage> outbox_ ABSL_GUARDED_BY(mu_);
};

class WorkerNodeTest : public ::testing::Test {
 protected:
  WorkerNodeTest() {
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port_);
    builder.RegisterService(&coordinator_);
    server_ = builder.BuildAndStart();
  }
  ~WorkerNodeTest() override { server_->Shutdown(std::chrono::system_clock::now()); }

  NodeOptions Options() const {
    NodeOptions o;
    o.coordinator = absl::StrCat("127.0.0.1:", port_);
    o.roles = {v1::ROLE_ROLLOUT};
    o.heartbeat = absl::Milliseconds(20);
    return o;
  }

  FakeCoordinator coordinator_;
  int port_ = 0;
  std::unique_ptr<grpc::Server> server_;
};

TEST_F(WorkerNodeTest, RegistersThePortItsServerIsBoundTo) {
  absl::StatusOr<std::unique_ptr<WorkerNode>> node = WorkerNode::Start(Options());
  ASSERT_TRUE(node.ok()) << node.status();
  std::vector<v1::RegisterWorkerRequest> registered = coordinator_.Registered(1);
  ASSERT_EQ(registered.size(), 1u);
  EXPECT_EQ(registered[0].worker().address(), (*node)->address());
  EXPECT_NE((*node)->address(), "127.0.0.1:0");
  ASSERT_EQ(registered[0].worker().roles_size(), 1);
  EXPECT_EQ(registered[0].worker().roles(0), v1::ROLE_ROLLOUT);
  // The registered address answers: an idle node admits no one without a credential.
  auto stub = v1::Rollout::NewStub(grpc::CreateChannel((*node)->address(), grpc::InsecureChannelCredentials()));
  grpc::ClientContext c;
  c.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  v1::RolloutInfo info;
  EXPECT_EQ(stub->GetInfo(&c, v1::GetInfoRequest(), &info).error_code(), grpc::StatusCode::UNAUTHENTICATED);
}

TEST_F(WorkerNodeTest, ABadSpecIsReportedAsNotRetryable) {
  absl::StatusOr<std::unique_ptr<WorkerNode>> node = WorkerNode::Start(Options());
  ASSERT_TRUE(node.ok()) << node.status();
  ASSERT_EQ(coordinator_.Registered(1).size(), 1u);
  v1::CoordinatorMessage m;
  v1::Assignment* a = m.mutable_assignment();
  a->set_job_id("job-1");
  a->set_attempt(1);
  a->set_role(v1::ROLE_ROLLOUT);
  a->set_spec_yaml("model: [unclosed");
  coordinator_.Push(m);
  std::vector<v1::WorkerMessage> received = coordinator_.Received(1);
  ASSERT_EQ(received.size(), 1u);
  ASSERT_TRUE(received[0].has_result());
  EXPECT_EQ(received[0].lease_id(), "lease-1");
  EXPECT_EQ(received[0].result().job_id(), "job-1");
  EXPECT_FALSE(received[0].result().succeeded());
  EXPECT_FALSE(received[0].result().retryable());
  EXPECT_EQ((*node)->worker_id(), "w-000001");
  (*node)->Stop();
  EXPECT_EQ((*node)->assignments_done(), 1);
}

// ---- errors ----

TEST_F(WorkerNodeTest, StartRejectsBadOptions) {
  NodeOptions o = Options();
  o.roles = {};
  EXPECT_EQ(WorkerNode::Start(o).status().code(), absl::StatusCode::kInvalidArgument);
  o.roles = {v1::ROLE_UNSPECIFIED};
  EXPECT_EQ(WorkerNode::Start(o).status().code(), absl::StatusCode::kInvalidArgument);
  o = Options();
  o.heartbeat = absl::ZeroDuration();
  EXPECT_EQ(WorkerNode::Start(o).status().code(), absl::StatusCode::kInvalidArgument);
  o = Options();
  o.listen = "192.0.2.1:0";  // TEST-NET-1: no interface of this machine has it
  EXPECT_EQ(WorkerNode::Start(o).status().code(), absl::StatusCode::kUnavailable);
}

TEST(LeaseLostDrainBoundTest, TwoMinutesOrALongerCollectiveTimeoutAndHalfAMinute) {
  EXPECT_EQ(LeaseLostDrainBound(absl::ZeroDuration()), absl::Minutes(2));  // the groups' own defaults
  EXPECT_EQ(LeaseLostDrainBound(absl::Seconds(15)), absl::Minutes(2));
  EXPECT_EQ(LeaseLostDrainBound(absl::Minutes(5)), absl::Minutes(5) + absl::Seconds(30));
}

TEST(ParseRolesTest, ParsesAListAndNamesTheUnknownRole) {
  absl::StatusOr<std::vector<v1::Role>> roles = ParseRoles("learner,rollout,reward");
  ASSERT_TRUE(roles.ok()) << roles.status();
  EXPECT_EQ(*roles, (std::vector<v1::Role>{v1::ROLE_LEARNER, v1::ROLE_ROLLOUT, v1::ROLE_REWARD}));
  absl::Status s = ParseRoles("learner,critic").status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(s.message(), "--roles: unknown role \"critic\" (known: learner, rollout, reward)");
  EXPECT_EQ(ParseRoles(",").status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace alignd::node
