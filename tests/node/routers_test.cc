#include "node/routers.h"

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "common/rpc/job_credential.h"

namespace alignd::node {
namespace {

constexpr char kWorkerToken[] = "worker-secret";

// The admission of a node whose held jobs the test sets.
class AdmissionTest : public ::testing::Test {
 protected:
  AdmissionTest() : admission_(kWorkerToken, [this] { return Held(); }) { admission_.SetCredentialKey(key_); }

  void Hold(std::vector<JobIdentity> held) {
    absl::MutexLock lock(&mu_);
    held_ = std::move(held);
  }
  std::vector<JobIdentity> Held() {
    absl::MutexLock lock(&mu_);
    return held_;
  }
  std::string Bearer(const std::string& job, uint32_t attempt) const {
    return "Bearer " + MintJobCredential(key_, job, attempt);
  }
  absl::StatusCode Code(const std::string& authorization) { return admission_.Admit(authorization).status().code(); }

  const std::string key_ = NewCredentialKey();
  absl::Mutex mu_;
  std::vector<JobIdentity> held_ ABSL_GUARDED_BY(mu_);
  Admission admission_;
};

TEST_F(AdmissionTest, AdmitsTheJobItHolds) {
  Hold({{"job-a", 2}, {"job-b", 1}});
  absl::StatusOr<JobIdentity> id = admission_.Admit(Bearer("job-a", 2));
  ASSERT_TRUE(id.ok()) << id.status();
  EXPECT_EQ(id->job_id, "job-a");
  EXPECT_EQ(id->attempt, 2u);
  // A queued job is held too (its gang may call a moment before it runs here).
  id = admission_.Admit(Bearer("job-b", 1));
  ASSERT_TRUE(id.ok()) << id.status();
  EXPECT_EQ(id->job_id, "job-b");
}

TEST_F(AdmissionTest, TheWorkerTokenReachesTheRunningJob) {
  Hold({{"job-a", 2}, {"job-b", 1}});
  absl::StatusOr<JobIdentity> id = admission_.Admit(std::string("Bearer ") + kWorkerToken);
  ASSERT_TRUE(id.ok()) << id.status();
  EXPECT_EQ(id->job_id, "job-a");
}

// ---- errors ----

TEST_F(AdmissionTest, NoCredentialIsUnauthenticated) {
  Hold({{"job-a", 1}});
  EXPECT_EQ(Code(""), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(Code("Basic dXNlcjpwdw=="), absl::StatusCode::kUnauthenticated);
}

TEST_F(AdmissionTest, ACredentialThatDoesNotVerifyIsUnauthenticated) {
  Hold({{"job-a", 1}});
  EXPECT_EQ(Code("Bearer " + MintJobCredential(NewCredentialKey(), "job-a", 1)), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(Code("Bearer not-a-credential"), absl::StatusCode::kUnauthenticated);
}

TEST_F(AdmissionTest, BeforeRegistrationNoCredentialVerifies) {
  Admission fresh("", [] { return std::vector<JobIdentity>{{"job-a", 1}}; });
  EXPECT_EQ(fresh.Admit(Bearer("job-a", 1)).status().code(), absl::StatusCode::kUnauthenticated);
}

TEST_F(AdmissionTest, AnIdleNodeIsUnavailable) {
  Hold({});
  EXPECT_EQ(Code(Bearer("job-a", 1)), absl::StatusCode::kUnavailable);
  EXPECT_EQ(Code(std::string("Bearer ") + kWorkerToken), absl::StatusCode::kUnavailable);
}

TEST_F(AdmissionTest, AnotherJobIsPermissionDenied) {
  Hold({{"job-a", 1}});
  absl::Status s = admission_.Admit(Bearer("job-z", 1)).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(s.message(), "the credential is for job job-z attempt 1; this worker serves job job-a attempt 1");
}

TEST_F(AdmissionTest, AnEarlierAttemptIsPermissionDenied) {
  Hold({{"job-a", 3}});
  EXPECT_EQ(Code(Bearer("job-a", 2)), absl::StatusCode::kPermissionDenied);
}

TEST_F(AdmissionTest, ALaterAttemptIsUnavailableUntilItArrives) {
  Hold({{"job-a", 3}});
  EXPECT_EQ(Code(Bearer("job-a", 4)), absl::StatusCode::kUnavailable);
  Hold({{"job-a", 4}});
  EXPECT_EQ(Code(Bearer("job-a", 4)), absl::StatusCode::kOk);
}

// ---- routing, over an in-process channel ----

class FakeRollout final : public v1::Rollout::Service {
 public:
  explicit FakeRollout(std::string model) : model_(std::move(model)) {}
  grpc::Status GetInfo(grpc::ServerContext*, const v1::GetInfoRequest*, v1::RolloutInfo* r) override {
    r->set_model(model_);
    return grpc::Status::OK;
  }

 private:
  std::string model_;
};

class RoutersTest : public AdmissionTest {
 protected:
  RoutersTest() : rollout_(&admission_, absl::Milliseconds(50)), rendezvous_(&admission_) {
    grpc::ServerBuilder builder;
    builder.RegisterService(&rollout_);
    builder.RegisterService(&rendezvous_);
    server_ = builder.BuildAndStart();
    channel_ = server_->InProcessChannel(grpc::ChannelArguments());
  }
  ~RoutersTest() override { server_->Shutdown(); }

  grpc::Status GetInfo(const std::string& authorization, v1::RolloutInfo* info) {
    grpc::ClientContext c;
    if (!authorization.empty()) c.AddMetadata("authorization", authorization);
    c.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    return v1::Rollout::NewStub(channel_)->GetInfo(&c, v1::GetInfoRequest(), info);
  }
  grpc::Status Set(const std::string& authorization, const std::string& key) {
    grpc::ClientContext c;
    c.AddMetadata("authorization", authorization);
    c.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    v1::StoreRequest q;
    q.set_group("learners");
    q.set_op(v1::STORE_OP_SET);
    q.add_keys(key);
    q.set_value("v");
    v1::StoreResponse r;
    return v1::Rendezvous::NewStub(channel_)->Store(&c, q, &r);
  }

  RolloutRouter rollout_;
  RendezvousRouter rendezvous_;
  std::unique_ptr<grpc::Server> server_;
  std::shared_ptr<grpc::Channel> channel_;
};

TEST_F(RoutersTest, ACallReachesTheServiceOfItsJob) {
  Hold({{"job-a", 1}});
  rollout_.slot().Set({"job-a", 1}, std::make_shared<FakeRollout>("job-a-model"));
  v1::RolloutInfo info;
  grpc::Status s = GetInfo(Bearer("job-a", 1), &info);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(info.model(), "job-a-model");
}

TEST_F(RoutersTest, AdmissionComesBeforeTheService) {
  Hold({{"job-a", 1}});
  rollout_.slot().Set({"job-a", 1}, std::make_shared<FakeRollout>("job-a-model"));
  v1::RolloutInfo info;
  EXPECT_EQ(GetInfo("", &info).error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(GetInfo(Bearer("job-z", 1), &info).error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(info.model(), "");
}

TEST_F(RoutersTest, AServiceNotUpIsUnavailable) {
  Hold({{"job-a", 2}});
  rollout_.slot().Set({"job-a", 1}, std::make_shared<FakeRollout>("attempt-1"));  // an old attempt's service
  v1::RolloutInfo info;
  grpc::Status s = GetInfo(Bearer("job-a", 2), &info);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(s.error_message(), "the rollout service of job job-a attempt 2 is not up on this worker");
}

TEST_F(RoutersTest, TheRendezvousStoreServesOnlyWhileOpen) {
  Hold({{"job-a", 1}});
  EXPECT_EQ(Set(Bearer("job-a", 1), "k").error_code(), grpc::StatusCode::UNAVAILABLE);
  rendezvous_.Open({"job-a", 1});
  grpc::Status s = Set(Bearer("job-a", 1), "k");
  EXPECT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(Set(Bearer("job-z", 1), "k").error_code(), grpc::StatusCode::PERMISSION_DENIED);
  rendezvous_.CloseJob("job-a");
  EXPECT_EQ(Set(Bearer("job-a", 1), "k").error_code(), grpc::StatusCode::UNAVAILABLE);
}

}  // namespace
}  // namespace alignd::node
