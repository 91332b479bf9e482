// The node's own gRPC server routes every call to the job the node holds now.
//
// Admission (who may call): every call carries the job credential of the assignment (common/rpc/job_credential.h),
// checked with the key the coordinator gave at registration, or the node's own worker token. Without one, or with one
// that does not verify: UNAUTHENTICATED. With a valid one while the node holds no assignment: UNAVAILABLE, at once.
// With one of another job, or of an earlier attempt of the job it holds: PERMISSION_DENIED. With one of a later
// attempt of the job it holds: UNAVAILABLE (that assignment is on its way here; the caller retries). The worker token
// reaches the running (or next) job. Gang members retry UNAVAILABLE and PERMISSION_DENIED from a peer that has not
// answered them yet (learner/remote.h, collective/grpc_store.h).
//
// Routing: an admitted Rollout or Reward call waits (up to `service_wait`, re-admitting every 100 ms so that a job
// that ends meanwhile answers at once) for the service of its job to be put in the router's slot by the role's
// runner; UNAVAILABLE if it is not up by then. GetInfo does not wait. Rendezvous calls reach the store of the job
// (attempt) this node is learner rank 0 of, UNAVAILABLE while it is not open.
//
// Torch-free: the slots hold the services as their gRPC interfaces. Thread safety: every public method is thread-safe.
#ifndef ALIGND_NODE_ROUTERS_H_
#define ALIGND_NODE_ROUTERS_H_

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/rpc/job_credential.h"
#include "proto/alignd.grpc.pb.h"

namespace alignd::collective {
class StoreTable;  // collective/store_table.h
}  // namespace alignd::collective

namespace alignd::node {

class Admission {
 public:
  // The jobs the node holds, the running one first (AssignmentExecutor::Held).
  using HeldFn = std::function<std::vector<JobIdentity>()>;
  // `worker_token`: the node's own bearer token ("" for none).
  Admission(std::string worker_token, HeldFn held);
  // The coordinator's credential key, from the last registration.
  void SetCredentialKey(std::string key);
  // The job a call whose `authorization` metadata is this may reach, or the errors above.
  absl::StatusOr<JobIdentity> Admit(absl::string_view authorization) const;
  // Admit on the call's "authorization" metadata.
  absl::StatusOr<JobIdentity> Admit(const grpc::ServerContext& context) const;

 private:
  const std::string worker_token_;
  const HeldFn held_;
  mutable absl::Mutex mu_;
  std::string credential_key_ ABSL_GUARDED_BY(mu_);
};

// The service a node runs for its current job, handed to handlers that may outlive the job's turn (a shared_ptr
// that may alias the job's state, keeping it alive).
template <typename Service>
class ServiceSlot {
 public:
  void Set(const JobIdentity& id, std::shared_ptr<Service> service) {
    absl::MutexLock lock(&mu_);
    id_ = id;
    service_ = std::move(service);
  }
  void Clear() { Set({}, nullptr); }
  // The service of job `id`, waiting up to `wait` for it; null if it is not up by then.
  std::shared_ptr<Service> Wait(const JobIdentity& id, absl::Duration wait) {
    absl::MutexLock lock(&mu_);
    auto ready = [this, &id]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return service_ != nullptr && id_ == id; };
    mu_.AwaitWithTimeout(absl::Condition(&ready), wait);
    return ready() ? service_ : nullptr;
  }

 private:
  absl::Mutex mu_;
  JobIdentity id_ ABSL_GUARDED_BY(mu_);
  std::shared_ptr<Service> service_ ABSL_GUARDED_BY(mu_);
};

// How long a call waits for its job's service by default: the learner may call as soon as the gang is formed, a
// moment before this node has its service up.
inline constexpr absl::Duration kServiceWait = absl::Seconds(30);

class RolloutRouter final : public v1::Rollout::Service {
 public:
  RolloutRouter(const Admission* admission, absl::Duration service_wait = kServiceWait)
      : admission_(admission), service_wait_(service_wait) {}
  ServiceSlot<v1::Rollout::Service>& slot() { return slot_; }

  grpc::Status Generate(grpc::ServerContext* c, const v1::GenerateRequest* q, v1::GenerateResponse* r) override;
  grpc::Status GenerateStream(grpc::ServerContext* c, const v1::GenerateRequest* q,
                              grpc::ServerWriter<v1::GenerateResponse>* w) override;
  grpc::Status UpdateWeights(grpc::ServerContext* c, const v1::UpdateWeightsRequest* q,
                             v1::UpdateWeightsResponse* r) override;
  grpc::Status UpdateWeightsStream(grpc::ServerContext* c, grpc::ServerReader<v1::WeightChunk>* q,
                                   v1::UpdateWeightsResponse* r) override;
  grpc::Status GetInfo(grpc::ServerContext* c, const v1::GetInfoRequest* q, v1::RolloutInfo* r) override;

 private:
  const Admission* admission_;
  const absl::Duration service_wait_;
  ServiceSlot<v1::Rollout::Service> slot_;
};

class RewardRouter final : public v1::Reward::Service {
 public:
  RewardRouter(const Admission* admission, absl::Duration service_wait = kServiceWait)
      : admission_(admission), service_wait_(service_wait) {}
  ServiceSlot<v1::Reward::Service>& slot() { return slot_; }

  grpc::Status Score(grpc::ServerContext* c, const v1::ScoreRequest* q, v1::ScoreResponse* r) override;

 private:
  const Admission* admission_;
  const absl::Duration service_wait_;
  ServiceSlot<v1::Reward::Service> slot_;
};

// The rendezvous stores this node hosts for the jobs it is learner rank 0 of.
class RendezvousRouter final : public v1::Rendezvous::Service {
 public:
  explicit RendezvousRouter(const Admission* admission) : admission_(admission) {}

  // Opens job attempt `id`'s store (replacing one open already).
  void Open(const JobIdentity& id);
  void Close(const JobIdentity& id);
  // Closes every attempt's store of `job_id` (every job's when empty): their waits end at once, so that a member
  // blocked in the rendezvous of a cancelled attempt leaves now rather than at its timeout.
  void CloseJob(const std::string& job_id);

  grpc::Status Store(grpc::ServerContext* c, const v1::StoreRequest* q, v1::StoreResponse* r) override;

 private:
  static std::string Key(const JobIdentity& id);
  void CloseIf(const std::function<bool(const std::string&)>& pred);
  const Admission* admission_;
  absl::Mutex mu_;
  std::map<std::string, std::shared_ptr<collective::StoreTable>> tables_ ABSL_GUARDED_BY(mu_);
};

}  // namespace alignd::node

#endif  // ALIGND_NODE_ROUTERS_H_
