#include "coordinator/sqlite_job_store.h"

#include <sqlite3.h>

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/base/status.h"
#include "spec/job_validation.h"

namespace alignd::coordinator {
namespace {

constexpr int kSchemaVersion = 3;

constexpr char kSchema[] = R"sql(
CREATE TABLE IF NOT EXISTS jobs (
  seq INTEGER PRIMARY KEY,
  id TEXT NOT NULL UNIQUE,
  owner TEXT NOT NULL,
  request_id TEXT NOT NULL,
  name TEXT NOT NULL,
  spec_yaml TEXT NOT NULL,
  state INTEGER NOT NULL,
  attempt INTEGER NOT NULL,
  max_restarts INTEGER NOT NULL,
  message TEXT NOT NULL,
  resources BLOB NOT NULL,
  created_unix_ms INTEGER NOT NULL,
  updated_unix_ms INTEGER NOT NULL,
  step INTEGER NOT NULL DEFAULT 0,
  total_steps INTEGER NOT NULL DEFAULT 0);
CREATE INDEX IF NOT EXISTS jobs_by_state ON jobs(state, seq);
CREATE TABLE IF NOT EXISTS request_ids (
  owner TEXT NOT NULL,
  request_id TEXT NOT NULL,
  job_seq INTEGER NOT NULL REFERENCES jobs(seq),
  PRIMARY KEY (owner, request_id));
CREATE TABLE IF NOT EXISTS events (
  event_seq INTEGER PRIMARY KEY AUTOINCREMENT,
  job_id TEXT NOT NULL,
  unix_ms INTEGER NOT NULL,
  state INTEGER NOT NULL,
  attempt INTEGER NOT NULL,
  message TEXT NOT NULL,
  step INTEGER NOT NULL DEFAULT 0,
  metrics BLOB NOT NULL DEFAULT x'');
CREATE INDEX IF NOT EXISTS events_by_job ON events(job_id, event_seq);
)sql";

constexpr char kJobColumns[] =
    "seq, id, owner, request_id, name, spec_yaml, state, attempt, max_restarts, message, resources, "
    "created_unix_ms, updated_unix_ms, step, total_steps";

absl::Status SqliteError(sqlite3* db, absl::string_view what) {
  return absl::InternalError(absl::StrCat("sqlite: ", what, ": ", sqlite3_errmsg(db)));
}

// One prepared statement; binds are 1-based like SQLite's. Either its own (finalised at the end) or borrowed from a
// cache of prepared statements (reset and unbound at the end, for the next use).
class Statement {
 public:
  Statement(sqlite3* db, const std::string& sql) : db_(db) {
    rc_ = sqlite3_prepare_v2(db, sql.c_str(), -1, &stmt_, nullptr);
  }
  Statement(sqlite3* db, std::map<std::string, sqlite3_stmt*>* cache, const std::string& sql) : db_(db), cached_(true) {
    auto it = cache->find(sql);
    if (it != cache->end()) {
      stmt_ = it->second;
      rc_ = SQLITE_OK;
      return;
    }
    rc_ = sqlite3_prepare_v3(db, sql.c_str(), -1, SQLITE_PREPARE_PERSISTENT, &stmt_, nullptr);
    if (rc_ == SQLITE_OK) cache->emplace(sql, stmt_);
  }
  ~Statement() {
    if (cached_ && rc_ == SQLITE_OK) {
      sqlite3_reset(stmt_);
      sqlite3_clear_bindings(stmt_);
    } else {
      sqlite3_finalize(stmt_);
    }
  }
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;

