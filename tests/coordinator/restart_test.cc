// kill -9 of a coordinator process, then a restart on the same database: no job lost, none duplicated. The
// coordinator runs in a forked child (this file has one test, so gRPC is not initialised before the fork); the
// parent talks to it over loopback, kills it, and restarts a coordinator in-process on the same file.
#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>

#include "absl/strings/str_cat.h"
#include "coordinator/coordinator_server.h"
#include "coordinator/job_client.h"
#include "gtest/gtest.h"

namespace alignd::coordinator {
namespace {

constexpr char kSpec[] = "name: tiny\nalgorithm: sft\ndata:\n  train: data/toy/sft_train.jsonl\n";

// Child: serve `db` on 127.0.0.1:0, write the port to `fd`, wait to be killed.
[[noreturn]] void ServeInChild(const std::string& db, int fd) {
  CoordinatorServer::Options options;
  options.db_path = db;
  auto server = CoordinatorServer::Create(options);
  int port = server.ok() ? (*server)->port() : 0;
  if (write(fd, &port, sizeof(port)) != sizeof(port)) _exit(1);
  while (true) pause();
}

TEST(CoordinatorRestartTest, KillNineLosesAndDuplicatesNothing) {
  const std::string db = ::testing::TempDir() + "/kill9.db";
  int pipe_fds[2];
  ASSERT_EQ(pipe(pipe_fds), 0);
  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) ServeInChild(db, pipe_fds[1]);
  close(pipe_fds[1]);
  int port = 0;
  ASSERT_EQ(read(pipe_fds[0], &port, sizeof(port)), static_cast<ssize_t>(sizeof(port)));
  close(pipe_fds[0]);
  ASSERT_GT(port, 0) << "the child coordinator did not start";

  std::string ids[3];
  {
    auto client = JobClient::Connect({absl::StrCat("127.0.0.1:", port), "", absl::Seconds(10)});
    ASSERT_TRUE(client.ok());
    for (int i = 0; i < 3; ++i) {
      auto job = (*client)->Submit(kSpec, absl::StrCat("req-", i));
      ASSERT_TRUE(job.ok()) << job.status();
      ids[i] = job->id();
    }
    ASSERT_TRUE((*client)->Cancel(ids[1]).ok());
    // A worker registers: the oldest waiting job is placed on it (SCHEDULED) before the crash.
    auto workers = v1::WorkerService::NewStub(
        grpc::CreateChannel(absl::StrCat("127.0.0.1:", port), grpc::InsecureChannelCredentials()));
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    v1::RegisterWorkerRequest request;
    request.mutable_worker()->add_roles(v1::ROLE_LEARNER);
    request.mutable_worker()->set_device(v1::DEVICE_KIND_CPU);
    request.mutable_worker()->set_address("127.0.0.1:9000");
    v1::RegisterWorkerResponse response;
    ASSERT_TRUE(workers->Register(&context, request, &response).ok());
    ASSERT_EQ((*client)->Get(ids[0])->state(), v1::JOB_STATE_SCHEDULED);
  }
  ASSERT_EQ(kill(child, SIGKILL), 0);
  int wstatus = 0;
  ASSERT_EQ(waitpid(child, &wstatus, 0), child);
  ASSERT_TRUE(WIFSIGNALED(wstatus));

  CoordinatorServer::Options options;
  options.db_path = db;
  auto server = CoordinatorServer::Create(options);
  ASSERT_TRUE(server.ok()) << server.status();
  JobClient client(v1::JobService::NewStub((*server)->InProcessChannel()), "", absl::Seconds(10));
  auto list = client.List({}, 0, "");
  ASSERT_TRUE(list.ok()) << list.status();
  ASSERT_EQ(list->jobs_size(), 3);
  // The placed job has no workers after the restart: it waits to be placed again.
  EXPECT_EQ(list->jobs(0).state(), v1::JOB_STATE_RESTARTING);
  EXPECT_EQ(list->jobs(0).attempt(), 1u);
  EXPECT_EQ(list->jobs(1).state(), v1::JOB_STATE_CANCELLED);
  EXPECT_EQ(list->jobs(2).state(), v1::JOB_STATE_PENDING);
  // A client retrying after the crash gets its job back, not a second one; new jobs continue the sequence.
  EXPECT_EQ(client.Submit(kSpec, "req-2")->id(), ids[2]);
  EXPECT_EQ(client.Submit(kSpec, "req-3")->id(), "job-000004");
}

}  // namespace
}  // namespace alignd::coordinator
