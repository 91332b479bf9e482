#include "coordinator/scheduler.h"

#include <algorithm>
#include <map>
#include <optional>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/base/status.h"
#include "common/rpc/job_credential.h"
#include "coordinator/address.h"

namespace alignd::coordinator {
namespace {

const Principal kScheduler{"scheduler", Role::kAdmin};

absl::string_view RoleShortName(v1::Role role) {
  switch (role) {
    case v1::ROLE_LEARNER:
      return "learner";
    case v1::ROLE_ROLLOUT:
      return "rollout";
    case v1::ROLE_REWARD:
      return "reward";
    default:
      return "unknown";
  }
}

// Tries to give `job` its whole gang from `free` (workers already used are in `used`); all or nothing.
bool PlaceOne(const JobRecord& job, const std::vector<WorkerRecord>& free, std::set<std::string>* used,
              Placement* placement) {
  const std::pair<v1::Role, uint32_t> wants[] = {{v1::ROLE_LEARNER, job.resources.learners()},
                                                 {v1::ROLE_ROLLOUT, job.resources.rollout_workers()},
                                                 {v1::ROLE_REWARD, job.resources.reward_servers()}};
  std::set<std::string> taken;
  Placement p{job.id, {}};
  for (const auto& [role, count] : wants) {
    std::vector<const WorkerRecord*> candidates;
    for (const WorkerRecord& w : free) {
      const std::string& id = w.info.worker_id();
      if (w.info.device() == job.resources.device() && HasRole(w.info, role) && !used->count(id) && !taken.count(id)) {
        candidates.push_back(&w);
      }
    }
    // Single-role workers first (stable: registration order within the same number of roles).
    std::stable_sort(candidates.begin(), candidates.end(), [](const WorkerRecord* a, const WorkerRecord* b) {
      return a->info.roles_size() < b->info.roles_size();
    });
    if (candidates.size() < count) return false;
    for (uint32_t i = 0; i < count; ++i) {
      taken.insert(candidates[i]->info.worker_id());
      p.workers.emplace_back(candidates[i]->info.worker_id(), role);
    }
  }
  used->insert(taken.begin(), taken.end());
  *placement = std::move(p);
  return true;
}

}  // namespace

std::vector<Placement> PlanGangs(const std::vector<JobRecord>& waiting, const std::vector<WorkerRecord>& free) {
  // Higher priority first; the stable sort keeps submission order (FIFO) within a priority.
  std::vector<const JobRecord*> order;
  for (const JobRecord& job : waiting) order.push_back(&job);
  std::stable_sort(order.begin(), order.end(), [](const JobRecord* a, const JobRecord* b) {
    return a->resources.priority() > b->resources.priority();
  });
  std::vector<Placement> out;
  std::set<std::string> used;
  for (const JobRecord* job : order) {
    Placement p;
    if (PlaceOne(*job, free, &used, &p)) out.push_back(std::move(p));
  }
  return out;
}

Scheduler::Scheduler(JobManager* jobs, WorkerRegistry* workers)
    : jobs_(jobs), workers_(workers), gangs_(jobs, workers), credential_key_(NewCredentialKey()) {}

absl::StatusOr<Scheduler::TickResult> Scheduler::Tick() {
  absl::MutexLock lock(&mu_);
  return TickLocked();
}

absl::StatusOr<Scheduler::TickResult> Scheduler::TickLocked() {
  TickResult result;
  // 0. Workers of jobs that ended (cancelled, finished) become free.
  std::set<std::string> busy_jobs;
  for (const WorkerRecord& w : workers_->List()) {
    if (!w.job_id.empty()) busy_jobs.insert(w.job_id);
  }
  for (const std::string& id : busy_jobs) {
    auto job = jobs_->GetJob(kScheduler, id);
    if (job.ok() && !IsTerminal(job->state)) continue;
    gangs_.Release(id);
  }
  // 1. Lapsed leases fail their workers' jobs (restart when restarts remain) and free the rest of each gang.
  std::set<std::string> failed_jobs;
  for (const WorkerRecord& w : workers_->ExpireLeases()) {
    result.failed_workers.push_back(w.info.worker_id());
    if (w.job_id.empty() || failed_jobs.count(w.job_id)) continue;
    failed_jobs.insert(w.job_id);
    gangs_.Release(w.job_id);  // the rest of the gang stops; the job restarts from its checkpoint
    auto failed = jobs_->ReportFailure(w.job_id, absl::StrCat("worker ", w.info.worker_id(), " lease lapsed"),
                                       /*retryable=*/true);
    // A job cancelled meanwhile cannot fail again; anything else is a real error.
    if (!failed.ok() && failed.status().code() != absl::StatusCode::kFailedPrecondition) return failed.status();
  }
  // 2. Place waiting jobs, oldest first, per device kind.
  std::vector<JobRecord> waiting;
  std::string token;
  do {
    ASSIGN_OR_RETURN(JobPage page,
                     jobs_->ListJobs(kScheduler, {v1::JOB_STATE_PENDING, v1::JOB_STATE_RESTARTING}, 0, token));
    waiting.insert(waiting.end(), page.jobs.begin(), page.jobs.end());
    token = page.next_page_token;
  } while (!token.empty());
  std::vector<WorkerRecord> free = workers_->FreeWorkers(v1::DEVICE_KIND_CPU);
  std::vector<WorkerRecord> cuda = workers_->FreeWorkers(v1::DEVICE_KIND_CUDA);
  free.insert(free.end(), cuda.begin(), cuda.end());
  for (Placement& p : PlanGangs(waiting, free)) {
    std::vector<std::string> where;
    for (const auto& [worker, role] : p.workers) {
      RETURN_IF_ERROR(workers_->Assign(worker, p.job_id, role));
      where.push_back(absl::StrCat(worker, " (", RoleShortName(role), ")"));
    }
    ASSIGN_OR_RETURN(JobRecord job,
                     jobs_->MarkScheduled(p.job_id, absl::StrCat("placed on ", absl::StrJoin(where, ", "))));
    ASSIGN_OR_RETURN(uint64_t checkpoint, jobs_->LastCheckpoint(job.id));
    std::map<v1::Role, uint32_t> world_size, rank;
    for (const auto& [worker, role] : p.workers) ++world_size[role];
    // The gang's addresses: learner rank 0 hosts both rendezvous stores; rollout and reward servers by rank.
    v1::Assignment common;
    common.set_job_id(job.id);
    common.set_attempt(job.attempt);
    common.set_spec_yaml(job.spec_yaml);
    common.set_checkpoint_step(checkpoint);
    common.set_job_credential(MintJobCredential(credential_key_, job.id, job.attempt));
    bool have_leader = false;
    for (const auto& [worker, role] : p.workers) {
      std::optional<WorkerRecord> record = workers_->Get(worker);
      if (!record) continue;
      if (role == v1::ROLE_ROLLOUT) common.add_rollout_addresses(record->info.address());
      if (role == v1::ROLE_REWARD) common.add_reward_addresses(record->info.address());
      if (role == v1::ROLE_LEARNER && !have_leader) {
        have_leader = true;
        common.set_store_address(record->info.address());
        const std::string host = HostOf(record->info.address());
        // A worker that keeps no ports (0) cannot host them: its gang gets no rendezvous, which is fine for a
        // lone learner without rollout workers and an error the learner reports otherwise.
        if (record->info.group_port() != 0) common.set_rendezvous(absl::StrCat(host, ":", record->info.group_port()));
        if (record->info.broadcast_port() != 0) {
          common.set_broadcast_rendezvous(absl::StrCat(host, ":", record->info.broadcast_port()));
        }
      }
    }
    for (const auto& [worker, role] : p.workers) {
      v1::CoordinatorMessage message;
      v1::Assignment* a = message.mutable_assignment();
      *a = common;
      a->set_role(role);
      a->set_rank(rank[role]++);
      a->set_world_size(world_size[role]);
      workers_->Push(worker, std::move(message));
    }
    result.placed.push_back(std::move(p));
  }
  // 3. The rest say what they wait for.
  RETURN_IF_ERROR(jobs_->RefreshPendingReasons().status());
  return result;
}

}  // namespace alignd::coordinator