  absl::Status status() const { return rc_ == SQLITE_OK ? absl::OkStatus() : SqliteError(db_, "prepare"); }
  void Bind(int i, int64_t v) { sqlite3_bind_int64(stmt_, i, v); }
  void Bind(int i, const std::string& v) { sqlite3_bind_text(stmt_, i, v.data(), v.size(), SQLITE_TRANSIENT); }
  void BindBlob(int i, const std::string& v) { sqlite3_bind_blob(stmt_, i, v.data(), v.size(), SQLITE_TRANSIENT); }
  // True with a row, false when done.
  absl::StatusOr<bool> Step() {
    int rc = sqlite3_step(stmt_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    return SqliteError(db_, "step");
  }
  absl::Status Run() {
    ASSIGN_OR_RETURN(bool row, Step());
    (void)row;
    return absl::OkStatus();
  }
  int64_t Int(int col) const { return sqlite3_column_int64(stmt_, col); }
  std::string Text(int col) const {
    const void* p = sqlite3_column_blob(stmt_, col);
    return p == nullptr ? std::string() : std::string(static_cast<const char*>(p), sqlite3_column_bytes(stmt_, col));
  }

 private:
  sqlite3* db_;
  sqlite3_stmt* stmt_ = nullptr;
  int rc_;
  bool cached_ = false;
};

absl::Status Exec(sqlite3* db, const char* sql) {
  char* error = nullptr;
  if (sqlite3_exec(db, sql, nullptr, nullptr, &error) != SQLITE_OK) {
    absl::Status s = absl::InternalError(absl::StrCat("sqlite: ", error ? error : "error", " in: ", sql));
    sqlite3_free(error);
    return s;
  }
  return absl::OkStatus();
}

JobRecord ReadJob(const Statement& s) {
  JobRecord job;
  job.seq = s.Int(0);
  job.id = s.Text(1);
  job.owner = s.Text(2);
  job.request_id = s.Text(3);
  job.name = s.Text(4);
  job.spec_yaml = s.Text(5);
  job.state = static_cast<v1::JobState>(s.Int(6));
  job.attempt = s.Int(7);
  job.max_restarts = s.Int(8);
  job.message = s.Text(9);
  job.resources.ParseFromString(s.Text(10));
  job.created_unix_ms = s.Int(11);
  job.updated_unix_ms = s.Int(12);
  job.step = s.Int(13);
  job.total_steps = s.Int(14);
  return job;
}

absl::Status InsertEvent(sqlite3* db, const std::string& job_id, const EventRecord& e) {
  Statement s(db,
              "INSERT INTO events (job_id, unix_ms, state, attempt, message, step, metrics) "
              "VALUES (?, ?, ?, ?, ?, ?, ?)");
  RETURN_IF_ERROR(s.status());
  s.Bind(1, job_id);
  s.Bind(2, e.unix_ms);
  s.Bind(3, static_cast<int64_t>(e.state));
  s.Bind(4, static_cast<int64_t>(e.attempt));
  s.Bind(5, e.message);
  s.Bind(6, static_cast<int64_t>(e.step));
  v1::JobEvent metrics;  // only its metrics map is stored
  metrics.mutable_metrics()->insert(e.metrics.begin(), e.metrics.end());
  s.BindBlob(7, metrics.SerializeAsString());
  return s.Run();
}

// Sets each job's total_steps from its spec's train.steps. A spec that no longer validates keeps 0 (unknown).
absl::Status BackfillTotalSteps(sqlite3* db) {
  std::vector<std::pair<int64_t, int64_t>> totals;  // seq, train.steps
  {
    Statement s(db, "SELECT seq, spec_yaml FROM jobs");
    RETURN_IF_ERROR(s.status());
    while (true) {
      ASSIGN_OR_RETURN(bool row, s.Step());
      if (!row) break;
      auto spec = ValidateJobSpec(s.Text(1));
      if (spec.ok() && spec->spec.train.steps > 0) totals.emplace_back(s.Int(0), spec->spec.train.steps);
    }
  }
  for (const auto& [seq, total] : totals) {
    Statement update(db, "UPDATE jobs SET total_steps = ? WHERE seq = ?");
    RETURN_IF_ERROR(update.status());
    update.Bind(1, total);
    update.Bind(2, seq);
    RETURN_IF_ERROR(update.Run());
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<SqliteJobStore>> SqliteJobStore::Open(const std::string& path) {
  sqlite3* db = nullptr;
  int rc =
      sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX, nullptr);
  if (rc != SQLITE_OK) {
    absl::Status s = absl::UnavailableError(
        absl::StrCat(path, ": cannot open database: ", db ? sqlite3_errmsg(db) : sqlite3_errstr(rc)));
    sqlite3_close(db);
    return s;
  }
  std::unique_ptr<SqliteJobStore> store(new SqliteJobStore(path, db));
  sqlite3_busy_timeout(db, 5000);
  {
    Statement wal(db, "PRAGMA journal_mode=WAL");
    RETURN_IF_ERROR(Annotate(wal.status(), path));
    ASSIGN_OR_RETURN(bool row, wal.Step());
    if (!row || wal.Text(0) != "wal") {
      return absl::UnavailableError(absl::StrCat(path, ": cannot switch the database to WAL mode"));
    }
  }
  RETURN_IF_ERROR(Annotate(Exec(db, "PRAGMA synchronous=FULL"), path));
  RETURN_IF_ERROR(Annotate(Exec(db, "PRAGMA foreign_keys=ON"), path));
  int64_t found = 0;
  {
    Statement version(db, "PRAGMA user_version");
    RETURN_IF_ERROR(version.status());
    ASSIGN_OR_RETURN(bool row, version.Step());
    if (row) found = version.Int(0);
  }
  if (found > kSchemaVersion) {
    return absl::FailedPreconditionError(
        absl::StrCat(path, ": schema version ", found, " is newer than this build's ", kSchemaVersion));
  }
  absl::MutexLock lock(&store->mu_);
  RETURN_IF_ERROR(Annotate(store->InTransaction([&]() -> absl::Status {
    if (found == 1) {  // version 1 had no progress columns
      RETURN_IF_ERROR(Exec(db, "ALTER TABLE jobs ADD COLUMN step INTEGER NOT NULL DEFAULT 0"));
      RETURN_IF_ERROR(Exec(db, "ALTER TABLE events ADD COLUMN step INTEGER NOT NULL DEFAULT 0"));
      RETURN_IF_ERROR(Exec(db, "ALTER TABLE events ADD COLUMN metrics BLOB NOT NULL DEFAULT x''"));
    }
    if (found == 1 || found == 2) {  // versions 1 and 2 had no total_steps: read it from each stored spec
      RETURN_IF_ERROR(Exec(db, "ALTER TABLE jobs ADD COLUMN total_steps INTEGER NOT NULL DEFAULT 0"));
      RETURN_IF_ERROR(BackfillTotalSteps(db));
    }
    RETURN_IF_ERROR(Exec(db, kSchema));
    return Exec(db, absl::StrCat("PRAGMA user_version=", kSchemaVersion).c_str());
  }),
                           path));
  return store;
}

SqliteJobStore::~SqliteJobStore() {
  absl::MutexLock lock(&mu_);
  for (auto& [sql, stmt] : statements_) sqlite3_finalize(stmt);
  sqlite3_close_v2(db_);
}

template <typename Body>
absl::Status SqliteJobStore::InTransaction(Body body) {
  RETURN_IF_ERROR(Exec(db_, "BEGIN IMMEDIATE"));
  absl::Status status = body();
  if (!status.ok()) {
    Exec(db_, "ROLLBACK").IgnoreError();
    return status;
  }
  status = Exec(db_, "COMMIT");
  if (!status.ok()) Exec(db_, "ROLLBACK").IgnoreError();
  return status;
}

absl::StatusOr<JobRecord> SqliteJobStore::CreateJob(const JobRecord& job, const EventRecord& first_event,
                                                    bool* created) {
  absl::MutexLock lock(&mu_);
  JobRecord result;
  RETURN_IF_ERROR(InTransaction([&]() -> absl::Status {
    if (!job.request_id.empty()) {
      Statement find(db_, &statements_,
                     absl::StrCat("SELECT ", kJobColumns,
                                  " FROM jobs WHERE seq = (SELECT job_seq FROM request_ids "
                                  "WHERE owner = ? AND request_id = ?)"));
      RETURN_IF_ERROR(find.status());
      find.Bind(1, job.owner);
      find.Bind(2, job.request_id);
      ASSIGN_OR_RETURN(bool row, find.Step());
      if (row) {
        result = ReadJob(find);
        *created = false;
        return absl::OkStatus();
      }
    }
    Statement next(db_, &statements_, "SELECT COALESCE(MAX(seq), 0) + 1 FROM jobs");
    RETURN_IF_ERROR(next.status());
    RETURN_IF_ERROR(next.Step().status());
    result = job;
    result.seq = next.Int(0);
    result.id = JobIdForSeq(result.seq);
    Statement insert(
        db_, &statements_,
        absl::StrCat("INSERT INTO jobs (", kJobColumns, ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"));
    RETURN_IF_ERROR(insert.status());
    insert.Bind(1, result.seq);
    insert.Bind(2, result.id);
    insert.Bind(3, result.owner);
    insert.Bind(4, result.request_id);
    insert.Bind(5, result.name);
    insert.Bind(6, result.spec_yaml);
    insert.Bind(7, static_cast<int64_t>(result.state));
    insert.Bind(8, static_cast<int64_t>(result.attempt));
    insert.Bind(9, static_cast<int64_t>(result.max_restarts));
    insert.Bind(10, result.message);
    insert.BindBlob(11, result.resources.SerializeAsString());
    insert.Bind(12, result.created_unix_ms);
    insert.Bind(13, result.updated_unix_ms);
    insert.Bind(14, static_cast<int64_t>(result.step));
    insert.Bind(15, static_cast<int64_t>(result.total_steps));
    RETURN_IF_ERROR(insert.Run());
    if (!job.request_id.empty()) {
      Statement request(db_, &statements_, "INSERT INTO request_ids (owner, request_id, job_seq) VALUES (?, ?, ?)");
      RETURN_IF_ERROR(request.status());
      request.Bind(1, job.owner);
      request.Bind(2, job.request_id);
      request.Bind(3, result.seq);
      RETURN_IF_ERROR(request.Run());
    }
    *created = true;
    return InsertEvent(db_, result.id, first_event);
  }));
  return result;
}

absl::StatusOr<JobRecord> SqliteJobStore::GetJob(const std::string& id) {
  absl::MutexLock lock(&mu_);
  Statement s(db_, &statements_, absl::StrCat("SELECT ", kJobColumns, " FROM jobs WHERE id = ?"));
  RETURN_IF_ERROR(s.status());
  s.Bind(1, id);
  ASSIGN_OR_RETURN(bool row, s.Step());
  if (!row) return absl::NotFoundError(absl::StrCat("job \"", id, "\" not found"));
  return ReadJob(s);
}

absl::StatusOr<std::vector<JobRecord>> SqliteJobStore::ListJobs(const JobQuery& query) {
  absl::MutexLock lock(&mu_);
  std::string sql = absl::StrCat("SELECT ", kJobColumns, " FROM jobs WHERE seq > ?");
  if (!query.owner.empty()) absl::StrAppend(&sql, " AND owner = ?");
  if (!query.states.empty()) {
    std::vector<std::string> states;
    for (v1::JobState s : query.states) states.push_back(absl::StrCat(static_cast<int>(s)));
    absl::StrAppend(&sql, " AND state IN (", absl::StrJoin(states, ","), ")");
  }
  absl::StrAppend(&sql, " ORDER BY seq LIMIT ?");
  Statement s(db_, &statements_, sql);
  RETURN_IF_ERROR(s.status());
  int i = 1;
  s.Bind(i++, query.after_seq);
  if (!query.owner.empty()) s.Bind(i++, query.owner);
  s.Bind(i++, static_cast<int64_t>(query.limit));
  std::vector<JobRecord> out;
  while (true) {
    ASSIGN_OR_RETURN(bool row, s.Step());
    if (!row) break;
    out.push_back(ReadJob(s));
  }
  return out;
}

absl::Status SqliteJobStore::UpdateJob(const JobRecord& job, const EventRecord& event) {
  absl::MutexLock lock(&mu_);
  return InTransaction([&]() -> absl::Status {
    Statement s(db_, &statements_,
                "UPDATE jobs SET state = ?, attempt = ?, max_restarts = ?, message = ?, resources = ?, "
                "updated_unix_ms = ?, step = ? WHERE id = ?");
    RETURN_IF_ERROR(s.status());
    s.Bind(1, static_cast<int64_t>(job.state));
    s.Bind(2, static_cast<int64_t>(job.attempt));
    s.Bind(3, static_cast<int64_t>(job.max_restarts));
    s.Bind(4, job.message);
    s.BindBlob(5, job.resources.SerializeAsString());
    s.Bind(6, job.updated_unix_ms);
    s.Bind(7, static_cast<int64_t>(job.step));
    s.Bind(8, job.id);
    RETURN_IF_ERROR(s.Run());
    if (sqlite3_changes(db_) == 0) return absl::NotFoundError(absl::StrCat("job \"", job.id, "\" not found"));
    return InsertEvent(db_, job.id, event);
  });
}

absl::StatusOr<std::vector<EventRecord>> SqliteJobStore::ListEvents(const std::string& job_id) {
  absl::MutexLock lock(&mu_);
  Statement s(db_, &statements_,
              "SELECT job_id, unix_ms, state, attempt, message, step, metrics FROM events WHERE job_id = ? "
              "ORDER BY event_seq");
  RETURN_IF_ERROR(s.status());
  s.Bind(1, job_id);
  std::vector<EventRecord> out;
  while (true) {
    ASSIGN_OR_RETURN(bool row, s.Step());
    if (!row) break;
    EventRecord e;
    e.job_id = s.Text(0);
    e.unix_ms = s.Int(1);
    e.state = static_cast<v1::JobState>(s.Int(2));
    e.attempt = s.Int(3);
    e.message = s.Text(4);
    e.step = s.Int(5);
    v1::JobEvent metrics;
    metrics.ParseFromString(s.Text(6));
    e.metrics.insert(metrics.metrics().begin(), metrics.metrics().end());
    out.push_back(std::move(e));
  }
  return out;
}

}  // namespace alignd::coordinator
