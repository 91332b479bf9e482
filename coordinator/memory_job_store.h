// JobStore in memory, for tests and for `alignd local` runs that need no persistence. Thread-safe.
#ifndef ALIGND_COORDINATOR_MEMORY_JOB_STORE_H_
#define ALIGND_COORDINATOR_MEMORY_JOB_STORE_H_

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "coordinator/job_store.h"

namespace alignd::coordinator {

class MemoryJobStore : public JobStore {
 public:
  absl::StatusOr<JobRecord> CreateJob(const JobRecord& job, const EventRecord& first_event, bool* created) override;
  absl::StatusOr<JobRecord> GetJob(const std::string& id) override;
  absl::StatusOr<std::vector<JobRecord>> ListJobs(const JobQuery& query) override;
  absl::Status UpdateJob(const JobRecord& job, const EventRecord& event) override;
  absl::StatusOr<std::vector<EventRecord>> ListEvents(const std::string& job_id) override;

 private:
  absl::Mutex mu_;
  std::map<int64_t, JobRecord> jobs_ ABSL_GUARDED_BY(mu_);  // by seq
  std::map<std::string, int64_t> seq_by_id_ ABSL_GUARDED_BY(mu_);
  std::map<std::pair<std::string, std::string>, int64_t> request_ids_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::vector<EventRecord>> events_ ABSL_GUARDED_BY(mu_);
};

}  // namespace alignd::coordinator

#endif  // ALIGND_COORDINATOR_MEMORY_JOB_STORE_H_
