// GangManager over the in-memory job store and a real WorkerRegistry, with a fake clock: what workers' reports do to
// their jobs, and how a gang is released. No gRPC, no sockets, no sleeps.
#include "coordinator/gang_manager.h"

#include <memory>
#include <string>
#include <vector>

#include "coordinator/memory_job_store.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace alignd::coordinator {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::UnorderedElementsAre;

const Principal kAlice{"alice", Role::kUser};

// `learners` learners (batch 12 splits over 1 to 3), at most one restart.
std::string Spec(int learners) {
  return "name: j\nalgorithm: sft\ndata:\n  train: t.jsonl\ntrain:\n  steps: 20\n  batch_size: 12\n"
         "resources:\n  learners: " +
         std::to_string(learners) + "\n  max_restarts: 1\n";
}

class GangManagerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    WorkerRegistry::Options registry_options;
    registry_options.now_ms = [this] { return now_ms_; };
    registry_ = *WorkerRegistry::Create(registry_options);
    JobManager::Options options;
    options.now_ms = [this] { return now_ms_; };
    manager_ = *JobManager::Create(&store_, options);
    gangs_ = std::make_unique<GangManager>(manager_.get(), registry_.get());
  }

  // Submits a job with `size` learners, registers that many workers and places the job on them (SCHEDULED,
  // attempt 1). Returns the job's id; the workers are in workers_.
  std::string Place(int size) {
    auto job = manager_->SubmitJob(kAlice, Spec(size), "");
    EXPECT_TRUE(job.ok()) << job.status();
    workers_.clear();
    for (int i = 0; i < size; ++i) {
      v1::WorkerInfo info;
      info.add_roles(v1::ROLE_LEARNER);
      info.set_device(v1::DEVICE_KIND_CPU);
      info.set_address("127.0.0.1:" + std::to_string(9000 + i));
      auto worker = registry_->Register(info);
      EXPECT_TRUE(worker.ok()) << worker.status();
      EXPECT_TRUE(registry_->Assign(worker->info.worker_id(), job->id, v1::ROLE_LEARNER).ok());
      workers_.push_back(worker->info.worker_id());
    }
    EXPECT_TRUE(manager_->MarkScheduled(job->id, "placed").ok());
    return job->id;
  }

  JobRecord Job(const std::string& id) { return *manager_->GetJob(kAlice, id); }
  std::vector<EventRecord> Events(const std::string& id) { return *manager_->ListEvents(kAlice, id); }
  // The job ids of the cancellations waiting for `worker`.
  std::vector<std::string> Cancels(const std::string& worker) {
    std::vector<std::string> out;
    for (const v1::CoordinatorMessage& m : registry_->TakeOutbox(worker)) {
      if (m.has_cancel_job_id()) out.push_back(m.cancel_job_id());
    }
    return out;
  }
  size_t FreeWorkers() { return registry_->FreeWorkers(v1::DEVICE_KIND_CPU).size(); }

  static v1::Progress Progress(const std::string& job_id, uint64_t step) {
    v1::Progress p;
    p.set_job_id(job_id);
    p.set_step(step);
    return p;
  }
  static v1::JobResult Result(const std::string& job_id, uint32_t attempt, bool succeeded, bool retryable = false,
                              const std::string& message = "") {
    v1::JobResult r;
    r.set_job_id(job_id);
    r.set_attempt(attempt);
    r.set_succeeded(succeeded);
    r.set_retryable(retryable);
    r.set_message(message);
    return r;
  }

  int64_t now_ms_ = 1'000'000;
  MemoryJobStore store_;
  std::unique_ptr<WorkerRegistry> registry_;
  std::unique_ptr<JobManager> manager_;
  std::unique_ptr<GangManager> gangs_;
  std::vector<std::string> workers_;
};

// Release.

TEST_F(GangManagerTest, ReleaseFreesTheGangAndTellsEveryMemberButTheOneThatKnows) {
  const std::string id = Place(3);
  EXPECT_EQ(FreeWorkers(), 0u);
  EXPECT_THAT(gangs_->Release(id, workers_[1]), UnorderedElementsAre(workers_[0], workers_[1], workers_[2]));
  EXPECT_EQ(FreeWorkers(), 3u);
  EXPECT_THAT(Cancels(workers_[0]), ElementsAre(id));
  EXPECT_THAT(Cancels(workers_[1]), IsEmpty());
  EXPECT_THAT(Cancels(workers_[2]), ElementsAre(id));
}

