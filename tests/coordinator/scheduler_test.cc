// WorkerRegistry leases and the gang Scheduler, with a fake clock (no sleeps).
#include "coordinator/scheduler.h"

#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "coordinator/memory_job_store.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace alignd::coordinator {
namespace {

using ::testing::HasSubstr;

const Principal kAlice{"alice", Role::kUser};

v1::WorkerInfo Worker(std::initializer_list<v1::Role> roles, v1::DeviceKind device = v1::DEVICE_KIND_CPU) {
  v1::WorkerInfo info;
  for (v1::Role r : roles) info.add_roles(r);
  info.set_device(device);
  static int next = 0;  // distinct addresses and ports per worker
  ++next;
  info.set_address("127.0.0.1:" + std::to_string(9000 + next));
  info.set_group_port(static_cast<uint32_t>(20000 + 2 * next));
  info.set_broadcast_port(static_cast<uint32_t>(20001 + 2 * next));
  return info;
}

std::string Spec(int learners, int rollout, const std::string& device = "cpu") {
  return "name: j\nalgorithm: ppo\nmodel:\n  path: m\ndata:\n  train: t.jsonl\ntrain:\n  batch_size: 12\n"
         "rewards: [{type: toy.arithmetic}]\n"
         "resources:\n  learners: " +
         std::to_string(learners) + "\n  rollout_workers: " + std::to_string(rollout) + "\n  device: " + device +
         "\n  max_restarts: 1\n";
}

class SchedulerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    WorkerRegistry::Options registry_options;
    registry_options.now_ms = [this] { return now_ms_; };
    registry_options.lease_ttl = absl::Seconds(10);
    registry_ = *WorkerRegistry::Create(registry_options);
    JobManager::Options options;
    options.now_ms = [this] { return now_ms_; };
    options.capacity = [this](v1::DeviceKind d) { return registry_->FreeCapacity(d); };
    manager_ = *JobManager::Create(&store_, options);
    scheduler_ = std::make_unique<Scheduler>(manager_.get(), registry_.get());
  }

  std::string Submit(const std::string& spec) {
    auto job = manager_->SubmitJob(kAlice, spec, "");
    EXPECT_TRUE(job.ok()) << job.status();
    return job.ok() ? job->id : "";
  }
  WorkerRecord Register(std::initializer_list<v1::Role> roles, v1::DeviceKind device = v1::DEVICE_KIND_CPU) {
    auto w = registry_->Register(Worker(roles, device));
    EXPECT_TRUE(w.ok()) << w.status();
    return *w;
  }
  Scheduler::TickResult Tick() {
    auto result = scheduler_->Tick();
    EXPECT_TRUE(result.ok()) << result.status();
    return result.ok() ? *result : Scheduler::TickResult{};
  }
  JobRecord Job(const std::string& id) { return *manager_->GetJob(kAlice, id); }

  int64_t now_ms_ = 1'000'000;
  MemoryJobStore store_;
  std::unique_ptr<WorkerRegistry> registry_;
  std::unique_ptr<JobManager> manager_;
  std::unique_ptr<Scheduler> scheduler_;
};

TEST_F(SchedulerTest, AJobStartsOnlyWhenItsWholeGangFits) {
  const std::string id = Submit(Spec(2, 1));
  Register({v1::ROLE_LEARNER});
  Tick();
  EXPECT_EQ(Job(id).state, v1::JOB_STATE_PENDING);
  EXPECT_EQ(Job(id).message,
            "waiting for resources: learners (cpu): need 2, 1 free; rollout workers (cpu): need 1, 0 free");
  Register({v1::ROLE_LEARNER});
  Register({v1::ROLE_ROLLOUT});
  auto result = Tick();
  ASSERT_EQ(result.placed.size(), 1u);
  JobRecord job = Job(id);
  EXPECT_EQ(job.state, v1::JOB_STATE_SCHEDULED);
  EXPECT_EQ(job.attempt, 1u);
  EXPECT_EQ(job.message, "placed on w-000001 (learner), w-000002 (learner), w-000003 (rollout)");
  EXPECT_TRUE(registry_->FreeWorkers(v1::DEVICE_KIND_CPU).empty());
}

TEST_F(SchedulerTest, SeveralJobsRunSideBySideAndABigJobDoesNotBlockSmallOnes) {
  const std::string big = Submit(Spec(3, 0));
  const std::string small1 = Submit(Spec(1, 0));
  const std::string small2 = Submit(Spec(1, 0));
  Register({v1::ROLE_LEARNER});
  Register({v1::ROLE_LEARNER});
  Tick();
  EXPECT_EQ(Job(big).state, v1::JOB_STATE_PENDING);
  EXPECT_EQ(Job(small1).state, v1::JOB_STATE_SCHEDULED);
  EXPECT_EQ(Job(small2).state, v1::JOB_STATE_SCHEDULED);
}

