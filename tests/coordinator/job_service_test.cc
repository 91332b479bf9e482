// JobService end to end: a CoordinatorServer on 127.0.0.1:0 (and the same body over its in-process channel), a
// JobClient with a deadline on every call, and a tokens file with an admin, two users and a worker.
#include <grpcpp/grpcpp.h>
#include <grpcpp/impl/codegen/client_unary_call.h>

#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "coordinator/coordinator_server.h"
#include "coordinator/job_client.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace alignd::coordinator {
namespace {

using ::testing::HasSubstr;

constexpr char kAdminToken[] = "admin-token-0123456789";
constexpr char kAliceToken[] = "alice-token-0123456789";
constexpr char kBobToken[] = "bob-token-0123456789ab";
constexpr char kWorkerToken[] = "worker-token-012345678";

constexpr char kSpec[] = R"(name: tiny
algorithm: sft
data:
  train: data/toy/sft_train.jsonl
resources:
  learners: 1
)";

class JobServiceTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    const std::string tokens = ::testing::TempDir() + "/tokens";
    std::ofstream(tokens) << "# token name role\n"
                          << kAdminToken << " root admin\n"
                          << kAliceToken << " alice user   # a comment\n\n"
                          << kBobToken << " bob user\n"
                          << kWorkerToken << " w1 worker\n";
    CoordinatorServer::Options options;
    options.listen = "127.0.0.1:0";
    options.auth_tokens_file = tokens;
    options.max_receive_message_bytes = 2 << 20;
    auto server = CoordinatorServer::Create(options);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(*server);
    ASSERT_GT(server_->port(), 0);
  }

  std::shared_ptr<grpc::Channel> Channel() {
    if (GetParam() == "inprocess") return server_->InProcessChannel();
    return grpc::CreateChannel(absl::StrCat("127.0.0.1:", server_->port()), grpc::InsecureChannelCredentials());
  }

  JobClient Client(const std::string& token) {
    return JobClient(v1::JobService::NewStub(Channel()), token, absl::Seconds(10));
  }

  std::unique_ptr<CoordinatorServer> server_;
};

TEST_P(JobServiceTest, SubmitGetListCancel) {
  JobClient alice = Client(kAliceToken);
  auto job = alice.Submit(kSpec, "req-1");
  ASSERT_TRUE(job.ok()) << job.status();
  EXPECT_EQ(job->id(), "job-000001");
  EXPECT_EQ(job->state(), v1::JOB_STATE_PENDING);
  EXPECT_EQ(job->owner(), "alice");
  EXPECT_EQ(job->name(), "tiny");
  EXPECT_THAT(job->message(), HasSubstr("learners (cpu): need 1, 0 free"));
  EXPECT_EQ(alice.Submit(kSpec, "req-1")->id(), job->id());

  auto got = alice.Get(job->id());
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->spec_yaml(), kSpec);
  auto list = alice.List({v1::JOB_STATE_PENDING}, 10, "");
  ASSERT_TRUE(list.ok()) << list.status();
  ASSERT_EQ(list->jobs_size(), 1);
  EXPECT_TRUE(list->next_page_token().empty());

  auto cancelled = alice.Cancel(job->id());
  ASSERT_TRUE(cancelled.ok()) << cancelled.status();
  EXPECT_EQ(cancelled->state(), v1::JOB_STATE_CANCELLED);
}

TEST_P(JobServiceTest, ListPagesWithTokens) {
  JobClient alice = Client(kAliceToken);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(alice.Submit(kSpec, "").ok());
  auto page1 = alice.List({}, 2, "");
  ASSERT_TRUE(page1.ok());
  ASSERT_EQ(page1->jobs_size(), 2);
  auto page2 = alice.List({}, 2, page1->next_page_token());
  ASSERT_TRUE(page2.ok());
  ASSERT_EQ(page2->jobs_size(), 1);
  EXPECT_EQ(page2->jobs(0).id(), "job-000003");
}

