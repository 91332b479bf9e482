// WorkerService end to end on 127.0.0.1:0: a worker registers, receives its assignment on the control stream,
// reports progress and the result; stale leases and wrong roles are refused.
#include <grpcpp/grpcpp.h>

#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/rpc/job_credential.h"
#include "coordinator/coordinator_server.h"
#include "coordinator/job_client.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace alignd::coordinator {
namespace {

constexpr char kAliceToken[] = "alice-token-0123456789";
constexpr char kWorkerToken[] = "worker-token-012345678";
constexpr char kSpec[] = "name: tiny\nalgorithm: sft\ndata:\n  train: t.jsonl\nresources:\n  learners: 1\n";

class WorkerServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string tokens = ::testing::TempDir() + "/worker_tokens";
    std::ofstream(tokens) << kAliceToken << " alice user\n" << kWorkerToken << " w worker\n";
    CoordinatorServer::Options options;
    options.auth_tokens_file = tokens;
    options.schedule_every = absl::Hours(1);  // passes run on registration; no timing in these tests
    auto server = CoordinatorServer::Create(options);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    channel_ = grpc::CreateChannel(absl::StrCat("127.0.0.1:", server_->port()), grpc::InsecureChannelCredentials());
    stub_ = v1::WorkerService::NewStub(channel_);
  }

  void Prepare(grpc::ClientContext* context, const std::string& token) {
    context->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    context->AddMetadata("authorization", "Bearer " + token);
  }

  grpc::Status Register(const std::string& token, v1::RegisterWorkerResponse* response) {
    grpc::ClientContext context;
    Prepare(&context, token);
    v1::RegisterWorkerRequest request;
    request.mutable_worker()->add_roles(v1::ROLE_LEARNER);
    request.mutable_worker()->set_device(v1::DEVICE_KIND_CPU);
    request.mutable_worker()->set_address("127.0.0.1:9000");
    return stub_->Register(&context, request, response);
  }

  std::unique_ptr<CoordinatorServer> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::WorkerService::Stub> stub_;
};

TEST_F(WorkerServiceTest, AssignmentProgressAndResultDriveTheJob) {
  JobClient alice(v1::JobService::NewStub(channel_), kAliceToken, absl::Seconds(10));
  auto job = alice.Submit(kSpec, "");
  ASSERT_TRUE(job.ok()) << job.status();
  v1::RegisterWorkerResponse registered;
  ASSERT_TRUE(Register(kWorkerToken, &registered).ok());
  EXPECT_EQ(registered.worker_id(), "w-000001");
  EXPECT_EQ(registered.lease_ttl_ms(), 10000u);
  EXPECT_EQ(alice.Get(job->id())->state(), v1::JOB_STATE_SCHEDULED);

  grpc::ClientContext context;
  Prepare(&context, kWorkerToken);
  auto stream = stub_->Control(&context);
  v1::WorkerMessage heartbeat;
  heartbeat.set_lease_id(registered.lease_id());
  heartbeat.mutable_heartbeat()->set_unix_ms(1);
  ASSERT_TRUE(stream->Write(heartbeat));
  v1::CoordinatorMessage incoming;
  ASSERT_TRUE(stream->Read(&incoming));
  ASSERT_TRUE(incoming.has_assignment());
  EXPECT_EQ(incoming.assignment().job_id(), job->id());
  EXPECT_EQ(incoming.assignment().role(), v1::ROLE_LEARNER);
  EXPECT_EQ(incoming.assignment().world_size(), 1u);
  // The gang's store is this worker's server, and the job's credential verifies with the key it registered with.
  EXPECT_EQ(incoming.assignment().store_address(), "127.0.0.1:9000");
  auto identity = VerifyJobCredential(registered.credential_key(), incoming.assignment().job_credential());
  ASSERT_TRUE(identity.ok()) << identity.status();
  EXPECT_EQ(identity->job_id, job->id());
  EXPECT_EQ(identity->attempt, incoming.assignment().attempt());

  v1::WorkerMessage progress;
  progress.set_lease_id(registered.lease_id());
  progress.mutable_progress()->set_job_id(job->id());
  progress.mutable_progress()->set_step(1);
  (*progress.mutable_progress()->mutable_metrics())["train/loss"] = 2.5;
  ASSERT_TRUE(stream->Write(progress));
  // A failure reported for another attempt (a replaced gang's member) is ignored.
  v1::WorkerMessage stale;
  stale.set_lease_id(registered.lease_id());
  stale.mutable_result()->set_job_id(job->id());
  stale.mutable_result()->set_attempt(incoming.assignment().attempt() + 1);
  stale.mutable_result()->set_succeeded(false);
  stale.mutable_result()->set_retryable(false);
  ASSERT_TRUE(stream->Write(stale));
  v1::WorkerMessage result;
  result.set_lease_id(registered.lease_id());
  result.mutable_result()->set_job_id(job->id());
  result.mutable_result()->set_attempt(incoming.assignment().attempt());
  result.mutable_result()->set_succeeded(true);
  ASSERT_TRUE(stream->Write(result));
  ASSERT_TRUE(stream->WritesDone());
  EXPECT_FALSE(stream->Read(&incoming));
  ASSERT_TRUE(stream->Finish().ok());
  EXPECT_EQ(alice.Get(job->id())->state(), v1::JOB_STATE_SUCCEEDED);
  EXPECT_EQ(alice.Get(job->id())->step(), 1u);
  std::vector<v1::JobEvent> events;
  ASSERT_TRUE(alice.Watch(job->id(), absl::Seconds(10), [&](const v1::JobEvent& e) { events.push_back(e); }).ok());
  ASSERT_EQ(events.size(), 5u);  // PENDING, SCHEDULED, RUNNING, step 1, SUCCEEDED
  EXPECT_EQ(events[3].step(), 1u);
  EXPECT_EQ(events[3].metrics().at("train/loss"), 2.5);
  ASSERT_EQ(server_->workers()->FreeWorkers(v1::DEVICE_KIND_CPU).size(), 1u);
}

