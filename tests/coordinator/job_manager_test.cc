// JobManager over both stores, with a fake clock and a fake capacity view.
#include "coordinator/job_manager.h"

#include <memory>
#include <string>
#include <thread>

#include "coordinator/memory_job_store.h"
#include "coordinator/sqlite_job_store.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace alignd::coordinator {
namespace {

using ::testing::HasSubstr;

constexpr char kSpec[] = R"(name: tiny
algorithm: ppo
model:
  path: runs/sft/final
data:
  train: data/toy/sft_train.jsonl
rewards: [{type: toy.arithmetic}]
resources:
  learners: 2
  rollout_workers: 1
  max_restarts: 1
train:
  steps: 10
)";

const Principal kAlice{"alice", Role::kUser};
const Principal kBob{"bob", Role::kUser};
const Principal kAdmin{"root", Role::kAdmin};
const Principal kWorker{"w1", Role::kWorker};

class JobManagerTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (GetParam() == "memory") {
      store_ = std::make_unique<MemoryJobStore>();
    } else {
      std::string name = ::testing::UnitTest::GetInstance()->current_test_info()->name();
      for (char& c : name)
        if (c == '/') c = '_';
      auto store = SqliteJobStore::Open(::testing::TempDir() + "/" + name + ".db");
      ASSERT_TRUE(store.ok()) << store.status();
      store_ = std::move(*store);
    }
    JobManager::Options options;
    options.now_ms = [this] { return now_ms_; };
    options.capacity = [this](v1::DeviceKind) { return free_; };
    options.default_page_size = 2;
    auto manager = JobManager::Create(store_.get(), options);
    ASSERT_TRUE(manager.ok()) << manager.status();
    manager_ = std::move(*manager);
  }

  JobRecord Submit(const Principal& who = kAlice, const std::string& request_id = "") {
    auto job = manager_->SubmitJob(who, kSpec, request_id);
    EXPECT_TRUE(job.ok()) << job.status();
    return job.ok() ? *job : JobRecord{};
  }

  // Drives a job to RUNNING.
  void Run(const std::string& id) {
    ASSERT_TRUE(manager_->MarkScheduled(id, "placed").ok());
    ASSERT_TRUE(manager_->MarkRunning(id).ok());
  }

  int64_t now_ms_ = 1'000'000;
  Capacity free_;
  std::unique_ptr<JobStore> store_;
  std::unique_ptr<JobManager> manager_;
};

TEST_P(JobManagerTest, SubmitStoresAPendingJobWithResourcesAndReason) {
  free_.learners = 1;
  JobRecord job = Submit();
  EXPECT_EQ(job.id, "job-000001");
  EXPECT_EQ(job.state, v1::JOB_STATE_PENDING);
  EXPECT_EQ(job.owner, "alice");
  EXPECT_EQ(job.name, "tiny");
  EXPECT_EQ(job.attempt, 0u);
  EXPECT_EQ(job.max_restarts, 1u);
  EXPECT_EQ(job.resources.learners(), 2u);
  EXPECT_EQ(job.resources.rollout_workers(), 1u);
  EXPECT_EQ(job.created_unix_ms, 1'000'000);
  EXPECT_EQ(job.message,
            "waiting for resources: learners (cpu): need 2, 1 free; rollout workers (cpu): need 1, 0 free");
}

TEST_P(JobManagerTest, SameRequestIdReturnsTheSameJob) {
  JobRecord first = Submit(kAlice, "req-1");
  JobRecord again = Submit(kAlice, "req-1");
  EXPECT_EQ(again.id, first.id);
  EXPECT_EQ(manager_->ListJobs(kAdmin, {}, 10, "")->jobs.size(), 1u);
}

