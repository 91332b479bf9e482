#include "coordinator/job_manager.h"

#include <algorithm>
#include <chrono>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/base/status.h"
#include "spec/job_validation.h"

namespace alignd::coordinator {
namespace {

constexpr size_t kMaxJobIdBytes = 64;

int64_t SystemNowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

absl::string_view DeviceName(v1::DeviceKind kind) { return kind == v1::DEVICE_KIND_CUDA ? "cuda" : "cpu"; }

absl::Status CheckJobId(const std::string& id) {
  if (id.empty()) return absl::InvalidArgumentError("id: is required");
  if (id.size() > kMaxJobIdBytes) return absl::InvalidArgumentError("id: longer than 64 bytes");
  return absl::OkStatus();
}

}  // namespace

std::string PendingReason(const v1::Resources& wanted, const Capacity& free) {
  std::vector<std::string> missing;
  auto check = [&](absl::string_view role, uint32_t need, uint32_t have) {
    if (need > have) {
      missing.push_back(absl::StrCat(role, " (", DeviceName(wanted.device()), "): need ", need, ", ", have, " free"));
    }
  };
  check("learners", wanted.learners(), free.learners);
  check("rollout workers", wanted.rollout_workers(), free.rollout_workers);
  check("reward servers", wanted.reward_servers(), free.reward_servers);
  if (missing.empty()) return "";
  return absl::StrCat("waiting for resources: ", absl::StrJoin(missing, "; "));
}

bool IsTerminal(v1::JobState state) {
  return state == v1::JOB_STATE_SUCCEEDED || state == v1::JOB_STATE_FAILED || state == v1::JOB_STATE_CANCELLED;
}

v1::Job ToProto(const JobRecord& job) {
  v1::Job out;
  out.set_id(job.id);
  out.set_state(job.state);
  out.set_spec_yaml(job.spec_yaml);
  *out.mutable_resources() = job.resources;
  out.set_attempt(job.attempt);
  out.set_message(job.message);
  out.set_created_unix_ms(job.created_unix_ms);
  out.set_updated_unix_ms(job.updated_unix_ms);
  out.set_owner(job.owner);
  out.set_name(job.name);
  out.set_max_restarts(job.max_restarts);
  out.set_step(job.step);
  out.set_total_steps(job.total_steps);
  return out;
}

v1::JobEvent ToProto(const EventRecord& e) {
  v1::JobEvent out;
  out.set_job_id(e.job_id);
  out.set_unix_ms(e.unix_ms);
  out.set_state(e.state);
  out.set_attempt(e.attempt);
  out.set_message(e.message);
  out.set_step(e.step);
  out.mutable_metrics()->insert(e.metrics.begin(), e.metrics.end());
  return out;
}

absl::StatusOr<std::unique_ptr<JobManager>> JobManager::Create(JobStore* store, Options options) {
  if (store == nullptr) return absl::InvalidArgumentError("JobManager: store is null");
  if (options.default_page_size == 0 || options.default_page_size > options.max_page_size) {
    return absl::InvalidArgumentError("JobManager: default_page_size must be in [1, max_page_size]");
  }
  if (!options.now_ms) options.now_ms = SystemNowMs;
  if (!options.capacity) options.capacity = [](v1::DeviceKind) { return Capacity{}; };
  return std::unique_ptr<JobManager>(new JobManager(store, std::move(options)));
}

std::string JobManager::PendingMessage(const v1::Resources& wanted) const {
  std::string reason = PendingReason(wanted, options_.capacity(wanted.device()));
  return reason.empty() ? "waiting for the scheduler" : reason;
}

absl::StatusOr<JobRecord> JobManager::SubmitJob(const Principal& caller, const std::string& spec_yaml,
                                                const std::string& request_id) {
  if (caller.role == Role::kWorker) {
    return absl::PermissionDeniedError(
        absl::StrCat("\"", caller.name, "\" has the worker role and cannot submit jobs"));
  }
  if (request_id.size() > options_.max_request_id_bytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("request_id: longer than ", options_.max_request_id_bytes, " bytes"));
  }
  if (spec_yaml.empty()) return absl::InvalidArgumentError("spec: is empty");
  ASSIGN_OR_RETURN(ValidatedSpec spec, ValidateJobSpec(spec_yaml, "spec", options_.path_roots));
  const int64_t now = options_.now_ms();
  JobRecord job;
  job.owner = caller.name;
  job.request_id = request_id;
  job.name = spec.name;
  job.spec_yaml = spec_yaml;
  job.state = v1::JOB_STATE_PENDING;
  job.max_restarts = spec.max_restarts;
  job.total_steps = static_cast<uint64_t>(std::max<int64_t>(0, spec.spec.train.steps));
  job.resources = spec.resources;
  job.message = PendingMessage(spec.resources);
  job.created_unix_ms = now;
  job.updated_unix_ms = now;
  EventRecord event{"", now, v1::JOB_STATE_PENDING, 0, "submitted by " + caller.name};
  bool created = false;
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(JobRecord stored, store_->CreateJob(job, event, &created));
  if (created) ++version_;
  if (!created && stored.spec_yaml != spec_yaml) {
    return absl::AlreadyExistsError(
        absl::StrCat("request_id \"", request_id, "\" was already used for job ", stored.id, " with a different spec"));
  }
  return stored;
}