TEST_F(WorkerServiceTest, ListWorkersShowsRolesAndJobs) {
  JobClient alice(v1::JobService::NewStub(channel_), kAliceToken, absl::Seconds(10),
                  v1::WorkerService::NewStub(channel_));
  auto job = alice.Submit(kSpec, "");
  ASSERT_TRUE(job.ok());
  v1::RegisterWorkerResponse registered;
  ASSERT_TRUE(Register(kWorkerToken, &registered).ok());
  auto workers = alice.ListWorkers();
  ASSERT_TRUE(workers.ok()) << workers.status();
  ASSERT_EQ(workers->workers_size(), 1);
  EXPECT_EQ(workers->workers(0).worker().worker_id(), "w-000001");
  EXPECT_EQ(workers->workers(0).job_id(), job->id());
  EXPECT_EQ(workers->workers(0).assigned_role(), v1::ROLE_LEARNER);
  JobClient anonymous(v1::JobService::NewStub(channel_), "", absl::Seconds(10), v1::WorkerService::NewStub(channel_));
  EXPECT_EQ(anonymous.ListWorkers().status().code(), absl::StatusCode::kUnauthenticated);
}

// Error paths.

TEST_F(WorkerServiceTest, StaleLeaseIsToldToRegisterAgain) {
  grpc::ClientContext context;
  Prepare(&context, kWorkerToken);
  auto stream = stub_->Control(&context);
  v1::WorkerMessage heartbeat;
  heartbeat.set_lease_id("lease-404");
  heartbeat.mutable_heartbeat();
  ASSERT_TRUE(stream->Write(heartbeat));
  v1::CoordinatorMessage incoming;
  ASSERT_TRUE(stream->Read(&incoming));
  EXPECT_EQ(incoming.stale_lease(), "lease-404");
  EXPECT_EQ(stream->Finish().error_code(), grpc::StatusCode::FAILED_PRECONDITION);
}

TEST_F(WorkerServiceTest, UserTokenIsPermissionDeniedAndNoTokenUnauthenticated) {
  v1::RegisterWorkerResponse response;
  EXPECT_EQ(Register(kAliceToken, &response).error_code(), grpc::StatusCode::PERMISSION_DENIED);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  v1::RegisterWorkerRequest request;
  EXPECT_EQ(stub_->Register(&context, request, &response).error_code(), grpc::StatusCode::UNAUTHENTICATED);
}

TEST_F(WorkerServiceTest, InvalidWorkerIsInvalidArgument) {
  grpc::ClientContext context;
  Prepare(&context, kWorkerToken);
  v1::RegisterWorkerRequest request;  // no roles
  v1::RegisterWorkerResponse response;
  grpc::Status status = stub_->Register(&context, request, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), ::testing::HasSubstr("worker.roles"));
}

TEST_F(WorkerServiceTest, WorkerTokenCannotUseTheJobApi) {
  JobClient worker(v1::JobService::NewStub(channel_), kWorkerToken, absl::Seconds(10));
  EXPECT_EQ(worker.Submit(kSpec, "").status().code(), absl::StatusCode::kPermissionDenied);
}

}  // namespace
}  // namespace alignd::coordinator
