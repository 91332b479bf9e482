#include "node/assignment_executor.h"

#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "tests/node/fake_clock.h"

namespace alignd::node {
namespace {

constexpr absl::Duration kRealBound = absl::Seconds(10);  // how long a broken test waits before failing

// Runs each job as the test scripted it: returns a status at once, serves until cancelled (then returns a status),
// or blocks until Release. Records the jobs started and the most that ran at once.
class FakeRunner final : public Runner {
 public:
  absl::Status Run(const v1::Assignment& a, const CancelSignal& cancel) override {
    Script script;
    {
      absl::MutexLock lock(&mu_);
      started_.push_back(a.job_id());
      max_running_ = std::max(max_running_, ++running_);
      script = scripts_[a.job_id()];
    }
    absl::Status status = script.status;
    if (script.mode == Mode::kServe) {
      cancel.Wait();
    } else if (script.mode == Mode::kBlock) {
      absl::MutexLock lock(&mu_);
      const std::string job = a.job_id();
      auto released = [this, &job]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return released_.count(job) > 0; };
      mu_.Await(absl::Condition(&released));
      status = released_[job];
    }
    absl::MutexLock lock(&mu_);
    --running_;
    return status;
  }

  void Returns(const std::string& job, absl::Status status) { Set(job, {Mode::kReturn, std::move(status)}); }
  void Serves(const std::string& job, absl::Status on_cancel = absl::OkStatus()) {
    Set(job, {Mode::kServe, std::move(on_cancel)});
  }
  void Blocks(const std::string& job) { Set(job, {Mode::kBlock, absl::OkStatus()}); }
  void Release(const std::string& job, absl::Status status) {
    absl::MutexLock lock(&mu_);
    released_[job] = std::move(status);
  }
  // The jobs started, once there are at least `n`.
  std::vector<std::string> Started(size_t n) {
    absl::MutexLock lock(&mu_);
    auto enough = [this, n]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return started_.size() >= n; };
    mu_.AwaitWithTimeout(absl::Condition(&enough), kRealBound);
    return started_;
  }
  int max_running() {
    absl::MutexLock lock(&mu_);
    return max_running_;
  }

 private:
  enum class Mode { kReturn, kServe, kBlock };
  struct Script {
    Mode mode = Mode::kReturn;
    absl::Status status;
  };
  void Set(const std::string& job, Script s) {
    absl::MutexLock lock(&mu_);
    scripts_[job] = std::move(s);
  }
  absl::Mutex mu_;
  std::map<std::string, Script> scripts_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, absl::Status> released_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> started_ ABSL_GUARDED_BY(mu_);
  int running_ ABSL_GUARDED_BY(mu_) = 0;
  int max_running_ ABSL_GUARDED_BY(mu_) = 0;
};

class AssignmentExecutorTest : public ::testing::Test {
 protected:
  AssignmentExecutorTest() : clock_(std::make_shared<FakeClock>()) {}

  // An executor with learner and rollout runners (both `runner_`) and a grace of 2 s.
  void Start() {
    AssignmentExecutor::Runners runners;
    runners[v1::ROLE_LEARNER] = std::make_unique<Forward>(&runner_);
    runners[v1::ROLE_ROLLOUT] = std::make_unique<Forward>(&runner_);
    AssignmentExecutor::Options o;
    o.name = "test-node";
    o.peer_failure_grace = absl::Seconds(2);
    auto executor = AssignmentExecutor::Create(std::move(runners), clock_, o, [this](const v1::JobResult& r) {
      absl::MutexLock lock(&mu_);
      reports_.push_back(r);
      report_times_.push_back(clock_->Now());
    });
    ASSERT_TRUE(executor.ok()) << executor.status();
    executor_ = *std::move(executor);
    executor_->Start();
  }

  void Enqueue(const std::string& job, v1::Role role = v1::ROLE_ROLLOUT, uint32_t rank = 0) {
    v1::Assignment a;
    a.set_job_id(job);
    a.set_attempt(3);
    a.set_role(role);
    a.set_rank(rank);
    executor_->Enqueue(a);
  }
  // A learner rank 0 job that succeeds at once: its report marks that everything queued before it has finished.
  void EnqueueMarker() {
    runner_.Returns("marker", absl::OkStatus());
    Enqueue("marker", v1::ROLE_LEARNER, 0);
  }
  // The reports, once there are at least `n`.
  std::vector<v1::JobResult> Reports(size_t n) {
    absl::MutexLock lock(&mu_);
    auto enough = [this, n]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return reports_.size() >= n; };
    mu_.AwaitWithTimeout(absl::Condition(&enough), kRealBound);
    return reports_;
  }
  std::vector<absl::Time> ReportTimes() {
    absl::MutexLock lock(&mu_);
    return report_times_;
  }

  // The executor owns its runners; these forward to the test's one.
  class Forward final : public Runner {
   public:
    explicit Forward(Runner* r) : r_(r) {}
    absl::Status Run(const v1::Assignment& a, const CancelSignal& c) override { return r_->Run(a, c); }

   private:
    Runner* r_;
  };

  std::shared_ptr<FakeClock> clock_;
  FakeRunner runner_;
  absl::Mutex mu_;
  std::vector<v1::JobResult> reports_ ABSL_GUARDED_BY(mu_);
  std::vector<absl::Time> report_times_ ABSL_GUARDED_BY(mu_);
  std::unique_ptr<AssignmentExecutor> executor_;
};