absl::StatusOr<JobRecord> JobManager::GetOwned(const Principal& caller, const std::string& id) {
  RETURN_IF_ERROR(CheckJobId(id));
  if (caller.role == Role::kWorker) {
    return absl::PermissionDeniedError(absl::StrCat("\"", caller.name, "\" has the worker role and cannot read jobs"));
  }
  ASSIGN_OR_RETURN(JobRecord job, store_->GetJob(id));
  if (!caller.is_admin() && job.owner != caller.name) {
    return absl::PermissionDeniedError(absl::StrCat("job ", id, " belongs to another user"));
  }
  return job;
}

absl::StatusOr<JobRecord> JobManager::GetJob(const Principal& caller, const std::string& id) {
  return GetOwned(caller, id);
}

absl::StatusOr<JobPage> JobManager::ListJobs(const Principal& caller, const std::vector<v1::JobState>& states,
                                             uint32_t page_size, const std::string& page_token) {
  if (caller.role == Role::kWorker) {
    return absl::PermissionDeniedError(absl::StrCat("\"", caller.name, "\" has the worker role and cannot list jobs"));
  }
  for (v1::JobState s : states) {
    if (s == v1::JOB_STATE_UNSPECIFIED || !v1::JobState_IsValid(s)) {
      return absl::InvalidArgumentError(absl::StrCat("states: invalid state ", static_cast<int>(s)));
    }
  }
  JobQuery query;
  query.states = states;
  if (!caller.is_admin()) query.owner = caller.name;
  if (!page_token.empty() && (!absl::SimpleAtoi(page_token, &query.after_seq) || query.after_seq < 0)) {
    return absl::InvalidArgumentError(absl::StrCat("page_token: \"", page_token, "\" is not a token from ListJobs"));
  }
  const uint32_t size = page_size == 0 ? options_.default_page_size : std::min(page_size, options_.max_page_size);
  query.limit = size + 1;  // one more, to know whether another page follows
  ASSIGN_OR_RETURN(std::vector<JobRecord> jobs, store_->ListJobs(query));
  JobPage page;
  if (jobs.size() > size) {
    jobs.resize(size);
    page.next_page_token = absl::StrCat(jobs.back().seq);
  }
  page.jobs = std::move(jobs);
  return page;
}

absl::StatusOr<JobRecord> JobManager::CancelJob(const Principal& caller, const std::string& id) {
  absl::MutexLock lock(&mu_);
  ASSIGN_OR_RETURN(JobRecord job, GetOwned(caller, id));
  if (IsTerminal(job.state)) {
    return absl::FailedPreconditionError(
        absl::StrCat("job ", id, " has already finished (", v1::JobState_Name(job.state), ")"));
  }
  return Transition(id,
                    {v1::JOB_STATE_PENDING, v1::JOB_STATE_SCHEDULED, v1::JOB_STATE_RUNNING, v1::JOB_STATE_RESTARTING},
                    v1::JOB_STATE_CANCELLED, "cancelled by " + caller.name);
}