TEST_F(GangManagerTest, ReleaseWithoutAnExceptionTellsThemAll) {
  const std::string id = Place(2);
  EXPECT_EQ(gangs_->Release(id).size(), 2u);
  EXPECT_THAT(Cancels(workers_[0]), ElementsAre(id));
  EXPECT_THAT(Cancels(workers_[1]), ElementsAre(id));
}

TEST_F(GangManagerTest, ReleasingAJobWithoutWorkersFreesNothingAndTellsNoOne) {
  const std::string id = Place(1);
  EXPECT_THAT(gangs_->Release("job-999999"), IsEmpty());
  EXPECT_EQ(FreeWorkers(), 0u);
  EXPECT_THAT(Cancels(workers_[0]), IsEmpty());
  gangs_->Release(id);
  EXPECT_THAT(gangs_->Release(id), IsEmpty());  // a second release finds the gang gone
  EXPECT_THAT(Cancels(workers_[0]), ElementsAre(id));
}

// Progress.

TEST_F(GangManagerTest, ProgressStartsTheJobAndRecordsStepMetricsAndCheckpoint) {
  const std::string id = Place(1);
  now_ms_ += 7'000;
  v1::Progress progress = Progress(id, 12);
  (*progress.mutable_metrics())["train/loss"] = 1.5;
  progress.set_checkpoint_step(10);
  progress.set_checkpoint_path("/runs/j/checkpoint-10");
  ASSERT_TRUE(gangs_->ReportProgress(progress).ok());
  JobRecord job = Job(id);
  EXPECT_EQ(job.state, v1::JOB_STATE_RUNNING);
  EXPECT_EQ(job.step, 12u);
  EXPECT_EQ(job.updated_unix_ms, now_ms_);
  const EventRecord last = Events(id).back();
  EXPECT_EQ(last.message, "step 12; checkpoint step 10 in /runs/j/checkpoint-10");
  EXPECT_EQ(last.unix_ms, now_ms_);
  EXPECT_EQ(last.metrics.at("train/loss"), 1.5);
  EXPECT_EQ(last.metrics.at("checkpoint/step"), 10.0);
  EXPECT_EQ(*manager_->LastCheckpoint(id), 10u);
}

TEST_F(GangManagerTest, ProgressWithoutACheckpointHasNoNote) {
  const std::string id = Place(1);
  ASSERT_TRUE(gangs_->ReportProgress(Progress(id, 3)).ok());
  const EventRecord last = Events(id).back();
  EXPECT_EQ(last.message, "step 3");
  EXPECT_EQ(last.metrics.count("checkpoint/step"), 0u);
}

// Results.

TEST_F(GangManagerTest, SuccessFinishesAScheduledJobAndStopsTheRestOfTheGang) {
  const std::string id = Place(2);
  ASSERT_TRUE(gangs_->ReportResult(workers_[0], Result(id, 1, /*succeeded=*/true)).ok());
  EXPECT_EQ(Job(id).state, v1::JOB_STATE_SUCCEEDED);
  std::vector<v1::JobState> states;
  for (const EventRecord& e : Events(id)) states.push_back(e.state);
  EXPECT_THAT(states, ElementsAre(v1::JOB_STATE_PENDING, v1::JOB_STATE_SCHEDULED, v1::JOB_STATE_RUNNING,
                                  v1::JOB_STATE_SUCCEEDED));
  EXPECT_EQ(FreeWorkers(), 2u);
  EXPECT_THAT(Cancels(workers_[0]), IsEmpty());
  EXPECT_THAT(Cancels(workers_[1]), ElementsAre(id));
}