TEST_P(JobServiceTest, HealthServiceServes) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  grpc::ByteBuffer request, response;  // HealthCheckRequest{service: ""} is the empty message
  grpc::Slice empty("");
  request = grpc::ByteBuffer(&empty, 1);
  auto channel = Channel();
  grpc::Status status = grpc::internal::BlockingUnaryCall<grpc::ByteBuffer, grpc::ByteBuffer>(
      channel.get(), grpc::internal::RpcMethod("/grpc.health.v1.Health/Check", grpc::internal::RpcMethod::NORMAL_RPC),
      &context, request, &response);
  ASSERT_TRUE(status.ok()) << status.error_message();
  std::vector<grpc::Slice> slices;
  ASSERT_TRUE(response.Dump(&slices).ok());
  std::string bytes;
  for (const auto& s : slices) bytes += std::string(reinterpret_cast<const char*>(s.begin()), s.size());
  EXPECT_EQ(bytes, std::string("\x08\x01", 2));  // status: SERVING
}

TEST_P(JobServiceTest, ReflectionListsTheJobService) {
#ifndef ALIGND_HAVE_GRPC_REFLECTION
  GTEST_SKIP() << "built without libgrpc++_reflection";
#endif
  auto channel = Channel();
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  std::unique_ptr<grpc::ClientReaderWriter<grpc::ByteBuffer, grpc::ByteBuffer>> stream(
      grpc::internal::ClientReaderWriterFactory<grpc::ByteBuffer, grpc::ByteBuffer>::Create(
          channel.get(),
          grpc::internal::RpcMethod("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
                                    grpc::internal::RpcMethod::BIDI_STREAMING),
          &context));
  grpc::Slice list_services(std::string("\x3a\x00", 2));  // ServerReflectionRequest{list_services: ""}
  ASSERT_TRUE(stream->Write(grpc::ByteBuffer(&list_services, 1)));
  stream->WritesDone();
  grpc::ByteBuffer response;
  ASSERT_TRUE(stream->Read(&response));
  std::vector<grpc::Slice> slices;
  ASSERT_TRUE(response.Dump(&slices).ok());
  std::string bytes;
  for (const auto& s : slices) bytes += std::string(reinterpret_cast<const char*>(s.begin()), s.size());
  EXPECT_THAT(bytes, HasSubstr("alignd.v1.JobService"));
  EXPECT_THAT(bytes, HasSubstr("grpc.health.v1.Health"));
  EXPECT_TRUE(stream->Finish().ok());
}

// Error paths.