TEST_F(SchedulerTest, DeviceKindsDoNotMix) {
  const std::string id = Submit(Spec(1, 0, "cuda"));
  Register({v1::ROLE_LEARNER}, v1::DEVICE_KIND_CPU);
  Tick();
  EXPECT_EQ(Job(id).state, v1::JOB_STATE_PENDING);
  EXPECT_THAT(Job(id).message, HasSubstr("learners (cuda): need 1, 0 free"));
  Register({v1::ROLE_LEARNER}, v1::DEVICE_KIND_CUDA);
  Tick();
  EXPECT_EQ(Job(id).state, v1::JOB_STATE_SCHEDULED);
}

TEST_F(SchedulerTest, LapsedLeaseRestartsTheJobThenFailsItWhenRestartsAreSpent) {
  const std::string id = Submit(Spec(1, 0));  // max_restarts: 1
  WorkerRecord w1 = Register({v1::ROLE_LEARNER});
  Tick();
  ASSERT_TRUE(manager_->MarkRunning(id).ok());
  now_ms_ += 5'000;
  ASSERT_TRUE(registry_->Heartbeat(w1.lease_id).ok());
  now_ms_ += 9'000;  // renewed 9 s ago: still alive
  EXPECT_TRUE(Tick().failed_workers.empty());
  now_ms_ += 1'000;  // 10 s without a heartbeat
  auto result = Tick();
  ASSERT_EQ(result.failed_workers, std::vector<std::string>{"w-000001"});
  EXPECT_EQ(Job(id).state, v1::JOB_STATE_RESTARTING);
  EXPECT_THAT(Job(id).message, HasSubstr("worker w-000001 lease lapsed"));
  EXPECT_EQ(registry_->Heartbeat(w1.lease_id).status().code(), absl::StatusCode::kFailedPrecondition);

  WorkerRecord w2 = Register({v1::ROLE_LEARNER});
  Tick();
  EXPECT_EQ(Job(id).state, v1::JOB_STATE_SCHEDULED);
  EXPECT_EQ(Job(id).attempt, 2u);
  now_ms_ += 10'000;
  Tick();
  EXPECT_EQ(Job(id).state, v1::JOB_STATE_FAILED);
  EXPECT_THAT(Job(id).message, HasSubstr("after 1 restarts"));
}

TEST_F(SchedulerTest, ALapsedLeaseStopsTheRestOfTheGang) {
  const std::string id = Submit(Spec(2, 0));
  WorkerRecord lost = Register({v1::ROLE_LEARNER});
  WorkerRecord alive = Register({v1::ROLE_LEARNER});
  Tick();
  ASSERT_EQ(Job(id).state, v1::JOB_STATE_SCHEDULED);
  registry_->TakeOutbox(alive.info.worker_id());  // its assignment
  now_ms_ += 9'000;
  ASSERT_TRUE(registry_->Heartbeat(alive.lease_id).ok());
  now_ms_ += 1'000;  // `lost` 10 s without a heartbeat, `alive` 1 s
  auto result = Tick();
  ASSERT_EQ(result.failed_workers, std::vector<std::string>{lost.info.worker_id()});
  EXPECT_EQ(Job(id).state, v1::JOB_STATE_RESTARTING);
  auto outbox = registry_->TakeOutbox(alive.info.worker_id());
  ASSERT_EQ(outbox.size(), 1u);
  EXPECT_EQ(outbox[0].cancel_job_id(), id);
  EXPECT_EQ(registry_->FreeWorkers(v1::DEVICE_KIND_CPU).size(), 1u);
}

TEST_F(SchedulerTest, CancelledJobsFreeTheirWorkersAndTellThem) {
  const std::string first = Submit(Spec(1, 0));
  WorkerRecord w = Register({v1::ROLE_LEARNER});
  Tick();
  const std::string second = Submit(Spec(1, 0));
  ASSERT_TRUE(manager_->CancelJob(kAlice, first).ok());
  Tick();
  EXPECT_EQ(Job(second).state, v1::JOB_STATE_SCHEDULED);
  auto outbox = registry_->TakeOutbox(w.info.worker_id());
  ASSERT_EQ(outbox.size(), 3u);
  EXPECT_EQ(outbox[0].assignment().job_id(), first);
  EXPECT_EQ(outbox[1].cancel_job_id(), first);
  EXPECT_EQ(outbox[2].assignment().job_id(), second);
  EXPECT_TRUE(registry_->TakeOutbox(w.info.worker_id()).empty());
}