absl::StatusOr<std::vector<EventRecord>> JobManager::ListEvents(const Principal& caller, const std::string& id) {
  RETURN_IF_ERROR(GetOwned(caller, id).status());
  return store_->ListEvents(id);
}

absl::StatusOr<std::vector<EventRecord>> JobManager::WaitForEvents(const Principal& caller, const std::string& id,
                                                                   size_t first, absl::Duration timeout) {
  RETURN_IF_ERROR(GetOwned(caller, id).status());
  absl::MutexLock lock(&mu_);
  auto read = [&]() -> absl::StatusOr<std::vector<EventRecord>> {
    ASSIGN_OR_RETURN(std::vector<EventRecord> events, store_->ListEvents(id));
    if (first >= events.size()) return std::vector<EventRecord>{};
    return std::vector<EventRecord>(events.begin() + first, events.end());
  };
  ASSIGN_OR_RETURN(std::vector<EventRecord> events, read());
  if (!events.empty() || timeout <= absl::ZeroDuration()) return events;
  const int64_t seen = version_;
  auto changed = [this, seen]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return version_ != seen; };
  mu_.AwaitWithTimeout(absl::Condition(&changed), timeout);
  return read();
}

absl::StatusOr<JobRecord> JobManager::Transition(const std::string& id, std::vector<v1::JobState> from, v1::JobState to,
                                                 const std::string& message, uint32_t attempt_delta) {
  RETURN_IF_ERROR(CheckJobId(id));
  ASSIGN_OR_RETURN(JobRecord job, store_->GetJob(id));
  if (std::find(from.begin(), from.end(), job.state) == from.end()) {
    return absl::FailedPreconditionError(
        absl::StrCat("job ", id, ": cannot go from ", v1::JobState_Name(job.state), " to ", v1::JobState_Name(to)));
  }
  job.state = to;
  job.attempt += attempt_delta;
  job.message = message;
  job.updated_unix_ms = options_.now_ms();
  EventRecord event{id, job.updated_unix_ms, to, job.attempt, message};
  // A job ends at the step it reached, so the final event says how far it got.
  if (IsTerminal(to)) event.step = job.step;
  RETURN_IF_ERROR(store_->UpdateJob(job, event));
  ++version_;
  return job;
}

absl::StatusOr<JobRecord> JobManager::MarkScheduled(const std::string& id, const std::string& message) {
  absl::MutexLock lock(&mu_);
  return Transition(id, {v1::JOB_STATE_PENDING, v1::JOB_STATE_RESTARTING}, v1::JOB_STATE_SCHEDULED, message, 1);
}

absl::StatusOr<JobRecord> JobManager::MarkRunning(const std::string& id) {
  absl::MutexLock lock(&mu_);
  return Transition(id, {v1::JOB_STATE_SCHEDULED}, v1::JOB_STATE_RUNNING, "running");
}

absl::StatusOr<JobRecord> JobManager::ReportProgress(const std::string& id, uint64_t step,
                                                     const std::map<std::string, double>& metrics,
                                                     const std::string& note) {
  absl::MutexLock lock(&mu_);
  RETURN_IF_ERROR(CheckJobId(id));
  ASSIGN_OR_RETURN(JobRecord job, store_->GetJob(id));
  if (job.state == v1::JOB_STATE_SCHEDULED) {
    ASSIGN_OR_RETURN(job, Transition(id, {v1::JOB_STATE_SCHEDULED}, v1::JOB_STATE_RUNNING, "running"));
  }
  if (job.state != v1::JOB_STATE_RUNNING) {
    return absl::FailedPreconditionError(absl::StrCat("job ", id, ": progress while ", v1::JobState_Name(job.state)));
  }
  job.step = step;
  job.updated_unix_ms = options_.now_ms();
  EventRecord event{id,
                    job.updated_unix_ms,
                    job.state,
                    job.attempt,
                    absl::StrCat("step ", step, note.empty() ? "" : "; ", note),
                    step,
                    metrics};
  RETURN_IF_ERROR(store_->UpdateJob(job, event));
  ++version_;
  return job;
}

