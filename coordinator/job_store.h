// Where the coordinator keeps jobs, their events and the request ids that make SubmitJob idempotent. Two
// implementations: SqliteJobStore (one file, WAL; what the server runs) and MemoryJobStore (tests). Every method is
// one transaction: it happens entirely or not at all. Implementations are thread-safe.
#ifndef ALIGND_COORDINATOR_JOB_STORE_H_
#define ALIGND_COORDINATOR_JOB_STORE_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "proto/alignd.pb.h"

namespace alignd::coordinator {

// One job as stored. `seq` orders jobs by submission and is the paging cursor; `id` is "job-<seq>" zero-padded.
struct JobRecord {
  int64_t seq = 0;
  std::string id;
  std::string owner;       // principal name that submitted it
  std::string request_id;  // idempotency key, may be empty
  std::string name;        // the spec's `name`
  std::string spec_yaml;
  v1::JobState state = v1::JOB_STATE_PENDING;
  uint32_t attempt = 0;
  uint32_t max_restarts = 0;
  std::string message;
  v1::Resources resources;
  int64_t created_unix_ms = 0;
  int64_t updated_unix_ms = 0;
  uint64_t step = 0;         // last reported training step
  uint64_t total_steps = 0;  // the spec's train.steps (0 for a job stored before it was recorded)
};

struct EventRecord {
  std::string job_id;
  int64_t unix_ms = 0;
  v1::JobState state = v1::JOB_STATE_UNSPECIFIED;
  uint32_t attempt = 0;
  std::string message;
  uint64_t step = 0;                      // progress events: the step reached
  std::map<std::string, double> metrics;  // progress events: key metrics at that step
};

struct JobQuery {
  std::vector<v1::JobState> states;  // empty: every state
  std::string owner;                 // empty: every owner
  int64_t after_seq = 0;             // only jobs with seq > after_seq
  int limit = 100;                   // at most this many (>= 1)
};

class JobStore {
 public:
  virtual ~JobStore() = default;

  // Inserts `job` (its seq and id are assigned here) with `first_event`, unless (owner, request_id) already names a
  // job: then nothing is written and that job is returned with *created = false. An empty request_id never matches.
  virtual absl::StatusOr<JobRecord> CreateJob(const JobRecord& job, const EventRecord& first_event, bool* created) = 0;

  // NOT_FOUND naming the id when there is no such job.
  virtual absl::StatusOr<JobRecord> GetJob(const std::string& id) = 0;

  // Jobs matching `query` in submission order.
  virtual absl::StatusOr<std::vector<JobRecord>> ListJobs(const JobQuery& query) = 0;

  // Replaces the stored job with the same id and appends `event`, together. NOT_FOUND when the id is unknown.
  virtual absl::Status UpdateJob(const JobRecord& job, const EventRecord& event) = 0;

  // The job's events, oldest first (empty for an unknown id).
  virtual absl::StatusOr<std::vector<EventRecord>> ListEvents(const std::string& job_id) = 0;
};

// "job-000042".
std::string JobIdForSeq(int64_t seq);

}  // namespace alignd::coordinator

#endif  // ALIGND_COORDINATOR_JOB_STORE_H_