TEST_P(JobServiceTest, NoOrUnknownTokenIsUnauthenticated) {
  EXPECT_EQ(Client("").Submit(kSpec, "").status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(Client("not-a-known-token-at-all").List({}, 0, "").status().code(), absl::StatusCode::kUnauthenticated);
}

TEST_P(JobServiceTest, OtherUsersJobAndWorkerRoleArePermissionDenied) {
  auto job = Client(kAliceToken).Submit(kSpec, "");
  ASSERT_TRUE(job.ok());
  JobClient bob = Client(kBobToken);
  EXPECT_EQ(bob.Get(job->id()).status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(bob.Cancel(job->id()).status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(bob.List({}, 0, "")->jobs_size(), 0);
  EXPECT_EQ(Client(kWorkerToken).Submit(kSpec, "").status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(Client(kWorkerToken).Get(job->id()).status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(Client(kAdminToken).Get(job->id())->owner(), "alice");
  EXPECT_EQ(Client(kAdminToken).List({}, 0, "")->jobs_size(), 1);
}

TEST_P(JobServiceTest, InvalidSpecIsInvalidArgumentNamingTheField) {
  auto job = Client(kAliceToken).Submit("name: x\ndata:\n  train: t.jsonl\nresources:\n  device: tpu\n", "");
  EXPECT_EQ(job.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(job.status().message(), HasSubstr("resources.device"));
}

TEST_P(JobServiceTest, RequestIdReusedWithAnotherSpecIsAlreadyExists) {
  JobClient alice = Client(kAliceToken);
  ASSERT_TRUE(alice.Submit(kSpec, "req-1").ok());
  EXPECT_EQ(alice.Submit(std::string(kSpec) + "seed: 2\n", "req-1").status().code(), absl::StatusCode::kAlreadyExists);
}

TEST_P(JobServiceTest, CancelFinishedIsFailedPreconditionAndUnknownIsNotFound) {
  JobClient alice = Client(kAliceToken);
  auto job = alice.Submit(kSpec, "");
  ASSERT_TRUE(alice.Cancel(job->id()).ok());
  EXPECT_EQ(alice.Cancel(job->id()).status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(alice.Cancel("job-999999").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(alice.Get("job-999999").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(alice.Get("").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(alice.List({}, 0, "garbage").status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_P(JobServiceTest, OversizedRequestIsResourceExhausted) {
  std::string huge = std::string(kSpec) + "# " + std::string(3 << 20, 'x') + "\n";
  EXPECT_EQ(Client(kAliceToken).Submit(huge, "").status().code(), absl::StatusCode::kResourceExhausted);
}

TEST_P(JobServiceTest, WatchStreamsEveryEventUntilTheJobEnds) {
  JobClient alice = Client(kAliceToken);
  auto job = alice.Submit(kSpec, "");
  ASSERT_TRUE(job.ok());
  JobManager* manager = server_->manager();
  // The scheduler's side runs while the watch is open; whatever the interleaving, the stream carries every event.
  std::thread scheduler([&] {
    ASSERT_TRUE(manager->MarkScheduled(job->id(), "placed").ok());
    ASSERT_TRUE(manager->MarkRunning(job->id()).ok());
    ASSERT_TRUE(manager->MarkSucceeded(job->id()).ok());
  });
  std::vector<v1::JobState> states;
  absl::Status status = alice.Watch(job->id(), absl::Seconds(30), [&](const v1::JobEvent& e) {
    EXPECT_EQ(e.job_id(), job->id());
    states.push_back(e.state());
  });
  scheduler.join();
  EXPECT_TRUE(status.ok()) << status;
  EXPECT_EQ(states, (std::vector<v1::JobState>{v1::JOB_STATE_PENDING, v1::JOB_STATE_SCHEDULED, v1::JOB_STATE_RUNNING,
                                               v1::JOB_STATE_SUCCEEDED}));
}

// What an outside client reads: the job's total steps from its spec, and the step it ended at in the final event.
TEST_P(JobServiceTest, JobsShowTotalStepsAndTheFinalEventTheStepReached) {
  JobClient alice = Client(kAliceToken);
  auto job = alice.Submit(std::string(kSpec) + "train:\n  steps: 12\n", "");
  ASSERT_TRUE(job.ok()) << job.status();
  EXPECT_EQ(job->total_steps(), 12u);
  EXPECT_EQ(alice.Get(job->id())->total_steps(), 12u);
  auto list = alice.List({}, 10, "");
  ASSERT_TRUE(list.ok()) << list.status();
  ASSERT_EQ(list->jobs_size(), 1);
  EXPECT_EQ(list->jobs(0).total_steps(), 12u);

  JobManager* manager = server_->manager();
  ASSERT_TRUE(manager->MarkScheduled(job->id(), "placed").ok());
  ASSERT_TRUE(manager->ReportProgress(job->id(), 12, {{"train/loss", 0.25}}).ok());
  ASSERT_TRUE(manager->MarkSucceeded(job->id()).ok());
  std::vector<v1::JobEvent> events;
  ASSERT_TRUE(alice.Watch(job->id(), absl::Seconds(30), [&](const v1::JobEvent& e) { events.push_back(e); }).ok());
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events.back().state(), v1::JOB_STATE_SUCCEEDED);
  EXPECT_EQ(events.back().step(), 12u);
  auto done = alice.Get(job->id());
  EXPECT_EQ(done->step(), 12u);
  EXPECT_EQ(done->total_steps(), 12u);
}

TEST_P(JobServiceTest, WatchOfAnotherUsersJobIsPermissionDenied) {
  auto job = Client(kAliceToken).Submit(kSpec, "");
  ASSERT_TRUE(job.ok());
  EXPECT_EQ(Client(kBobToken).Watch(job->id(), absl::Seconds(10), [](const v1::JobEvent&) {}).code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(Client(kBobToken).Watch("job-999999", absl::Seconds(10), [](const v1::JobEvent&) {}).code(),
            absl::StatusCode::kNotFound);
}

TEST_P(JobServiceTest, WatchOfAnUnfinishedJobEndsAtItsDeadline) {
  auto job = Client(kAliceToken).Submit(kSpec, "");
  ASSERT_TRUE(job.ok());
  int events = 0;
  absl::Status status =
      Client(kAliceToken).Watch(job->id(), absl::Milliseconds(300), [&](const v1::JobEvent&) { ++events; });
  EXPECT_EQ(status.code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(events, 1);  // PENDING
}

INSTANTIATE_TEST_SUITE_P(Transports, JobServiceTest, ::testing::Values("tcp", "inprocess"),
                         [](const auto& info) { return info.param; });

// Server and client options.

TEST(CoordinatorServerTest, NoTokensOnANonLoopbackAddressIsRefused) {
  CoordinatorServer::Options options;
  options.listen = "0.0.0.0:0";
  EXPECT_EQ(CoordinatorServer::Create(options).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(CoordinatorServerTest, BadTokensFileNamesTheLine) {
  const std::string tokens = ::testing::TempDir() + "/bad_tokens";
  std::ofstream(tokens) << "# ok\nadmin-token-0123456789 root superuser\n";
  CoordinatorServer::Options options;
  options.auth_tokens_file = tokens;
  auto server = CoordinatorServer::Create(options);
  EXPECT_EQ(server.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(server.status().message(), HasSubstr("bad_tokens:2: role"));
}

TEST(CoordinatorServerTest, JobsSurviveARestartOnTheSameDatabase) {
  CoordinatorServer::Options options;
  options.db_path = ::testing::TempDir() + "/restart.db";
  std::string id;
  {
    auto server = CoordinatorServer::Create(options);
    ASSERT_TRUE(server.ok()) << server.status();
    JobClient client(v1::JobService::NewStub((*server)->InProcessChannel()), "", absl::Seconds(10));
    auto job = client.Submit(kSpec, "req-1");
    ASSERT_TRUE(job.ok()) << job.status();
    id = job->id();
  }
  auto server = CoordinatorServer::Create(options);
  ASSERT_TRUE(server.ok()) << server.status();
  JobClient client(v1::JobService::NewStub((*server)->InProcessChannel()), "", absl::Seconds(10));
  EXPECT_EQ(client.Get(id)->state(), v1::JOB_STATE_PENDING);
  EXPECT_EQ(client.Get(id)->total_steps(), 100u);  // kSpec leaves train.steps at its default
  EXPECT_EQ(client.Submit(kSpec, "req-1")->id(), id);
  EXPECT_EQ(client.List({}, 0, "")->jobs_size(), 1);
}

TEST(JobClientTest, RefusesToSendATokenInPlaintextToARemoteAddress) {
  EXPECT_EQ(JobClient::Connect({"coordinator.example.com:7070", "secret", absl::Seconds(1)}).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(JobClient::Connect({"127.0.0.1:7070", "secret", absl::Seconds(1)}).ok());
  EXPECT_TRUE(JobClient::Connect({"localhost:7070", "secret", absl::Seconds(1)}).ok());
  EXPECT_TRUE(JobClient::Connect({"coordinator.example.com:7070", "", absl::Seconds(1)}).ok());
}

TEST(JobClientTest, UnreachableCoordinatorIsUnavailableWithinTheDeadline) {
  auto client = JobClient::Connect({"127.0.0.1:1", "", absl::Seconds(5)});
  ASSERT_TRUE(client.ok());
  auto status = (*client)->Get("job-000001").status();
  EXPECT_TRUE(status.code() == absl::StatusCode::kUnavailable || status.code() == absl::StatusCode::kDeadlineExceeded)
      << status;
}

}  // namespace
}  // namespace alignd::coordinator
