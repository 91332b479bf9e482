#include "node/routers.h"

#include <algorithm>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "collective/store_table.h"
#include "common/base/status.h"
#include "common/rpc/grpc_status.h"

namespace alignd::node {
namespace {

absl::Status NotUp(const char* service, const JobIdentity& id) {
  return absl::UnavailableError(absl::StrCat("the ", service, " service of job ", id.job_id, " attempt ", id.attempt,
                                             " is not up on this worker"));
}

// Admits the call, then waits up to `wait` for its job's service in `slot`, admitting it again every 100 ms: a job
// that ends meanwhile (or a node that turns idle) answers at once rather than at the end of the wait.
template <typename Service>
absl::StatusOr<std::shared_ptr<Service>> AwaitService(const grpc::ServerContext& c, const Admission& admission,
                                                      ServiceSlot<Service>& slot, absl::Duration wait,
                                                      const char* name) {
  const absl::Time end = absl::Now() + wait;
  while (true) {
    ASSIGN_OR_RETURN(JobIdentity id, admission.Admit(c));
    const absl::Duration step = std::min(absl::Milliseconds(100), std::max(absl::ZeroDuration(), end - absl::Now()));
    if (std::shared_ptr<Service> service = slot.Wait(id, step)) return service;
    if (absl::Now() >= end || c.IsCancelled()) return NotUp(name, id);
  }
}

template <typename Service, typename Fn>
grpc::Status Route(const grpc::ServerContext& c, const Admission& admission, ServiceSlot<Service>& slot,
                   absl::Duration wait, const char* name, Fn fn) {
  absl::StatusOr<std::shared_ptr<Service>> service = AwaitService(c, admission, slot, wait, name);
  return service.ok() ? fn(**service) : ToGrpcStatus(service.status());
}

}  // namespace

Admission::Admission(std::string worker_token, HeldFn held)
    : worker_token_(std::move(worker_token)), held_(std::move(held)) {}

void Admission::SetCredentialKey(std::string key) {
  absl::MutexLock lock(&mu_);
  credential_key_ = std::move(key);
}

absl::StatusOr<JobIdentity> Admission::Admit(const grpc::ServerContext& context) const {
  auto it = context.client_metadata().find("authorization");
  return Admit(it == context.client_metadata().end() ? absl::string_view()
                                                     : absl::string_view(it->second.data(), it->second.size()));
}

absl::StatusOr<JobIdentity> Admission::Admit(absl::string_view authorization) const {
  const absl::string_view bearer = BearerToken(authorization);
  if (bearer.empty()) {
    return absl::UnauthenticatedError(
        "no credentials: calls to a worker carry their job's credential "
        "(authorization: Bearer ...)");
  }
  const bool worker_token = !worker_token_.empty() && SecretsEqual(bearer, worker_token_);
  JobIdentity id;
  if (!worker_token) {
    std::string key;
    {
      absl::MutexLock lock(&mu_);
      key = credential_key_;
    }
    absl::StatusOr<JobIdentity> verified = VerifyJobCredential(key, bearer);
    if (!verified.ok()) return verified.status();
    id = *std::move(verified);
  }
  const std::vector<JobIdentity> held = held_();
  if (held.empty()) return absl::UnavailableError("this worker serves no job now");
  if (worker_token) return held.front();
  for (const JobIdentity& h : held) {
    if (h == id) return id;
  }
  for (const JobIdentity& h : held) {
    // A later attempt of a job this node holds: its assignment is still on the way here (the gang's other members
    // got theirs first). The caller retries.
    if (h.job_id == id.job_id && h.attempt < id.attempt) {
      return absl::UnavailableError(absl::StrCat("job ", id.job_id, " attempt ", id.attempt,
                                                 " has not reached this worker yet (it holds attempt ", h.attempt,
                                                 ")"));
    }
  }
  return absl::PermissionDeniedError(absl::StrCat("the credential is for job ", id.job_id, " attempt ", id.attempt,
                                                  "; this worker serves job ", held.front().job_id, " attempt ",
                                                  held.front().attempt));
}

grpc::Status RolloutRouter::Generate(grpc::ServerContext* c, const v1::GenerateRequest* q, v1::GenerateResponse* r) {
  return Route(*c, *admission_, slot_, service_wait_, "rollout",
               [&](v1::Rollout::Service& s) { return s.Generate(c, q, r); });
}

grpc::Status RolloutRouter::GenerateStream(grpc::ServerContext* c, const v1::GenerateRequest* q,
                                           grpc::ServerWriter<v1::GenerateResponse>* w) {
  return Route(*c, *admission_, slot_, service_wait_, "rollout",
               [&](v1::Rollout::Service& s) { return s.GenerateStream(c, q, w); });
}

grpc::Status RolloutRouter::UpdateWeights(grpc::ServerContext* c, const v1::UpdateWeightsRequest* q,
                                          v1::UpdateWeightsResponse* r) {
  return Route(*c, *admission_, slot_, service_wait_, "rollout",
               [&](v1::Rollout::Service& s) { return s.UpdateWeights(c, q, r); });
}

grpc::Status RolloutRouter::UpdateWeightsStream(grpc::ServerContext* c, grpc::ServerReader<v1::WeightChunk>* q,
                                                v1::UpdateWeightsResponse* r) {
  return Route(*c, *admission_, slot_, service_wait_, "rollout",
               [&](v1::Rollout::Service& s) { return s.UpdateWeightsStream(c, q, r); });
}

grpc::Status RolloutRouter::GetInfo(grpc::ServerContext* c, const v1::GetInfoRequest* q, v1::RolloutInfo* r) {
  return Route(*c, *admission_, slot_, absl::ZeroDuration(), "rollout",
               [&](v1::Rollout::Service& s) { return s.GetInfo(c, q, r); });
}

grpc::Status RewardRouter::Score(grpc::ServerContext* c, const v1::ScoreRequest* q, v1::ScoreResponse* r) {
  return Route(*c, *admission_, slot_, service_wait_, "reward",
               [&](v1::Reward::Service& s) { return s.Score(c, q, r); });
}

std::string RendezvousRouter::Key(const JobIdentity& id) { return absl::StrCat(id.attempt, "/", id.job_id); }

void RendezvousRouter::Open(const JobIdentity& id) {
  auto table = std::make_shared<collective::StoreTable>();
  absl::MutexLock lock(&mu_);
  tables_[Key(id)] = std::move(table);
}

void RendezvousRouter::Close(const JobIdentity& id) {
  const std::string key = Key(id);
  CloseIf([&](const std::string& k) { return k == key; });
}

void RendezvousRouter::CloseJob(const std::string& job_id) {
  const std::string suffix = absl::StrCat("/", job_id);
  CloseIf([&](const std::string& k) { return job_id.empty() || absl::EndsWith(k, suffix); });
}

void RendezvousRouter::CloseIf(const std::function<bool(const std::string&)>& pred) {
  std::vector<std::shared_ptr<collective::StoreTable>> closing;
  {
    absl::MutexLock lock(&mu_);
    for (auto it = tables_.begin(); it != tables_.end();) {
      if (pred(it->first)) {
        closing.push_back(std::move(it->second));
        it = tables_.erase(it);
      } else {
        ++it;
      }
    }
  }
  for (auto& table : closing) table->Close();
}

grpc::Status RendezvousRouter::Store(grpc::ServerContext* c, const v1::StoreRequest* q, v1::StoreResponse* r) {
  return HandleRpc([&]() -> absl::Status {
    ASSIGN_OR_RETURN(JobIdentity id, admission_->Admit(*c));
    std::shared_ptr<collective::StoreTable> table;
    {
      absl::MutexLock lock(&mu_);
      auto it = tables_.find(Key(id));
      if (it != tables_.end()) table = it->second;
    }
    // Not open yet: this node holds the job but has not started it; the caller retries.
    if (!table) return NotUp("rendezvous", id);
    return table->Apply(*q, r, absl::FromChrono(c->deadline()));
  });
}

}  // namespace alignd::node