TEST_F(SchedulerTest, AssignmentsCarryRankWorldSizeAttemptAndSpec) {
  const std::string id = Submit(Spec(2, 1));
  WorkerRecord l0 = Register({v1::ROLE_LEARNER});
  WorkerRecord l1 = Register({v1::ROLE_LEARNER});
  WorkerRecord r0 = Register({v1::ROLE_ROLLOUT});
  Tick();
  auto a0 = registry_->TakeOutbox(l0.info.worker_id());
  auto a1 = registry_->TakeOutbox(l1.info.worker_id());
  auto ar = registry_->TakeOutbox(r0.info.worker_id());
  ASSERT_EQ(a0.size(), 1u);
  ASSERT_EQ(a1.size(), 1u);
  ASSERT_EQ(ar.size(), 1u);
  EXPECT_EQ(a0[0].assignment().rank(), 0u);
  EXPECT_EQ(a1[0].assignment().rank(), 1u);
  EXPECT_EQ(a0[0].assignment().world_size(), 2u);
  EXPECT_EQ(ar[0].assignment().role(), v1::ROLE_ROLLOUT);
  EXPECT_EQ(ar[0].assignment().world_size(), 1u);
  EXPECT_EQ(a0[0].assignment().attempt(), 1u);
  EXPECT_EQ(a0[0].assignment().spec_yaml(), Spec(2, 1));
  // The gang's addresses: learner rank 0's rendezvous ports, the rollout worker's server.
  for (const auto* a : {&a0[0].assignment(), &a1[0].assignment(), &ar[0].assignment()}) {
    EXPECT_EQ(a->rendezvous(), absl::StrCat("127.0.0.1:", l0.info.group_port()));
    EXPECT_EQ(a->broadcast_rendezvous(), absl::StrCat("127.0.0.1:", l0.info.broadcast_port()));
    ASSERT_EQ(a->rollout_addresses_size(), 1);
    EXPECT_EQ(a->rollout_addresses(0), r0.info.address());
    EXPECT_EQ(a->checkpoint_step(), 0u);
  }
}

TEST(PlanGangsTest, MultiRoleWorkersAreKeptForTheRolesOnlyTheyHave) {
  JobRecord job;
  job.id = "job-000001";
  job.resources.set_learners(1);
  job.resources.set_rollout_workers(1);
  job.resources.set_device(v1::DEVICE_KIND_CPU);
  std::vector<WorkerRecord> free(2);
  free[0].info = Worker({v1::ROLE_LEARNER, v1::ROLE_ROLLOUT});
  free[0].info.set_worker_id("both");
  free[1].info = Worker({v1::ROLE_LEARNER});
  free[1].info.set_worker_id("learner");
  auto plan = PlanGangs({job}, free);
  ASSERT_EQ(plan.size(), 1u);
  EXPECT_EQ(plan[0].workers,
            (std::vector<std::pair<std::string, v1::Role>>{{"learner", v1::ROLE_LEARNER}, {"both", v1::ROLE_ROLLOUT}}));
}

TEST(PlanGangsTest, HigherPriorityGoesFirstAndFifoHoldsWithinAPriority) {
  auto job = [](const std::string& id, int priority) {
    JobRecord j;
    j.id = id;
    j.resources.set_learners(1);
    j.resources.set_device(v1::DEVICE_KIND_CPU);
    j.resources.set_priority(priority);
    return j;
  };
  std::vector<WorkerRecord> free(2);
  free[0].info = Worker({v1::ROLE_LEARNER});
  free[0].info.set_worker_id("a");
  free[1].info = Worker({v1::ROLE_LEARNER});
  free[1].info.set_worker_id("b");
  // Oldest first in `waiting`: two ordinary jobs, then an urgent one and a background one.
  auto plan = PlanGangs({job("j1", 0), job("j2", 0), job("j3", 5), job("j4", -1)}, free);
  ASSERT_EQ(plan.size(), 2u);
  EXPECT_EQ(plan[0].job_id, "j3");  // the urgent job, though submitted later
  EXPECT_EQ(plan[1].job_id, "j1");  // then the oldest of equal priority
}

// Registry error paths.

TEST_F(SchedulerTest, RegisterValidatesTheWorker) {
  v1::WorkerInfo none = Worker({});
  EXPECT_EQ(registry_->Register(none).status().code(), absl::StatusCode::kInvalidArgument);
  v1::WorkerInfo no_device = Worker({v1::ROLE_LEARNER}, v1::DEVICE_KIND_UNSPECIFIED);
  EXPECT_THAT(registry_->Register(no_device).status().message(), HasSubstr("worker.device"));
  v1::WorkerInfo no_address = Worker({v1::ROLE_LEARNER});
  no_address.clear_address();
  EXPECT_THAT(registry_->Register(no_address).status().message(), HasSubstr("worker.address"));
  v1::WorkerInfo unknown = Worker({v1::ROLE_LEARNER});
  unknown.set_worker_id("w-999999");
  EXPECT_EQ(registry_->Register(unknown).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(SchedulerTest, ReRegisteringMakesTheOldLeaseStale) {
  WorkerRecord first = Register({v1::ROLE_LEARNER});
  v1::WorkerInfo again = first.info;
  auto second = registry_->Register(again);
  ASSERT_TRUE(second.ok());
  EXPECT_EQ(second->info.worker_id(), first.info.worker_id());
  EXPECT_NE(second->lease_id, first.lease_id);
  EXPECT_EQ(registry_->Heartbeat(first.lease_id).status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(registry_->Heartbeat(second->lease_id).ok());
  EXPECT_EQ(registry_->List().size(), 1u);
}

}  // namespace
}  // namespace alignd::coordinator
