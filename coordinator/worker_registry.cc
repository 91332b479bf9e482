#include "coordinator/worker_registry.h"

#include <algorithm>
#include <chrono>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace alignd::coordinator {
namespace {

int64_t SystemNowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

bool HasRole(const v1::WorkerInfo& info, v1::Role role) {
  return std::find(info.roles().begin(), info.roles().end(), role) != info.roles().end();
}

absl::StatusOr<std::unique_ptr<WorkerRegistry>> WorkerRegistry::Create(Options options) {
  if (options.lease_ttl <= absl::ZeroDuration()) return absl::InvalidArgumentError("lease_ttl must be positive");
  if (!options.now_ms) options.now_ms = SystemNowMs;
  return std::unique_ptr<WorkerRegistry>(new WorkerRegistry(std::move(options)));
}

absl::StatusOr<WorkerRecord> WorkerRegistry::Register(const v1::WorkerInfo& info) {
  if (info.roles().empty()) return absl::InvalidArgumentError("worker.roles: at least one role is required");
  for (int role : info.roles()) {
    if (role == v1::ROLE_UNSPECIFIED || !v1::Role_IsValid(role)) {
      return absl::InvalidArgumentError(absl::StrCat("worker.roles: invalid role ", role));
    }
  }
  if (info.device() == v1::DEVICE_KIND_UNSPECIFIED || !v1::DeviceKind_IsValid(info.device())) {
    return absl::InvalidArgumentError("worker.device: must be cpu or cuda");
  }
  if (info.address().empty()) return absl::InvalidArgumentError("worker.address: is required");
  absl::MutexLock lock(&mu_);
  WorkerRecord record;
  record.info = info;
  if (!info.worker_id().empty()) {
    auto it = workers_.find(info.worker_id());
    if (it == workers_.end()) {
      return absl::NotFoundError(absl::StrCat("worker \"", info.worker_id(),
                                              "\" is not registered; register "
                                              "without an id"));
    }
    record.job_id = it->second.job_id;
    record.assigned_role = it->second.assigned_role;
  } else {
    record.info.set_worker_id(absl::StrFormat("w-%06d", next_worker_++));
  }
  record.lease_id = absl::StrFormat("lease-%06d", next_lease_++);
  record.lease_expires_ms = options_.now_ms() + absl::ToInt64Milliseconds(options_.lease_ttl);
  workers_[record.info.worker_id()] = record;
  return record;
}

absl::StatusOr<std::string> WorkerRegistry::Heartbeat(const std::string& lease_id) {
  absl::MutexLock lock(&mu_);
  const int64_t now = options_.now_ms();
  for (auto& [id, worker] : workers_) {
    if (worker.lease_id != lease_id) continue;
    if (worker.lease_expires_ms <= now) break;
    worker.lease_expires_ms = now + absl::ToInt64Milliseconds(options_.lease_ttl);
    return id;
  }
  return absl::FailedPreconditionError(absl::StrCat("stale lease \"", lease_id, "\": register again"));
}

std::vector<WorkerRecord> WorkerRegistry::ExpireLeases() {
  absl::MutexLock lock(&mu_);
  const int64_t now = options_.now_ms();
  std::vector<WorkerRecord> expired;
  for (auto it = workers_.begin(); it != workers_.end();) {
    if (it->second.lease_expires_ms <= now) {
      expired.push_back(it->second);
      outbox_.erase(it->first);
      it = workers_.erase(it);
    } else {
      ++it;
    }
  }
  return expired;
}

absl::Status WorkerRegistry::Assign(const std::string& worker_id, const std::string& job_id, v1::Role role) {
  absl::MutexLock lock(&mu_);
  auto it = workers_.find(worker_id);
  if (it == workers_.end()) return absl::NotFoundError(absl::StrCat("worker \"", worker_id, "\" not found"));
  WorkerRecord& worker = it->second;
  if (!worker.job_id.empty()) {
    return absl::FailedPreconditionError(absl::StrCat("worker ", worker_id, " is busy with ", worker.job_id));
  }
  if (!HasRole(worker.info, role)) {
    return absl::FailedPreconditionError(absl::StrCat("worker ", worker_id, " lacks role ", v1::Role_Name(role)));
  }
  worker.job_id = job_id;
  worker.assigned_role = role;
  return absl::OkStatus();
}

std::vector<std::string> WorkerRegistry::ReleaseJob(const std::string& job_id) {
  absl::MutexLock lock(&mu_);
  std::vector<std::string> released;
  for (auto& [id, worker] : workers_) {
    if (worker.job_id != job_id) continue;
    worker.job_id.clear();
    worker.assigned_role = v1::ROLE_UNSPECIFIED;
    released.push_back(id);
  }
  return released;
}

void WorkerRegistry::Push(const std::string& worker_id, v1::CoordinatorMessage message) {
  absl::MutexLock lock(&mu_);
  if (workers_.count(worker_id)) outbox_[worker_id].push_back(std::move(message));
}

std::vector<v1::CoordinatorMessage> WorkerRegistry::TakeOutbox(const std::string& worker_id) {
  absl::MutexLock lock(&mu_);
  auto it = outbox_.find(worker_id);
  if (it == outbox_.end()) return {};
  std::vector<v1::CoordinatorMessage> out = std::move(it->second);
  outbox_.erase(it);
  return out;
}

std::vector<WorkerRecord> WorkerRegistry::FreeWorkers(v1::DeviceKind device) const {
  absl::MutexLock lock(&mu_);
  std::vector<WorkerRecord> out;
  for (const auto& [id, worker] : workers_) {
    if (worker.job_id.empty() && worker.info.device() == device) out.push_back(worker);
  }
  return out;
}

Capacity WorkerRegistry::FreeCapacity(v1::DeviceKind device) const {
  Capacity c;
  for (const WorkerRecord& w : FreeWorkers(device)) {
    if (HasRole(w.info, v1::ROLE_LEARNER)) ++c.learners;
    if (HasRole(w.info, v1::ROLE_ROLLOUT)) ++c.rollout_workers;
    if (HasRole(w.info, v1::ROLE_REWARD)) ++c.reward_servers;
  }
  return c;
}

std::vector<WorkerRecord> WorkerRegistry::List() const {
  absl::MutexLock lock(&mu_);
  std::vector<WorkerRecord> out;
  for (const auto& [id, worker] : workers_) out.push_back(worker);
  return out;
}

std::optional<WorkerRecord> WorkerRegistry::Get(const std::string& worker_id) const {
  absl::MutexLock lock(&mu_);
  auto it = workers_.find(worker_id);
  if (it == workers_.end()) return std::nullopt;
  return it->second;
}

void WorkerRegistry::ExpireNow(const std::string& lease_id) {
  absl::MutexLock lock(&mu_);
  for (auto& [id, worker] : workers_) {
    if (worker.lease_id == lease_id) worker.lease_expires_ms = 0;
  }
}

}  // namespace alignd::coordinator
