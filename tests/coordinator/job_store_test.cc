// The same contract tests run against MemoryJobStore and SqliteJobStore; SQLite adds re-open tests.
#include <sqlite3.h>

#include <cstdio>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "coordinator/memory_job_store.h"
#include "coordinator/sqlite_job_store.h"
#include "gtest/gtest.h"

namespace alignd::coordinator {
namespace {

std::string DbPath(const std::string& name) { return ::testing::TempDir() + "/" + name + ".db"; }

JobRecord NewJob(const std::string& owner, const std::string& request_id, const std::string& spec = "name: a\n") {
  JobRecord job;
  job.owner = owner;
  job.request_id = request_id;
  job.name = "a";
  job.spec_yaml = spec;
  job.max_restarts = 3;
  job.message = "waiting";
  job.resources.set_learners(2);
  job.resources.set_device(v1::DEVICE_KIND_CUDA);
  job.created_unix_ms = 1000;
  job.updated_unix_ms = 1000;
  job.total_steps = 400;
  return job;
}

EventRecord Event(v1::JobState state, const std::string& message) { return EventRecord{"", 1000, state, 0, message}; }

class JobStoreTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (GetParam() == "memory") {
      store_ = std::make_unique<MemoryJobStore>();
    } else {
      const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
      std::string name = std::string(info->name());
      for (char& c : name)
        if (c == '/') c = '_';
      auto store = SqliteJobStore::Open(DbPath(name));
      ASSERT_TRUE(store.ok()) << store.status();
      store_ = std::move(*store);
    }
  }

  JobRecord Create(const JobRecord& job, bool expect_created = true) {
    bool created = false;
    auto stored = store_->CreateJob(job, Event(v1::JOB_STATE_PENDING, "submitted"), &created);
    EXPECT_TRUE(stored.ok()) << stored.status();
    EXPECT_EQ(created, expect_created);
    return stored.ok() ? *stored : JobRecord{};
  }

  std::unique_ptr<JobStore> store_;
};

TEST_P(JobStoreTest, CreateAssignsSequentialIdsAndKeepsEveryField) {
  JobRecord a = Create(NewJob("alice", "r1"));
  JobRecord b = Create(NewJob("bob", ""));
  EXPECT_EQ(a.id, "job-000001");
  EXPECT_EQ(b.id, "job-000002");
  auto got = store_->GetJob("job-000001");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->owner, "alice");
  EXPECT_EQ(got->request_id, "r1");
  EXPECT_EQ(got->spec_yaml, "name: a\n");
  EXPECT_EQ(got->state, v1::JOB_STATE_PENDING);
  EXPECT_EQ(got->max_restarts, 3u);
  EXPECT_EQ(got->message, "waiting");
  EXPECT_EQ(got->resources.learners(), 2u);
  EXPECT_EQ(got->resources.device(), v1::DEVICE_KIND_CUDA);
  EXPECT_EQ(got->created_unix_ms, 1000);
  EXPECT_EQ(got->total_steps, 400u);
}

TEST_P(JobStoreTest, SameOwnerAndRequestIdReturnsTheFirstJob) {
  JobRecord first = Create(NewJob("alice", "r1"));
  JobRecord again = Create(NewJob("alice", "r1", "name: other\n"), /*expect_created=*/false);
  EXPECT_EQ(again.id, first.id);
  EXPECT_EQ(again.spec_yaml, "name: a\n");
  auto all = store_->ListJobs(JobQuery{});
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(all->size(), 1u);
}

TEST_P(JobStoreTest, RequestIdsAreScopedToTheOwnerAndEmptyNeverMatches) {
  Create(NewJob("alice", "r1"));
  Create(NewJob("bob", "r1"));
  Create(NewJob("alice", ""));
  Create(NewJob("alice", ""));
  auto all = store_->ListJobs(JobQuery{});
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(all->size(), 4u);
}

TEST_P(JobStoreTest, UpdateReplacesTheJobAndAppendsAnEvent) {
  JobRecord job = Create(NewJob("alice", ""));
  job.state = v1::JOB_STATE_SCHEDULED;
  job.attempt = 1;
  job.message = "placed";
  job.updated_unix_ms = 2000;
  ASSERT_TRUE(store_->UpdateJob(job, EventRecord{job.id, 2000, v1::JOB_STATE_SCHEDULED, 1, "placed"}).ok());
  auto got = store_->GetJob(job.id);
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->state, v1::JOB_STATE_SCHEDULED);
  EXPECT_EQ(got->attempt, 1u);
  EXPECT_EQ(got->updated_unix_ms, 2000);
  auto events = store_->ListEvents(job.id);
  ASSERT_TRUE(events.ok());
  ASSERT_EQ(events->size(), 2u);
  EXPECT_EQ((*events)[0].state, v1::JOB_STATE_PENDING);
  EXPECT_EQ((*events)[0].message, "submitted");
  EXPECT_EQ((*events)[1].state, v1::JOB_STATE_SCHEDULED);
  EXPECT_EQ((*events)[1].attempt, 1u);
  EXPECT_EQ((*events)[1].job_id, job.id);
}

