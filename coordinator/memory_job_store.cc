#include "coordinator/memory_job_store.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace alignd::coordinator {

absl::StatusOr<JobRecord> MemoryJobStore::CreateJob(const JobRecord& job, const EventRecord& first_event,
                                                    bool* created) {
  absl::MutexLock lock(&mu_);
  if (!job.request_id.empty()) {
    auto it = request_ids_.find({job.owner, job.request_id});
    if (it != request_ids_.end()) {
      *created = false;
      return jobs_.at(it->second);
    }
  }
  JobRecord stored = job;
  stored.seq = jobs_.empty() ? 1 : jobs_.rbegin()->first + 1;
  stored.id = JobIdForSeq(stored.seq);
  jobs_[stored.seq] = stored;
  seq_by_id_[stored.id] = stored.seq;
  if (!job.request_id.empty()) request_ids_[{job.owner, job.request_id}] = stored.seq;
  EventRecord event = first_event;
  event.job_id = stored.id;
  events_[stored.id].push_back(event);
  *created = true;
  return stored;
}

absl::StatusOr<JobRecord> MemoryJobStore::GetJob(const std::string& id) {
  absl::MutexLock lock(&mu_);
  auto it = seq_by_id_.find(id);
  if (it == seq_by_id_.end()) return absl::NotFoundError(absl::StrCat("job \"", id, "\" not found"));
  return jobs_.at(it->second);
}

absl::StatusOr<std::vector<JobRecord>> MemoryJobStore::ListJobs(const JobQuery& query) {
  absl::MutexLock lock(&mu_);
  std::vector<JobRecord> out;
  for (auto it = jobs_.upper_bound(query.after_seq); it != jobs_.end(); ++it) {
    if (static_cast<int>(out.size()) >= query.limit) break;
    const JobRecord& job = it->second;
    if (!query.owner.empty() && job.owner != query.owner) continue;
    if (!query.states.empty() && std::find(query.states.begin(), query.states.end(), job.state) == query.states.end()) {
      continue;
    }
    out.push_back(job);
  }
  return out;
}

absl::Status MemoryJobStore::UpdateJob(const JobRecord& job, const EventRecord& event) {
  absl::MutexLock lock(&mu_);
  auto it = seq_by_id_.find(job.id);
  if (it == seq_by_id_.end()) return absl::NotFoundError(absl::StrCat("job \"", job.id, "\" not found"));
  JobRecord& stored = jobs_.at(it->second);
  const int64_t seq = stored.seq;
  stored = job;
  stored.seq = seq;
  EventRecord e = event;
  e.job_id = job.id;
  events_[job.id].push_back(e);
  return absl::OkStatus();
}

absl::StatusOr<std::vector<EventRecord>> MemoryJobStore::ListEvents(const std::string& job_id) {
  absl::MutexLock lock(&mu_);
  auto it = events_.find(job_id);
  if (it == events_.end()) return std::vector<EventRecord>{};
  return it->second;
}

}  // namespace alignd::coordinator