TEST_P(JobManagerTest, StateMachineHappyPathRecordsEvents) {
  JobRecord job = Submit();
  now_ms_ += 10;
  auto scheduled = manager_->MarkScheduled(job.id, "placed on w1");
  ASSERT_TRUE(scheduled.ok()) << scheduled.status();
  EXPECT_EQ(scheduled->attempt, 1u);
  ASSERT_TRUE(manager_->MarkRunning(job.id).ok());
  now_ms_ += 10;
  auto done = manager_->MarkSucceeded(job.id);
  ASSERT_TRUE(done.ok());
  EXPECT_EQ(done->state, v1::JOB_STATE_SUCCEEDED);
  EXPECT_EQ(done->updated_unix_ms, 1'000'020);
  auto events = manager_->ListEvents(kAlice, job.id);
  ASSERT_TRUE(events.ok());
  ASSERT_EQ(events->size(), 4u);
  EXPECT_EQ((*events)[0].state, v1::JOB_STATE_PENDING);
  EXPECT_EQ((*events)[1].state, v1::JOB_STATE_SCHEDULED);
  EXPECT_EQ((*events)[1].message, "placed on w1");
  EXPECT_EQ((*events)[2].state, v1::JOB_STATE_RUNNING);
  EXPECT_EQ((*events)[3].state, v1::JOB_STATE_SUCCEEDED);
}

TEST_P(JobManagerTest, RetryableFailureRestartsUntilMaxRestartsThenFails) {
  JobRecord job = Submit();  // max_restarts: 1
  Run(job.id);
  auto restarting = manager_->ReportFailure(job.id, "worker w1 lease lapsed", /*retryable=*/true);
  ASSERT_TRUE(restarting.ok()) << restarting.status();
  EXPECT_EQ(restarting->state, v1::JOB_STATE_RESTARTING);
  EXPECT_THAT(restarting->message, HasSubstr("worker w1 lease lapsed"));
  auto second = manager_->MarkScheduled(job.id, "placed again");
  ASSERT_TRUE(second.ok());
  EXPECT_EQ(second->attempt, 2u);
  ASSERT_TRUE(manager_->MarkRunning(job.id).ok());
  auto failed = manager_->ReportFailure(job.id, "worker w2 exited", /*retryable=*/true);
  ASSERT_TRUE(failed.ok());
  EXPECT_EQ(failed->state, v1::JOB_STATE_FAILED);
  EXPECT_THAT(failed->message, HasSubstr("after 1 restarts"));
}