TEST_F(AssignmentExecutorTest, RunsOneAssignmentAtATimeInOrder) {
  runner_.Blocks("a");
  runner_.Blocks("b");
  Start();
  Enqueue("a");
  Enqueue("b");
  ASSERT_EQ(runner_.Started(1), std::vector<std::string>{"a"});
  std::vector<JobIdentity> held = executor_->Held();
  ASSERT_EQ(held.size(), 2u);
  EXPECT_EQ(held[0].job_id, "a");  // the running one first
  EXPECT_EQ(held[0].attempt, 3u);
  EXPECT_EQ(held[1].job_id, "b");
  runner_.Release("a", absl::OkStatus());
  EXPECT_EQ(runner_.Started(2), (std::vector<std::string>{"a", "b"}));
  runner_.Release("b", absl::OkStatus());
  EnqueueMarker();
  ASSERT_EQ(Reports(1).size(), 1u);
  EXPECT_EQ(runner_.max_running(), 1);
  EXPECT_GE(executor_->done(), 2);  // a and b (the marker counts after its report)
}

TEST_F(AssignmentExecutorTest, OnlyLearnerRankZeroReportsSuccess) {
  runner_.Returns("rollout-job", absl::OkStatus());
  runner_.Returns("rank1-job", absl::OkStatus());
  runner_.Returns("rank0-job", absl::OkStatus());
  Start();
  Enqueue("rollout-job", v1::ROLE_ROLLOUT);
  Enqueue("rank1-job", v1::ROLE_LEARNER, 1);
  Enqueue("rank0-job", v1::ROLE_LEARNER, 0);
  std::vector<v1::JobResult> reports = Reports(1);
  ASSERT_EQ(reports.size(), 1u);
  EXPECT_EQ(reports[0].job_id(), "rank0-job");
  EXPECT_TRUE(reports[0].succeeded());
  EXPECT_EQ(reports[0].attempt(), 3u);
}

TEST_F(AssignmentExecutorTest, CancelStopsTheRunningAssignmentAndDropsQueuedOnes) {
  runner_.Serves("a", absl::CancelledError("stopped"));
  runner_.Returns("b", absl::InvalidArgumentError("never runs"));
  Start();
  Enqueue("a");
  Enqueue("b");
  ASSERT_EQ(runner_.Started(1), std::vector<std::string>{"a"});
  executor_->Cancel("b");  // queued: dropped
  executor_->Cancel("a");  // running: stopped, and a cancelled assignment reports nothing
  EnqueueMarker();
  std::vector<v1::JobResult> reports = Reports(1);
  ASSERT_EQ(reports.size(), 1u);
  EXPECT_EQ(reports[0].job_id(), "marker");
  EXPECT_EQ(runner_.Started(2), (std::vector<std::string>{"a", "marker"}));
}

TEST_F(AssignmentExecutorTest, CancelAllStopsEverything) {
  runner_.Serves("a");
  runner_.Returns("b", absl::OkStatus());
  Start();
  Enqueue("a");
  Enqueue("b", v1::ROLE_LEARNER, 0);
  ASSERT_EQ(runner_.Started(1), std::vector<std::string>{"a"});
  executor_->CancelAll();
  EnqueueMarker();
  ASSERT_EQ(Reports(1).size(), 1u);
  EXPECT_EQ(runner_.Started(2), (std::vector<std::string>{"a", "marker"}));
}

// A node whose lease lapsed registers again only once idle: AwaitIdle waits for a cancelled runner that takes its
// time to return, and gives up at its deadline while one does not.
TEST_F(AssignmentExecutorTest, AwaitIdleWaitsForTheCancelledAssignmentToReturn) {
  runner_.Blocks("slow");  // ignores its cancel, as a runner inside a call it cannot interrupt does
  Start();
  EXPECT_TRUE(executor_->AwaitIdle(clock_->Now()));  // nothing held yet
  Enqueue("slow");
  ASSERT_EQ(runner_.Started(1), std::vector<std::string>{"slow"});
  executor_->CancelAll();
  bool idle = true;
  std::thread waiter([&] { idle = executor_->AwaitIdle(clock_->Now() + absl::Seconds(5)); });
  clock_->WaitForWaiters(1);
  clock_->Advance(absl::Seconds(5));
  waiter.join();
  EXPECT_FALSE(idle);  // still running at the deadline

  std::thread second([&] { idle = executor_->AwaitIdle(clock_->Now() + absl::Seconds(5)); });
  clock_->WaitForWaiters(1);
  runner_.Release("slow", absl::CancelledError("returned late"));
  second.join();
  EXPECT_TRUE(idle);
  EXPECT_EQ(executor_->Held().size(), 0u);
}