TEST_P(JobStoreTest, ListFiltersByStateAndOwnerAndPagesBySeq) {
  for (int i = 0; i < 5; ++i) Create(NewJob(i % 2 == 0 ? "alice" : "bob", ""));
  JobRecord third = *store_->GetJob("job-000003");
  third.state = v1::JOB_STATE_RUNNING;
  ASSERT_TRUE(store_->UpdateJob(third, Event(v1::JOB_STATE_RUNNING, "")).ok());

  JobQuery running;
  running.states = {v1::JOB_STATE_RUNNING};
  ASSERT_EQ(store_->ListJobs(running)->size(), 1u);
  JobQuery alice;
  alice.owner = "alice";
  EXPECT_EQ(store_->ListJobs(alice)->size(), 3u);
  JobQuery page;
  page.after_seq = 2;
  page.limit = 2;
  auto jobs = store_->ListJobs(page);
  ASSERT_TRUE(jobs.ok());
  ASSERT_EQ(jobs->size(), 2u);
  EXPECT_EQ((*jobs)[0].id, "job-000003");
  EXPECT_EQ((*jobs)[1].id, "job-000004");
}

// Error paths.

TEST_P(JobStoreTest, UnknownIdIsNotFound) {
  EXPECT_EQ(store_->GetJob("job-999999").status().code(), absl::StatusCode::kNotFound);
  JobRecord ghost = NewJob("alice", "");
  ghost.id = "job-999999";
  EXPECT_EQ(store_->UpdateJob(ghost, Event(v1::JOB_STATE_RUNNING, "")).code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(store_->ListEvents("job-999999")->empty());
}

INSTANTIATE_TEST_SUITE_P(Stores, JobStoreTest, ::testing::Values("memory", "sqlite"),
                         [](const auto& info) { return info.param; });

// SQLite only: persistence across re-opens.

TEST(SqliteJobStoreTest, ReopenLosesNothing) {
  const std::string path = DbPath("reopen");
  {
    auto store = SqliteJobStore::Open(path);
    ASSERT_TRUE(store.ok()) << store.status();
    bool created = false;
    JobRecord job = *(*store)->CreateJob(NewJob("alice", "r1"), Event(v1::JOB_STATE_PENDING, "submitted"), &created);
    job.state = v1::JOB_STATE_RUNNING;
    job.attempt = 1;
    ASSERT_TRUE((*store)->UpdateJob(job, EventRecord{job.id, 2000, v1::JOB_STATE_RUNNING, 1, "running"}).ok());
  }
  auto store = SqliteJobStore::Open(path);
  ASSERT_TRUE(store.ok()) << store.status();
  auto job = (*store)->GetJob("job-000001");
  ASSERT_TRUE(job.ok()) << job.status();
  EXPECT_EQ(job->state, v1::JOB_STATE_RUNNING);
  EXPECT_EQ(job->attempt, 1u);
  EXPECT_EQ(job->total_steps, 400u);
  EXPECT_EQ((*store)->ListJobs(JobQuery{})->at(0).total_steps, 400u);
  EXPECT_EQ((*store)->ListEvents("job-000001")->size(), 2u);
  // The request id survived too: the same key returns the same job, and the next id continues the sequence.
  bool created = true;
  auto again = (*store)->CreateJob(NewJob("alice", "r1"), Event(v1::JOB_STATE_PENDING, ""), &created);
  ASSERT_TRUE(again.ok());
  EXPECT_FALSE(created);
  EXPECT_EQ(again->id, "job-000001");
  auto next = (*store)->CreateJob(NewJob("alice", "r2"), Event(v1::JOB_STATE_PENDING, ""), &created);
  ASSERT_TRUE(next.ok());
  EXPECT_EQ(next->id, "job-000002");
}

TEST(SqliteJobStoreTest, ProgressColumnsSurviveAReopen) {
  const std::string path = DbPath("progress");
  {
    auto store = SqliteJobStore::Open(path);
    ASSERT_TRUE(store.ok()) << store.status();
    bool created = false;
    JobRecord job = *(*store)->CreateJob(NewJob("alice", ""), Event(v1::JOB_STATE_PENDING, ""), &created);
    job.step = 42;
    EventRecord e{job.id, 2000, v1::JOB_STATE_RUNNING, 1, "step 42", 42, {{"train/loss", 0.5}}};
    ASSERT_TRUE((*store)->UpdateJob(job, e).ok());
  }
  auto store = SqliteJobStore::Open(path);
  ASSERT_TRUE(store.ok());
  EXPECT_EQ((*store)->GetJob("job-000001")->step, 42u);
  auto events = (*store)->ListEvents("job-000001");
  ASSERT_EQ(events->size(), 2u);
  EXPECT_EQ((*events)[1].step, 42u);
  EXPECT_EQ((*events)[1].metrics.at("train/loss"), 0.5);
}

// A database written by schema version 2 (no total_steps column), made by hand with that version's jobs table.
void WriteVersion2Database(const std::string& path, const std::vector<std::string>& specs) {
  for (const char* suffix : {"", "-wal", "-shm"}) std::remove((path + suffix).c_str());
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  std::string sql = R"sql(
CREATE TABLE jobs (seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, owner TEXT NOT NULL, request_id TEXT NOT NULL,
  name TEXT NOT NULL, spec_yaml TEXT NOT NULL, state INTEGER NOT NULL, attempt INTEGER NOT NULL,
  max_restarts INTEGER NOT NULL, message TEXT NOT NULL, resources BLOB NOT NULL, created_unix_ms INTEGER NOT NULL,
  updated_unix_ms INTEGER NOT NULL, step INTEGER NOT NULL DEFAULT 0);
CREATE TABLE events (event_seq INTEGER PRIMARY KEY AUTOINCREMENT, job_id TEXT NOT NULL, unix_ms INTEGER NOT NULL,
  state INTEGER NOT NULL, attempt INTEGER NOT NULL, message TEXT NOT NULL, step INTEGER NOT NULL DEFAULT 0,
  metrics BLOB NOT NULL DEFAULT x'');
PRAGMA user_version=2;
)sql";
  for (size_t i = 0; i < specs.size(); ++i) {
    const int seq = static_cast<int>(i) + 1;
    char* quoted = sqlite3_mprintf("%Q", specs[i].c_str());
    sql += "INSERT INTO jobs VALUES (" + std::to_string(seq) + ", '" + JobIdForSeq(seq) + "', 'alice', '', 'a', " +
           quoted + ", 6, 1, 3, 'succeeded', x'', 1000, 2000, 7);\n";
    sqlite3_free(quoted);
  }
  char* error = nullptr;
  ASSERT_EQ(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &error), SQLITE_OK) << (error ? error : "");
  sqlite3_close(db);
}