TEST_F(GangManagerTest, RetryableFailureRestartsTheJobThenFailsItWhenRestartsAreSpent) {
  const std::string id = Place(2);
  ASSERT_TRUE(gangs_->ReportProgress(Progress(id, 1)).ok());
  ASSERT_TRUE(gangs_->ReportResult(workers_[1], Result(id, 1, false, /*retryable=*/true, "NCCL timeout")).ok());
  EXPECT_EQ(Job(id).state, v1::JOB_STATE_RESTARTING);
  EXPECT_THAT(Job(id).message, HasSubstr(workers_[1] + ": NCCL timeout"));
  EXPECT_EQ(FreeWorkers(), 2u);
  EXPECT_THAT(Cancels(workers_[0]), ElementsAre(id));
  EXPECT_THAT(Cancels(workers_[1]), IsEmpty());

  ASSERT_TRUE(registry_->Assign(workers_[0], id, v1::ROLE_LEARNER).ok());
  ASSERT_TRUE(manager_->MarkScheduled(id, "placed again").ok());  // attempt 2, the one restart
  ASSERT_TRUE(gangs_->ReportResult(workers_[0], Result(id, 2, false, /*retryable=*/true, "NCCL timeout")).ok());
  EXPECT_EQ(Job(id).state, v1::JOB_STATE_FAILED);
  EXPECT_THAT(Job(id).message, HasSubstr("failed after 1 restarts"));
}

TEST_F(GangManagerTest, ConfigFailureFailsTheJobAtOnce) {
  const std::string id = Place(1);
  ASSERT_TRUE(gangs_->ReportResult(workers_[0], Result(id, 1, false, /*retryable=*/false, "bad data path")).ok());
  EXPECT_EQ(Job(id).state, v1::JOB_STATE_FAILED);
  EXPECT_EQ(Job(id).message, workers_[0] + ": bad data path");
  EXPECT_EQ(FreeWorkers(), 1u);
}

TEST_F(GangManagerTest, AResultWithoutAnAttemptCountsForTheCurrentOne) {
  const std::string id = Place(1);
  ASSERT_TRUE(gangs_->ReportResult(workers_[0], Result(id, 0, /*succeeded=*/true)).ok());
  EXPECT_EQ(Job(id).state, v1::JOB_STATE_SUCCEEDED);
}

TEST_F(GangManagerTest, AResultForAnAttemptThatIsOverChangesNothing) {
  const std::string id = Place(2);
  const size_t events = Events(id).size();
  ASSERT_TRUE(gangs_->ReportResult(workers_[0], Result(id, 2, false, /*retryable=*/false, "old gang")).ok());
  EXPECT_EQ(Job(id).state, v1::JOB_STATE_SCHEDULED);
  EXPECT_EQ(Events(id).size(), events);
  EXPECT_EQ(FreeWorkers(), 0u);
  EXPECT_THAT(Cancels(workers_[1]), IsEmpty());
}

// Races and errors.

TEST_F(GangManagerTest, ReportsOnACancelledJobAreOkAndTheResultStillReleasesTheGang) {
  const std::string id = Place(2);
  ASSERT_TRUE(manager_->CancelJob(kAlice, id).ok());
  const size_t events = Events(id).size();
  EXPECT_TRUE(gangs_->ReportProgress(Progress(id, 5)).ok());
  EXPECT_TRUE(gangs_->ReportResult(workers_[0], Result(id, 1, /*succeeded=*/true)).ok());
  EXPECT_EQ(Job(id).state, v1::JOB_STATE_CANCELLED);
  EXPECT_EQ(Events(id).size(), events);
  EXPECT_EQ(FreeWorkers(), 2u);
  EXPECT_THAT(Cancels(workers_[1]), ElementsAre(id));
}

TEST_F(GangManagerTest, ReportsOnAnUnknownJobAreNotFound) {
  Place(1);
  EXPECT_EQ(gangs_->ReportProgress(Progress("job-999999", 1)).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(gangs_->ReportResult(workers_[0], Result("job-999999", 1, true)).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(FreeWorkers(), 0u);
}

TEST_F(GangManagerTest, ReportsWithoutAJobIdAreInvalidArgument) {
  EXPECT_EQ(gangs_->ReportProgress(Progress("", 1)).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(gangs_->ReportResult("w-000001", Result("", 1, true)).code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace alignd::coordinator