TEST_P(JobManagerTest, ProgressRunsTheJobAndRecordsStepAndMetrics) {
  JobRecord job = Submit();
  ASSERT_TRUE(manager_->MarkScheduled(job.id, "placed").ok());
  auto running = manager_->ReportProgress(job.id, 7, {{"train/loss", 1.5}});
  ASSERT_TRUE(running.ok()) << running.status();
  EXPECT_EQ(running->state, v1::JOB_STATE_RUNNING);
  EXPECT_EQ(manager_->GetJob(kAlice, job.id)->step, 7u);
  auto events = manager_->ListEvents(kAlice, job.id);
  ASSERT_TRUE(events.ok());
  ASSERT_EQ(events->size(), 4u);  // PENDING, SCHEDULED, RUNNING, progress
  EXPECT_EQ(events->back().step, 7u);
  EXPECT_EQ(events->back().metrics.at("train/loss"), 1.5);
  EXPECT_EQ(events->back().message, "step 7");
  ASSERT_TRUE(manager_->CancelJob(kAlice, job.id).ok());
  EXPECT_EQ(manager_->ReportProgress(job.id, 8, {}).status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST_P(JobManagerTest, TotalStepsComesFromTheSpecAndReachesTheWire) {
  JobRecord job = Submit();  // train.steps: 10
  EXPECT_EQ(job.total_steps, 10u);
  EXPECT_EQ(ToProto(*manager_->GetJob(kAlice, job.id)).total_steps(), 10u);
  EXPECT_EQ(ToProto(manager_->ListJobs(kAlice, {}, 10, "")->jobs.at(0)).total_steps(), 10u);
  // The default train.steps counts too.
  auto defaulted = manager_->SubmitJob(kAlice, "name: d\ndata:\n  train: t.jsonl\n", "");
  ASSERT_TRUE(defaulted.ok()) << defaulted.status();
  EXPECT_EQ(defaulted->total_steps, 100u);
  // Later transitions keep it.
  Run(job.id);
  ASSERT_TRUE(manager_->ReportProgress(job.id, 3, {}).ok());
  EXPECT_EQ(manager_->MarkSucceeded(job.id)->total_steps, 10u);
}

// The final event carries the step the job reached, whichever way it ended.
TEST_P(JobManagerTest, FinalEventCarriesTheStepReached) {
  JobRecord succeeded = Submit();
  JobRecord failed = Submit();
  JobRecord cancelled = Submit();
  for (const JobRecord* job : {&succeeded, &failed, &cancelled}) {
    Run(job->id);
    ASSERT_TRUE(manager_->ReportProgress(job->id, 12, {{"train/loss", 0.5}}).ok());
  }
  ASSERT_TRUE(manager_->MarkSucceeded(succeeded.id).ok());
  ASSERT_TRUE(manager_->ReportFailure(failed.id, "diverged", /*retryable=*/false).ok());
  ASSERT_TRUE(manager_->CancelJob(kAlice, cancelled.id).ok());
  for (const auto& [id, state] :
       {std::pair{succeeded.id, v1::JOB_STATE_SUCCEEDED}, std::pair{failed.id, v1::JOB_STATE_FAILED},
        std::pair{cancelled.id, v1::JOB_STATE_CANCELLED}}) {
    auto events = manager_->ListEvents(kAlice, id);
    ASSERT_TRUE(events.ok()) << events.status();
    EXPECT_EQ(events->back().state, state) << id;
    EXPECT_EQ(events->back().step, 12u) << id;
    EXPECT_TRUE(events->back().metrics.empty()) << id;
    EXPECT_EQ(ToProto(events->back()).step(), 12u) << id;
  }
  // State changes on the way carry no step: only progress and the end do.
  auto events = manager_->ListEvents(kAlice, succeeded.id);
  EXPECT_EQ((*events)[1].state, v1::JOB_STATE_SCHEDULED);
  EXPECT_EQ((*events)[1].step, 0u);
}

TEST_P(JobManagerTest, ConfigErrorFailsAtOnce) {
  JobRecord job = Submit();
  Run(job.id);
  auto failed = manager_->ReportFailure(job.id, "data/toy/sft_train.jsonl: not found", /*retryable=*/false);
  ASSERT_TRUE(failed.ok());
  EXPECT_EQ(failed->state, v1::JOB_STATE_FAILED);
  EXPECT_EQ(failed->attempt, 1u);
}

TEST_P(JobManagerTest, CancelMovesUnfinishedJobsToCancelled) {
  JobRecord pending = Submit();
  JobRecord running = Submit();
  Run(running.id);
  EXPECT_EQ(manager_->CancelJob(kAlice, pending.id)->state, v1::JOB_STATE_CANCELLED);
  auto cancelled = manager_->CancelJob(kAdmin, running.id);
  ASSERT_TRUE(cancelled.ok());
  EXPECT_EQ(cancelled->state, v1::JOB_STATE_CANCELLED);
  EXPECT_EQ(cancelled->message, "cancelled by root");
}

TEST_P(JobManagerTest, ListPagesAndFiltersAndShowsUsersOnlyTheirJobs) {
  for (int i = 0; i < 3; ++i) Submit(kAlice);
  Submit(kBob);
  Run("job-000002");
  auto page1 = manager_->ListJobs(kAlice, {}, 0, "");  // default page size 2
  ASSERT_TRUE(page1.ok());
  ASSERT_EQ(page1->jobs.size(), 2u);
  ASSERT_FALSE(page1->next_page_token.empty());
  auto page2 = manager_->ListJobs(kAlice, {}, 0, page1->next_page_token);
  ASSERT_TRUE(page2.ok());
  ASSERT_EQ(page2->jobs.size(), 1u);
  EXPECT_EQ(page2->jobs[0].id, "job-000003");
  EXPECT_TRUE(page2->next_page_token.empty());
  EXPECT_EQ(manager_->ListJobs(kAdmin, {}, 10, "")->jobs.size(), 4u);
  auto running = manager_->ListJobs(kAdmin, {v1::JOB_STATE_RUNNING}, 10, "");
  ASSERT_EQ(running->jobs.size(), 1u);
  EXPECT_EQ(running->jobs[0].id, "job-000002");
}

TEST_P(JobManagerTest, WaitForEventsReturnsEventsFromAPosition) {
  JobRecord job = Submit();
  ASSERT_TRUE(manager_->MarkScheduled(job.id, "placed").ok());
  auto all = manager_->WaitForEvents(kAlice, job.id, 0, absl::ZeroDuration());
  ASSERT_TRUE(all.ok());
  ASSERT_EQ(all->size(), 2u);
  auto rest = manager_->WaitForEvents(kAlice, job.id, 1, absl::ZeroDuration());
  ASSERT_EQ(rest->size(), 1u);
  EXPECT_EQ((*rest)[0].state, v1::JOB_STATE_SCHEDULED);
  EXPECT_TRUE(manager_->WaitForEvents(kAlice, job.id, 2, absl::ZeroDuration())->empty());
  EXPECT_EQ(manager_->WaitForEvents(kBob, job.id, 0, absl::ZeroDuration()).status().code(),
            absl::StatusCode::kPermissionDenied);
}

TEST_P(JobManagerTest, WaitForEventsWakesOnAChange) {
  JobRecord job = Submit();
  // The waiter either sees the event at once or is woken by it; it never needs its (long) timeout.
  std::thread waiter([&] {
    auto events = manager_->WaitForEvents(kAlice, job.id, 1, absl::Seconds(60));
    ASSERT_TRUE(events.ok());
    ASSERT_EQ(events->size(), 1u);
    EXPECT_EQ((*events)[0].state, v1::JOB_STATE_CANCELLED);
  });
  ASSERT_TRUE(manager_->CancelJob(kAlice, job.id).ok());
  waiter.join();
}

TEST_P(JobManagerTest, RecoverAfterRestartReplacesScheduledAndRunningJobs) {
  JobRecord pending = Submit();
  JobRecord scheduled = Submit();
  JobRecord running = Submit();
  JobRecord done = Submit();
  ASSERT_TRUE(manager_->MarkScheduled(scheduled.id, "placed").ok());
  Run(running.id);
  Run(done.id);
  ASSERT_TRUE(manager_->MarkSucceeded(done.id).ok());
  auto moved = manager_->RecoverAfterRestart();
  ASSERT_TRUE(moved.ok()) << moved.status();
  EXPECT_EQ(*moved, 2);
  EXPECT_EQ(manager_->GetJob(kAlice, pending.id)->state, v1::JOB_STATE_PENDING);
  EXPECT_EQ(manager_->GetJob(kAlice, scheduled.id)->state, v1::JOB_STATE_RESTARTING);
  EXPECT_EQ(manager_->GetJob(kAlice, running.id)->state, v1::JOB_STATE_RESTARTING);
  EXPECT_EQ(manager_->GetJob(kAlice, running.id)->attempt, 1u);
  EXPECT_EQ(manager_->GetJob(kAlice, done.id)->state, v1::JOB_STATE_SUCCEEDED);
  EXPECT_EQ(*manager_->RecoverAfterRestart(), 0);
}

TEST_P(JobManagerTest, RefreshPendingReasonsFollowsCapacity) {
  JobRecord job = Submit();
  free_ = Capacity{2, 1, 0};
  auto changed = manager_->RefreshPendingReasons();
  ASSERT_TRUE(changed.ok());
  EXPECT_EQ(*changed, 1);
  EXPECT_EQ(manager_->GetJob(kAlice, job.id)->message, "waiting for the scheduler");
  EXPECT_EQ(*manager_->RefreshPendingReasons(), 0);
}

// Error paths.

TEST_P(JobManagerTest, InvalidSpecNamesTheField) {
  // The resources section is stripped before the train spec is parsed, keeping the user's line numbers.
  auto bad_train = manager_->SubmitJob(
      kAlice, "name: x\nresources:\n  learners: 1\ndata:\n  train: t.jsonl\ntrain:\n  lr: -1\n", "");
  EXPECT_EQ(bad_train.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad_train.status().message(), HasSubstr("spec:7:"));
  EXPECT_THAT(bad_train.status().message(), HasSubstr("lr"));
  auto bad_resources = manager_->SubmitJob(kAlice, "name: x\nresources:\n  learners: 0\n", "");
  EXPECT_EQ(bad_resources.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad_resources.status().message(), HasSubstr("spec:3: resources.learners"));
  auto unknown = manager_->SubmitJob(kAlice, "name: x\nresources:\n  gpus: 1\n", "");
  EXPECT_EQ(unknown.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(unknown.status().message(), HasSubstr("resources.gpus"));
  EXPECT_EQ(manager_->SubmitJob(kAlice, "", "").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(manager_->SubmitJob(kAlice, kSpec, std::string(200, 'r')).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(manager_->ListJobs(kAdmin, {}, 10, "")->jobs.empty());
}

TEST_P(JobManagerTest, SameRequestIdWithAnotherSpecIsAlreadyExists) {
  Submit(kAlice, "req-1");
  std::string other = std::string(kSpec) + "seed: 7\n";
  auto again = manager_->SubmitJob(kAlice, other, "req-1");
  EXPECT_EQ(again.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_THAT(again.status().message(), HasSubstr("job-000001"));
}

TEST_P(JobManagerTest, CancelFinishedJobIsFailedPrecondition) {
  JobRecord job = Submit();
  ASSERT_TRUE(manager_->CancelJob(kAlice, job.id).ok());
  EXPECT_EQ(manager_->CancelJob(kAlice, job.id).status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST_P(JobManagerTest, UnknownJobIsNotFound) {
  EXPECT_EQ(manager_->GetJob(kAlice, "job-424242").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(manager_->CancelJob(kAlice, "job-424242").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(manager_->GetJob(kAlice, "").status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_P(JobManagerTest, OtherUsersJobIsPermissionDenied) {
  JobRecord job = Submit(kAlice);
  EXPECT_EQ(manager_->GetJob(kBob, job.id).status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(manager_->CancelJob(kBob, job.id).status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_TRUE(manager_->ListJobs(kBob, {}, 10, "")->jobs.empty());
  EXPECT_EQ(manager_->GetJob(kAdmin, job.id)->id, job.id);
}

TEST_P(JobManagerTest, WorkerRoleCannotUseTheJobApi) {
  EXPECT_EQ(manager_->SubmitJob(kWorker, kSpec, "").status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(manager_->ListJobs(kWorker, {}, 0, "").status().code(), absl::StatusCode::kPermissionDenied);
}

TEST_P(JobManagerTest, IllegalTransitionsAreFailedPrecondition) {
  JobRecord job = Submit();
  EXPECT_EQ(manager_->MarkRunning(job.id).status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(manager_->MarkSucceeded(job.id).status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(manager_->ReportFailure(job.id, "x", true).status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(manager_->GetJob(kAlice, job.id)->state, v1::JOB_STATE_PENDING);
}

TEST_P(JobManagerTest, BadPageTokenIsInvalidArgument) {
  EXPECT_EQ(manager_->ListJobs(kAlice, {}, 0, "not-a-token").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(manager_->ListJobs(kAlice, {v1::JOB_STATE_UNSPECIFIED}, 0, "").status().code(),
            absl::StatusCode::kInvalidArgument);
}

INSTANTIATE_TEST_SUITE_P(Stores, JobManagerTest, ::testing::Values("memory", "sqlite"),
                         [](const auto& info) { return info.param; });

// Pure helpers.

TEST(PendingReasonTest, EmptyWhenEverythingFits) {
  v1::Resources wanted;
  wanted.set_learners(2);
  wanted.set_device(v1::DEVICE_KIND_CUDA);
  EXPECT_EQ(PendingReason(wanted, Capacity{2, 0, 0}), "");
  EXPECT_EQ(PendingReason(wanted, Capacity{1, 5, 5}), "waiting for resources: learners (cuda): need 2, 1 free");
}

}  // namespace
}  // namespace alignd::coordinator