TEST(SqliteJobStoreTest, UpgradingFromVersion2ReadsTotalStepsFromEachSpec) {
  const std::string path = DbPath("upgrade_v2");
  WriteVersion2Database(path, {"name: a\ndata:\n  train: t.jsonl\ntrain:\n  steps: 12\n",
                               "name: b\ndata:\n  train: t.jsonl\n",  // train.steps defaults to 100
                               "not: [a valid spec"});
  auto store = SqliteJobStore::Open(path);
  ASSERT_TRUE(store.ok()) << store.status();
  auto jobs = (*store)->ListJobs(JobQuery{});
  ASSERT_TRUE(jobs.ok()) << jobs.status();
  ASSERT_EQ(jobs->size(), 3u);
  EXPECT_EQ((*jobs)[0].total_steps, 12u);
  EXPECT_EQ((*jobs)[0].step, 7u);
  EXPECT_EQ((*jobs)[1].total_steps, 100u);
  EXPECT_EQ((*jobs)[2].total_steps, 0u);  // unknown, rather than a failed open
  // New jobs store theirs, next to the upgraded ones.
  bool created = false;
  auto next = (*store)->CreateJob(NewJob("alice", ""), Event(v1::JOB_STATE_PENDING, ""), &created);
  ASSERT_TRUE(next.ok()) << next.status();
  EXPECT_EQ((*store)->GetJob(next->id)->total_steps, 400u);
}

TEST(SqliteJobStoreTest, UsesWalMode) {
  const std::string path = DbPath("wal");
  auto store = SqliteJobStore::Open(path);
  ASSERT_TRUE(store.ok()) << store.status();
  bool created = false;
  ASSERT_TRUE((*store)->CreateJob(NewJob("alice", ""), Event(v1::JOB_STATE_PENDING, ""), &created).ok());
  EXPECT_TRUE(std::ifstream(path + "-wal").good()) << "no write-ahead log next to " << path;
}

TEST(SqliteJobStoreTest, UnopenablePathIsUnavailable) {
  auto store = SqliteJobStore::Open(::testing::TempDir() + "/no/such/dir/jobs.db");
  EXPECT_EQ(store.status().code(), absl::StatusCode::kUnavailable);
}

}  // namespace
}  // namespace alignd::coordinator
