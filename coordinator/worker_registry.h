// Registered workers and their leases. A worker registers with its roles, device and address and receives a lease
// that it renews with heartbeats; a lease not renewed within `lease_ttl` lapses and ExpireLeases removes the worker
// (its assignment is then failed by the caller). A worker that re-registers under its old id gets a new lease and
// the old one becomes stale. In memory only: after a coordinator restart workers re-register. Thread-safe.
#ifndef ALIGND_COORDINATOR_WORKER_REGISTRY_H_
#define ALIGND_COORDINATOR_WORKER_REGISTRY_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "coordinator/job_manager.h"
#include "proto/alignd.pb.h"

namespace alignd::coordinator {

struct WorkerRecord {
  v1::WorkerInfo info;  // info.worker_id is the registry's id
  std::string lease_id;
  int64_t lease_expires_ms = 0;
  std::string job_id;  // empty while free
  v1::Role assigned_role = v1::ROLE_UNSPECIFIED;
};

class WorkerRegistry {
 public:
  struct Options {
    // Milliseconds since the Unix epoch. Default: the system clock.
    std::function<int64_t()> now_ms;
    // How long a lease lives without a heartbeat. Default 10 s.
    absl::Duration lease_ttl = absl::Seconds(10);
  };

  // INVALID_ARGUMENT for a non-positive lease_ttl.
  static absl::StatusOr<std::unique_ptr<WorkerRegistry>> Create(Options options);

  // Registers `info` and returns the record with a fresh lease. An empty info.worker_id gets a new id ("w-000001");
  // a known id is re-registered (its old lease becomes stale, its assignment is kept). INVALID_ARGUMENT naming the
  // field for no roles, an unspecified role, an unspecified device or an empty address.
  absl::StatusOr<WorkerRecord> Register(const v1::WorkerInfo& info);

  // Renews the lease and returns the worker's id. FAILED_PRECONDITION ("stale lease: register again") for an
  // unknown, replaced or lapsed lease.
  absl::StatusOr<std::string> Heartbeat(const std::string& lease_id);

  // Removes every worker whose lease has lapsed and returns them (with the job each was assigned to, if any).
  std::vector<WorkerRecord> ExpireLeases();

  // Marks `worker_id` as running `job_id` in `role`. NOT_FOUND for an unknown worker; FAILED_PRECONDITION when it is
  // busy or lacks the role.
  absl::Status Assign(const std::string& worker_id, const std::string& job_id, v1::Role role);
  // Frees every worker assigned to `job_id` and returns their ids.
  std::vector<std::string> ReleaseJob(const std::string& job_id);

  // Messages waiting for a worker's control stream (assignments, cancellations), delivered in order. Pushing to an
  // unknown worker drops the message.
  void Push(const std::string& worker_id, v1::CoordinatorMessage message);
  std::vector<v1::CoordinatorMessage> TakeOutbox(const std::string& worker_id);

  // Free workers on `device`, in registration order.
  std::vector<WorkerRecord> FreeWorkers(v1::DeviceKind device) const;
  // How many free workers on `device` could take each role (a worker with several roles counts for each).
  Capacity FreeCapacity(v1::DeviceKind device) const;
  std::vector<WorkerRecord> List() const;
  // One worker's record; nullopt when unknown.
  std::optional<WorkerRecord> Get(const std::string& worker_id) const;
  // Ends the lease of the worker holding `lease_id` now (its control stream closed: the process is gone); the next
  // ExpireLeases returns it. Unknown leases are ignored.
  void ExpireNow(const std::string& lease_id);

 private:
  explicit WorkerRegistry(Options options) : options_(std::move(options)) {}

  const Options options_;
  mutable absl::Mutex mu_;
  int64_t next_worker_ ABSL_GUARDED_BY(mu_) = 1;
  int64_t next_lease_ ABSL_GUARDED_BY(mu_) = 1;
  std::map<std::string, WorkerRecord> workers_ ABSL_GUARDED_BY(mu_);  // by worker id
  std::map<std::string, std::vector<v1::CoordinatorMessage>> outbox_ ABSL_GUARDED_BY(mu_);
};

bool HasRole(const v1::WorkerInfo& info, v1::Role role);

}  // namespace alignd::coordinator

#endif  // ALIGND_COORDINATOR_WORKER_REGISTRY_H_