absl::StatusOr<uint64_t> JobManager::LastCheckpoint(const std::string& id) {
  absl::MutexLock lock(&mu_);
  RETURN_IF_ERROR(CheckJobId(id));
  ASSIGN_OR_RETURN(std::vector<EventRecord> events, store_->ListEvents(id));
  uint64_t last = 0;
  for (const EventRecord& e : events) {
    auto it = e.metrics.find("checkpoint/step");
    if (it != e.metrics.end() && it->second > 0) last = std::max(last, static_cast<uint64_t>(it->second));
  }
  return last;
}

absl::StatusOr<JobRecord> JobManager::MarkSucceeded(const std::string& id) {
  absl::MutexLock lock(&mu_);
  return Transition(id, {v1::JOB_STATE_RUNNING}, v1::JOB_STATE_SUCCEEDED, "succeeded");
}

absl::StatusOr<JobRecord> JobManager::ReportFailure(const std::string& id, const std::string& message, bool retryable) {
  absl::MutexLock lock(&mu_);
  RETURN_IF_ERROR(CheckJobId(id));
  ASSIGN_OR_RETURN(JobRecord job, store_->GetJob(id));
  const std::vector<v1::JobState> from = {v1::JOB_STATE_SCHEDULED, v1::JOB_STATE_RUNNING};
  // attempt counts starts, so attempt - 1 restarts have been used.
  if (retryable && job.attempt <= job.max_restarts) {
    return Transition(id, from, v1::JOB_STATE_RESTARTING,
                      absl::StrCat("restarting (", job.attempt, " of ", job.max_restarts, " restarts): ", message));
  }
  const std::string why = retryable ? absl::StrCat("failed after ", job.max_restarts, " restarts: ", message) : message;
  return Transition(id, from, v1::JOB_STATE_FAILED, why);
}

absl::StatusOr<int> JobManager::RecoverAfterRestart() {
  absl::MutexLock lock(&mu_);
  JobQuery query;
  query.states = {v1::JOB_STATE_SCHEDULED, v1::JOB_STATE_RUNNING};
  query.limit = 1000;
  int moved = 0;
  while (true) {
    ASSIGN_OR_RETURN(std::vector<JobRecord> jobs, store_->ListJobs(query));
    if (jobs.empty()) break;
    for (const JobRecord& job : jobs) {
      RETURN_IF_ERROR(Transition(job.id, {v1::JOB_STATE_SCHEDULED, v1::JOB_STATE_RUNNING}, v1::JOB_STATE_RESTARTING,
                                 "coordinator restarted; placing the job's workers again")
                          .status());
      ++moved;
    }
    query.after_seq = jobs.back().seq;
  }
  return moved;
}

absl::StatusOr<int> JobManager::RefreshPendingReasons() {
  absl::MutexLock lock(&mu_);
  int changed = 0;
  JobQuery query;
  query.states = {v1::JOB_STATE_PENDING};
  query.limit = 1000;
  while (true) {
    ASSIGN_OR_RETURN(std::vector<JobRecord> jobs, store_->ListJobs(query));
    if (jobs.empty()) break;
    for (JobRecord& job : jobs) {
      std::string message = PendingMessage(job.resources);
      if (message == job.message) continue;
      job.message = message;
      job.updated_unix_ms = options_.now_ms();
      RETURN_IF_ERROR(
          store_->UpdateJob(job, EventRecord{job.id, job.updated_unix_ms, job.state, job.attempt, message}));
      ++version_;
      ++changed;
    }
    query.after_seq = jobs.back().seq;
  }
  return changed;
}

}  // namespace alignd::coordinator
