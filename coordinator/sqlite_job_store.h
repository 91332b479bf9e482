// JobStore in one SQLite file in WAL mode, synchronous=FULL: a committed write survives `kill -9` of the process.
// The schema is created on open, or upgraded from an older version (jobs stored before total_steps was recorded
// get it from their spec); opening the same file again sees everything committed before. Thread-safe (one
// connection behind a mutex: the coordinator's write rate is a few per second).
#ifndef ALIGND_COORDINATOR_SQLITE_JOB_STORE_H_
#define ALIGND_COORDINATOR_SQLITE_JOB_STORE_H_

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "coordinator/job_store.h"

struct sqlite3;
struct sqlite3_stmt;

namespace alignd::coordinator {

class SqliteJobStore : public JobStore {
 public:
  // Opens (creating when missing) the database at `path`. The parent folder must exist. INTERNAL or UNAVAILABLE
  // naming the path when SQLite cannot open it or set WAL mode; FAILED_PRECONDITION when the file holds a newer schema.
  static absl::StatusOr<std::unique_ptr<SqliteJobStore>> Open(const std::string& path);
  ~SqliteJobStore() override;

  absl::StatusOr<JobRecord> CreateJob(const JobRecord& job, const EventRecord& first_event, bool* created) override;
  absl::StatusOr<JobRecord> GetJob(const std::string& id) override;
  absl::StatusOr<std::vector<JobRecord>> ListJobs(const JobQuery& query) override;
  absl::Status UpdateJob(const JobRecord& job, const EventRecord& event) override;
  absl::StatusOr<std::vector<EventRecord>> ListEvents(const std::string& job_id) override;

 private:
  SqliteJobStore(std::string path, sqlite3* db) : path_(std::move(path)), db_(db) {}
  // Runs `body` between BEGIN IMMEDIATE and COMMIT, rolling back when it fails.
  template <typename Body>
  absl::Status InTransaction(Body body) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const std::string path_;
  absl::Mutex mu_;
  sqlite3* db_ ABSL_GUARDED_BY(mu_);
  // Prepared statements by SQL text, prepared once and reset after each use: preparing anew cost about as much as
  // the gRPC round trip of a GetJob. Finalised before the database closes.
  std::map<std::string, sqlite3_stmt*> statements_ ABSL_GUARDED_BY(mu_);
};

}  // namespace alignd::coordinator

#endif  // ALIGND_COORDINATOR_SQLITE_JOB_STORE_H_