TEST_F(AssignmentExecutorTest, ConfigErrorsAreReportedAtOnceAsNotRetryable) {
  runner_.Returns("bad-spec", absl::InvalidArgumentError("job bad-spec: model.path: missing"));
  runner_.Returns("no-model", absl::NotFoundError("models/x: no such folder"));
  Start();
  Enqueue("bad-spec");
  Enqueue("no-model");
  std::vector<v1::JobResult> reports = Reports(2);  // the clock never moves
  ASSERT_EQ(reports.size(), 2u);
  EXPECT_EQ(reports[0].job_id(), "bad-spec");
  EXPECT_FALSE(reports[0].succeeded());
  EXPECT_FALSE(reports[0].retryable());
  EXPECT_EQ(reports[0].message(), "job bad-spec: model.path: missing");
  EXPECT_EQ(reports[1].job_id(), "no-model");
  EXPECT_FALSE(reports[1].retryable());
}

TEST_F(AssignmentExecutorTest, ARoleWithoutARunnerIsAConfigError) {
  Start();
  Enqueue("scores", v1::ROLE_REWARD);
  std::vector<v1::JobResult> reports = Reports(1);
  ASSERT_EQ(reports.size(), 1u);
  EXPECT_FALSE(reports[0].retryable());
  EXPECT_EQ(reports[0].message(), "this worker has no ROLE_REWARD role (job scores)");
}

TEST_F(AssignmentExecutorTest, ARetryableFailureIsReportedAfterTheGracePeriod) {
  runner_.Returns("gang", absl::UnavailableError("peer 10.0.0.2:7000 reset the connection"));
  Start();
  const absl::Time t0 = clock_->Now();
  Enqueue("gang", v1::ROLE_LEARNER, 1);
  ASSERT_TRUE(clock_->WaitForWaiters(1));
  EXPECT_EQ(clock_->NextDeadline(), t0 + absl::Seconds(2));
  clock_->Advance(absl::Milliseconds(1999));
  EXPECT_EQ(clock_->NextDeadline(), t0 + absl::Seconds(2));  // still waiting
  clock_->Advance(absl::Milliseconds(1));
  std::vector<v1::JobResult> reports = Reports(1);
  ASSERT_EQ(reports.size(), 1u);
  EXPECT_TRUE(reports[0].retryable());
  EXPECT_FALSE(reports[0].succeeded());
  EXPECT_EQ(reports[0].message(), "peer 10.0.0.2:7000 reset the connection");
  EXPECT_EQ(ReportTimes()[0], t0 + absl::Seconds(2));
}

TEST_F(AssignmentExecutorTest, ACancelDuringTheGracePeriodReportsNothing) {
  runner_.Returns("gang", absl::DeadlineExceededError("allreduce timed out"));
  Start();
  Enqueue("gang", v1::ROLE_LEARNER, 0);
  ASSERT_TRUE(clock_->WaitForWaiters(1));
  executor_->Cancel("gang");  // the coordinator restarts the gang: the failure is not news
  EnqueueMarker();
  std::vector<v1::JobResult> reports = Reports(1);
  ASSERT_EQ(reports.size(), 1u);
  EXPECT_EQ(reports[0].job_id(), "marker");
}

TEST(IsRetryableTest, ConfigurationErrorsAreNot) {
  EXPECT_FALSE(IsRetryable(absl::InvalidArgumentError("x")));
  EXPECT_FALSE(IsRetryable(absl::NotFoundError("x")));
  EXPECT_FALSE(IsRetryable(absl::PermissionDeniedError("x")));
  EXPECT_FALSE(IsRetryable(absl::UnimplementedError("x")));
  EXPECT_TRUE(IsRetryable(absl::UnavailableError("x")));
  EXPECT_TRUE(IsRetryable(absl::ResourceExhaustedError("x")));
  EXPECT_TRUE(IsRetryable(absl::InternalError("x")));
}

TEST(AssignmentExecutorCreateTest, RejectsBadArguments) {
  auto clock = std::make_shared<FakeClock>();
  auto report = [](const v1::JobResult&) {};
  EXPECT_EQ(AssignmentExecutor::Create({}, nullptr, {}, report).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(AssignmentExecutor::Create({}, clock, {}, nullptr).status().code(), absl::StatusCode::kInvalidArgument);
  AssignmentExecutor::Options o;
  o.peer_failure_grace = absl::Seconds(-1);
  EXPECT_EQ(AssignmentExecutor::Create({}, clock, o, report).status().code(), absl::StatusCode::kInvalidArgument);
  AssignmentExecutor::Runners runners;
  runners[v1::ROLE_LEARNER] = nullptr;
  EXPECT_EQ(AssignmentExecutor::Create(std::move(runners), clock, {}, report).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace alignd::node
