#include "node/node.h"

#include <ATen/Parallel.h>
#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <deque>
#include <filesystem>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "collective/learner_group.h"
#include "collective/store_table.h"
#include "collective/weight_broadcast.h"
#include "common/base/cpu.h"
#include "common/base/file_util.h"
#include "common/base/logging.h"  // last: LOG is glog's
#include "common/base/status.h"
#include "common/data/dataset.h"
#include "common/metrics/prometheus.h"
#include "common/metrics/rpc_metrics.h"
#include "common/model/compute_threads.h"
#include "common/model/device.h"
#include "common/model/hf_model.h"
#include "common/rpc/grpc_status.h"
#include "common/rpc/job_credential.h"
#include "learner/peft_glue.h"
#include "learner/remote.h"
#include "learner/trainer.h"
#include "proto/alignd.grpc.pb.h"
#include "reward/model_scorer.h"
#include "reward/registry.h"
#include "reward/reward_core.h"
#include "reward/reward_service.h"
#include "rollout/engine.h"
#include "rollout/service.h"
#include "rollout/weight_update.h"
#include "spec/job_validation.h"

namespace alignd::node {

using collective::LearnerGroup;
using learner::AttachPeft;
using learner::kJobAdapter;
using learner::Metrics;
using learner::PeftGlue;
using learner::RemoteServices;
using learner::RunTraining;
using learner::TrainOptions;
using learner::TrainResult;
namespace {

constexpr int kMaxMessageBytes = 256 << 20;
// How long a call to the node's services waits for the job that will serve it (the learner may call as soon as the
// gang is formed, a moment before this node has its service up).
constexpr absl::Duration kServiceWait = absl::Seconds(30);

// Who a call to this node's servers was admitted as: the job (and attempt) it may reach.
using Admit = std::function<absl::StatusOr<JobIdentity>(const grpc::ServerContext&)>;

// The service a node runs for its current job, handed to gRPC handlers that may outlive the job's turn.
template <typename Job>
class Slot {
 public:
  void Set(const JobIdentity& id, std::shared_ptr<Job> job) {
    absl::MutexLock lock(&mu_);
    id_ = id;
    job_ = std::move(job);
  }
  void Clear() { Set({}, nullptr); }
  // The service of job `id`, waiting up to `wait` for it (a gang's members may call a moment before this node has
  // its service up); null if it is not up by then.
  std::shared_ptr<Job> Wait(const JobIdentity& id, absl::Duration wait) {
    absl::MutexLock lock(&mu_);
    auto ready = [this, &id]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return job_ != nullptr && id_ == id; };
    mu_.AwaitWithTimeout(absl::Condition(&ready), wait);
    return ready() ? job_ : nullptr;
  }

 private:
  absl::Mutex mu_;
  JobIdentity id_ ABSL_GUARDED_BY(mu_);
  std::shared_ptr<Job> job_ ABSL_GUARDED_BY(mu_);
};

absl::Status NotUp(const char* service, const JobIdentity& id) {
  return absl::UnavailableError(absl::StrCat("the ", service, " service of job ", id.job_id, " attempt ", id.attempt,
                                             " is not up on this worker"));
}

// Members in construction order; destroyed in reverse (the service before what it refers to).
struct RolloutJob {
  std::unique_ptr<PeftGlue> peft;    // the job's adapters on the engine's model (PEFT jobs)
  rollout::AdapterTargets adapters;  // their tensors, which weight updates replace
  std::unique_ptr<rollout::Engine> engine;
  std::unique_ptr<collective::WeightBroadcastGroup> group;
  std::unique_ptr<rollout::RolloutService> service;
};

struct RewardJob {
  std::unique_ptr<reward::RewardCore> core;
  std::unique_ptr<reward::RewardService> service;
};

// Admits the call, then waits up to `wait` for its job's service in `slot`, admitting it again every 100 ms: a job
// that ends meanwhile (or a node that turns idle) answers at once rather than at the end of the wait.
template <typename Job>
absl::StatusOr<std::shared_ptr<Job>> AwaitService(const grpc::ServerContext& c, const Admit& admit, Slot<Job>& slot,
                                                  absl::Duration wait, const char* service) {
  const absl::Time end = absl::Now() + wait;
  while (true) {
    ASSIGN_OR_RETURN(JobIdentity id, admit(c));
    if (auto job =
            slot.Wait(id, std::min(absl::Milliseconds(100), std::max(absl::ZeroDuration(), end - absl::Now())))) {
      return job;
    }
    if (absl::Now() >= end || c.IsCancelled()) return NotUp(service, id);
  }
}

// Each handler admits the caller first (UNAUTHENTICATED, PERMISSION_DENIED, or UNAVAILABLE on an idle worker, all at
// once), then waits for its job's service.
class RolloutRouter final : public v1::Rollout::Service {
 public:
  explicit RolloutRouter(Admit admit) : admit_(std::move(admit)) {}
  Slot<RolloutJob> slot;
  grpc::Status Generate(grpc::ServerContext* c, const v1::GenerateRequest* q, v1::GenerateResponse* r) override {
    return Route(*c, kServiceWait, [&](RolloutJob& job) { return job.service->Generate(c, q, r); });
  }
  grpc::Status GenerateStream(grpc::ServerContext* c, const v1::GenerateRequest* q,
                              grpc::ServerWriter<v1::GenerateResponse>* w) override {
    return Route(*c, kServiceWait, [&](RolloutJob& job) { return job.service->GenerateStream(c, q, w); });
  }
  grpc::Status UpdateWeights(grpc::ServerContext* c, const v1::UpdateWeightsRequest* q,
                             v1::UpdateWeightsResponse* r) override {
    return Route(*c, kServiceWait, [&](RolloutJob& job) { return job.service->UpdateWeights(c, q, r); });
  }
  grpc::Status UpdateWeightsStream(grpc::ServerContext* c, grpc::ServerReader<v1::WeightChunk>* q,
                                   v1::UpdateWeightsResponse* r) override {
    return Route(*c, kServiceWait, [&](RolloutJob& job) { return job.service->UpdateWeightsStream(c, q, r); });
  }
  grpc::Status GetInfo(grpc::ServerContext* c, const v1::GetInfoRequest* q, v1::RolloutInfo* r) override {
    return Route(*c, absl::ZeroDuration(), [&](RolloutJob& job) { return job.service->GetInfo(c, q, r); });
  }

 private:
  template <typename Fn>
  grpc::Status Route(const grpc::ServerContext& c, absl::Duration wait, Fn fn) {
    absl::StatusOr<std::shared_ptr<RolloutJob>> job = AwaitService(c, admit_, slot, wait, "rollout");
    return job.ok() ? fn(**job) : ToGrpcStatus(job.status());
  }
  Admit admit_;
};

class RewardRouter final : public v1::Reward::Service {
 public:
  explicit RewardRouter(Admit admit) : admit_(std::move(admit)) {}
  Slot<RewardJob> slot;
  grpc::Status Score(grpc::ServerContext* c, const v1::ScoreRequest* q, v1::ScoreResponse* r) override {
    absl::StatusOr<std::shared_ptr<RewardJob>> job = AwaitService(*c, admit_, slot, kServiceWait, "reward");
    return job.ok() ? (*job)->service->Score(c, q, r) : ToGrpcStatus(job.status());
  }

 private:
  Admit admit_;
};

// The rendezvous stores this node hosts for the jobs it is learner rank 0 of.
class RendezvousRouter final : public v1::Rendezvous::Service {
 public:
  explicit RendezvousRouter(Admit admit) : admit_(std::move(admit)) {}

  std::shared_ptr<collective::StoreTable> Open(const JobIdentity& id) {
    auto table = std::make_shared<collective::StoreTable>();
    absl::MutexLock lock(&mu_);
    tables_[Key(id)] = table;
    return table;
  }
  void Close(const JobIdentity& id) {
    CloseIf([&](const std::string& key) { return key == Key(id); });
  }
  // Every attempt's store of `job_id` (all jobs' when empty): their waits end at once, so that a member blocked in the
  // rendezvous of a cancelled attempt leaves now rather than at its timeout.
  void CloseJob(const std::string& job_id) {
    CloseIf([&](const std::string& key) { return job_id.empty() || absl::EndsWith(key, absl::StrCat("/", job_id)); });
  }

  grpc::Status Store(grpc::ServerContext* c, const v1::StoreRequest* q, v1::StoreResponse* r) override {
    absl::StatusOr<JobIdentity> id = admit_(*c);
    if (!id.ok()) return ToGrpcStatus(id.status());
    std::shared_ptr<collective::StoreTable> table;
    {
      absl::MutexLock lock(&mu_);
      auto it = tables_.find(Key(*id));
      if (it != tables_.end()) table = it->second;
    }
    // Not open yet: this node holds the job but has not started it; the caller retries.
    if (!table) return ToGrpcStatus(NotUp("rendezvous", *id));
    return ToGrpcStatus(table->Apply(*q, r, absl::FromChrono(c->deadline())));
  }

 private:
  static std::string Key(const JobIdentity& id) { return absl::StrCat(id.attempt, "/", id.job_id); }
  template <typename Pred>
  void CloseIf(Pred pred) {
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
  Admit admit_;
  absl::Mutex mu_;
  std::map<std::string, std::shared_ptr<collective::StoreTable>> tables_ ABSL_GUARDED_BY(mu_);
};

// A learner step in Prometheus terms (common/metrics/prometheus.h): steps, tokens and weight syncs as counters and
// histograms, and the last step's rates as gauges, labelled with the job.
void RecordStepMetrics(const std::string& job_id, const Metrics& m) {
  metrics::Registry& r = metrics::Registry::Default();
  const metrics::Labels job = {{"job", job_id}};
  auto get = [&m](const char* key) -> std::optional<double> {
    auto it = m.find(key);
    return it == m.end() ? std::nullopt : std::optional<double>(it->second);
  };
  r.CounterAdd("alignd_learner_steps_total", "Optimizer steps the learners of this process finished.", job);
  if (auto s = get("time/step_s"); s && *s > 0) {
    r.Observe("alignd_learner_step_seconds", "Wall time of a learner step.", job, *s);
    r.GaugeSet("alignd_learner_steps_per_second", "1 / the last step's wall time.", job, 1.0 / *s);
    if (auto tokens = get("train/tokens")) {
      r.CounterAdd("alignd_learner_tokens_total", "Tokens the learners of this process trained on.", job, *tokens);
      r.GaugeSet("alignd_learner_tokens_per_second", "Tokens trained on in the last step / its wall time.", job,
                 *tokens / *s);
    }
  }
  if (auto t = get("rollout/tokens_per_s")) {
    r.GaugeSet("alignd_rollout_tokens_per_second",
               "Tokens per second of the last step's generation, as the learner "
               "saw it (generated tokens / generation wall time).",
               job, *t);
  }
  if (auto sync = get("weights/sync_seconds")) {
    r.Observe("alignd_weight_sync_seconds", "Wall time of publishing a weight version to the rollout workers.", job,
              *sync);
  }
  if (auto bytes = get("weights/sync_bytes")) {
    r.CounterAdd("alignd_weight_sync_bytes_total", "Bytes of weight versions sent to the rollout workers.", job,
                 *bytes);
  }
}

// A running assignment.
struct Task {
  v1::Assignment assignment;
  std::atomic<bool> cancelled{false};
  absl::Notification stop;  // notified on cancel
  void Cancel() {
    if (!cancelled.exchange(true)) stop.Notify();
  }
};

bool Retryable(const absl::Status& s) {
  switch (s.code()) {
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kNotFound:
    case absl::StatusCode::kPermissionDenied:
    case absl::StatusCode::kUnimplemented:
      return false;
    default:
      return true;
  }
}

}  // namespace

struct WorkerNode::Impl {
  NodeOptions options;
  std::string address;
  RolloutRouter rollout_router{[this](const grpc::ServerContext& c) { return AdmitCall(c); }};
  RewardRouter reward_router{[this](const grpc::ServerContext& c) { return AdmitCall(c); }};
  RendezvousRouter rendezvous_router{[this](const grpc::ServerContext& c) { return AdmitCall(c); }};
  std::unique_ptr<grpc::Server> server;
  std::unique_ptr<v1::WorkerService::Stub> stub;

  std::atomic<bool> stopping{false};
  absl::Notification stopped;
  std::atomic<int64_t> done{0};

  absl::Mutex mu;
  std::string worker_id ABSL_GUARDED_BY(mu);
  std::string credential_key ABSL_GUARDED_BY(mu);  // the coordinator's, from the last registration
  std::deque<v1::WorkerMessage> outbox ABSL_GUARDED_BY(mu);
  std::deque<v1::Assignment> pending ABSL_GUARDED_BY(mu);
  std::shared_ptr<Task> current ABSL_GUARDED_BY(mu);
  grpc::ClientContext* stream_context ABSL_GUARDED_BY(mu) = nullptr;

  std::thread control, executor;

  // ---- who may call this node's servers ----

  // The job a call may reach. UNAUTHENTICATED without a job credential (or this node's own worker token), or with
  // one that does not verify; UNAVAILABLE when this node holds no assignment; PERMISSION_DENIED for a credential of
  // another job or attempt than the ones it holds. The worker token reaches the running (or next) job.
  absl::StatusOr<JobIdentity> AdmitCall(const grpc::ServerContext& context) {
    auto it = context.client_metadata().find("authorization");
    const absl::string_view authorization = it == context.client_metadata().end()
                                                ? absl::string_view()
                                                : absl::string_view(it->second.data(), it->second.size());
    const absl::string_view bearer = BearerToken(authorization);
    if (bearer.empty()) {
      return absl::UnauthenticatedError(
          "no credentials: calls to a worker carry their job's credential "
          "(authorization: Bearer ...)");
    }
    absl::MutexLock lock(&mu);
    std::vector<JobIdentity> held;
    if (current) held.push_back(IdentityOf(current->assignment));
    for (const v1::Assignment& a : pending) held.push_back(IdentityOf(a));
    const bool worker_token = !options.token.empty() && SecretsEqual(bearer, options.token);
    JobIdentity id;
    if (!worker_token) {
      absl::StatusOr<JobIdentity> verified = VerifyJobCredential(credential_key, bearer);
      if (!verified.ok()) return verified.status();
      id = *std::move(verified);
    }
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

  static JobIdentity IdentityOf(const v1::Assignment& a) { return {a.job_id(), a.attempt()}; }

  void Send(v1::WorkerMessage message) {
    absl::MutexLock lock(&mu);
    outbox.push_back(std::move(message));
  }

  // ---- control stream ----

  void ControlLoop() {
    while (!stopping) {
      // Always as a new worker: whatever this node ran under an earlier lease was cancelled when that lease's stream
      // ended, and an old id may name another worker after a coordinator restart (ids restart from w-000001).
      v1::RegisterWorkerRequest request;
      v1::WorkerInfo* info = request.mutable_worker();
      for (v1::Role r : options.roles) info->add_roles(r);
      info->set_device(options.device);
      info->set_device_count(options.device_count);
      info->set_memory_bytes(static_cast<uint64_t>(sysconf(_SC_PHYS_PAGES)) *
                             static_cast<uint64_t>(sysconf(_SC_PAGESIZE)));
      info->set_address(address);
      v1::RegisterWorkerResponse registered;
      {
        grpc::ClientContext context;
        Authorize(&context);
        context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
        grpc::Status s = stub->Register(&context, request, &registered);
        if (!s.ok()) {
          LOG(WARNING) << "worker " << address << ": registering with " << options.coordinator << ": "
                       << s.error_message() << " (retrying)";
          stopped.WaitForNotificationWithTimeout(absl::Seconds(1));
          continue;
        }
      }
      {
        absl::MutexLock lock(&mu);
        worker_id = registered.worker_id();
        credential_key = registered.credential_key();
      }
      LOG(INFO) << "worker " << address << " registered as " << registered.worker_id();
      RunStream(registered.lease_id());
      // The stream ended, so the coordinator ended this lease and restarts whatever gang this node was part of.
      CancelAll();
      if (!stopping) stopped.WaitForNotificationWithTimeout(absl::Milliseconds(200));
    }
  }

  void Authorize(grpc::ClientContext* context) {
    if (!options.token.empty()) context->AddMetadata("authorization", absl::StrCat("Bearer ", options.token));
  }

  void RunStream(const std::string& lease) {
    grpc::ClientContext context;
    Authorize(&context);
    // The control stream lives as long as the worker; its deadline only bounds a stream nobody closes.
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::hours(24 * 30));
    {
      absl::MutexLock lock(&mu);
      stream_context = &context;
    }
    auto stream = stub->Control(&context);
    std::atomic<bool> reader_done{false};
    std::thread reader([&] {
      v1::CoordinatorMessage message;
      while (stream->Read(&message)) {
        if (message.has_assignment()) {
          Enqueue(message.assignment());
        } else if (message.body_case() == v1::CoordinatorMessage::kCancelJobId) {
          Cancel(message.cancel_job_id());
        } else if (message.body_case() == v1::CoordinatorMessage::kStaleLease) {
          break;
        }
      }
      reader_done = true;
      absl::MutexLock lock(&mu);  // wakes the writer
    });
    bool first = true;
    while (!stopping && !reader_done) {
      std::vector<v1::WorkerMessage> batch;
      {
        absl::MutexLock lock(&mu);
        auto has_mail = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) { return !outbox.empty(); };
        if (!first) mu.AwaitWithTimeout(absl::Condition(&has_mail), options.heartbeat);
        while (!outbox.empty()) {
          batch.push_back(std::move(outbox.front()));
          outbox.pop_front();
        }
      }
      first = false;
      if (batch.empty()) {
        v1::WorkerMessage beat;
        beat.mutable_heartbeat()->set_unix_ms(absl::ToUnixMillis(absl::Now()));
        batch.push_back(std::move(beat));
      }
      bool ok = true;
      size_t sent = 0;
      for (auto& m : batch) {
        m.set_lease_id(lease);
        if (!stream->Write(m)) {
          ok = false;
          break;
        }
        ++sent;
      }
      if (!ok) {  // keep what was not sent (a result must not be lost) for the next stream
        absl::MutexLock lock(&mu);
        for (size_t i = batch.size(); i > sent; --i) {
          if (!batch[i - 1].has_heartbeat()) outbox.push_front(std::move(batch[i - 1]));
        }
        break;
      }
    }
    context.TryCancel();
    reader.join();
    stream->Finish();
    absl::MutexLock lock(&mu);
    stream_context = nullptr;
  }

  // ---- assignments ----

  void Enqueue(const v1::Assignment& a) {
    absl::MutexLock lock(&mu);
    LOG(INFO) << "worker " << address << ": assignment " << a.job_id() << " attempt " << a.attempt() << " as "
              << v1::Role_Name(a.role()) << " rank " << a.rank() << "/" << a.world_size();
    pending.push_back(a);
  }

  void Cancel(const std::string& job_id) {
    absl::MutexLock lock(&mu);
    for (auto it = pending.begin(); it != pending.end();) {
      it = it->job_id() == job_id ? pending.erase(it) : it + 1;
    }
    if (current && current->assignment.job_id() == job_id) {
      LOG(INFO) << "worker " << address << ": cancelling " << job_id;
      current->Cancel();
    }
    rendezvous_router.CloseJob(job_id);
  }

  void CancelAll() {
    {
      absl::MutexLock lock(&mu);
      pending.clear();
      if (current) current->Cancel();
    }
    rendezvous_router.CloseJob("");
  }

  void ExecutorLoop() {
    while (true) {
      std::shared_ptr<Task> task;
      {
        absl::MutexLock lock(&mu);
        auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) { return stopping || !pending.empty(); };
        mu.Await(absl::Condition(&ready));
        if (stopping) return;
        task = std::make_shared<Task>();
        task->assignment = pending.front();
        pending.pop_front();
        current = task;
      }
      absl::Status status = Run(*task);
      Finish(*task, status);
      {
        absl::MutexLock lock(&mu);
        current = nullptr;
      }
      ++done;
    }
  }

  void Finish(Task& task, const absl::Status& status) {
    const v1::Assignment& a = task.assignment;
    if (task.cancelled) {  // the coordinator stopped it: nothing to report, but say when this node was free again
      LOG(INFO) << "worker " << address << ": " << a.job_id() << " attempt " << a.attempt() << " ended after its cancel"
                << (status.ok() ? std::string() : absl::StrCat(": ", status.ToString()));
      return;
    }
    if (status.ok()) {
      LOG(INFO) << "worker " << address << ": " << a.job_id() << " done";
      if (a.role() != v1::ROLE_LEARNER || a.rank() != 0) return;  // rank 0 alone reports the job's success
      v1::WorkerMessage m;
      m.mutable_result()->set_job_id(a.job_id());
      m.mutable_result()->set_attempt(a.attempt());
      m.mutable_result()->set_succeeded(true);
      Send(std::move(m));
      return;
    }
    LOG(WARNING) << "worker " << address << ": " << a.job_id() << " failed: " << status;
    const bool retryable = Retryable(status);
    // A lost peer shows up here as a network or collective error a moment before the coordinator sees the peer's
    // stream close; wait a little so that the gang is restarted without the dead member.
    if (retryable && task.stop.WaitForNotificationWithTimeout(options.peer_failure_grace)) return;
    v1::WorkerMessage m;
    m.mutable_result()->set_job_id(a.job_id());
    m.mutable_result()->set_attempt(a.attempt());
    m.mutable_result()->set_succeeded(false);
    m.mutable_result()->set_message(std::string(status.message()));
    m.mutable_result()->set_retryable(retryable);
    Send(std::move(m));
  }

  absl::Status Run(Task& task) {
    const v1::Assignment& a = task.assignment;
    auto validated = ValidateJobSpec(a.spec_yaml(), absl::StrCat("job ", a.job_id()));
    if (!validated.ok()) return validated.status();
    JobSpec spec = validated->spec;
    if (spec.threads <= 0) spec.threads = options.threads > 0 ? options.threads : AvailableCores();
    try {
      switch (a.role()) {
        case v1::ROLE_LEARNER:
          return RunLearner(task, spec);
        case v1::ROLE_ROLLOUT:
          return RunRollout(task, spec);
        case v1::ROLE_REWARD:
          return RunReward(task, spec);
        default:
          return absl::InvalidArgumentError(absl::StrCat("unknown role ", a.role()));
      }
    } catch (const std::exception& e) {
      return TorchErrorStatus(e, absl::StrCat(v1::Role_Name(a.role()), " of job ", a.job_id()));
    }
  }

  absl::Status RunLearner(Task& task, const JobSpec& spec) {
    const v1::Assignment& a = task.assignment;
    const bool leader = a.rank() == 0;
    const bool fresh = a.attempt() <= 1;
    if (fresh && leader) {
      // A job's first attempt starts from scratch: checkpoints left in its folder by an earlier job are not its own.
      std::error_code ec;
      std::filesystem::remove_all(JoinPath(spec.output_dir, "checkpoints"), ec);
    }
    // Learner rank 0's worker hosts the gang's rendezvous store while the job runs here.
    const JobIdentity id = IdentityOf(a);
    std::shared_ptr<void> store_open;
    if (leader && !a.store_address().empty()) {
      rendezvous_router.Open(id);
      store_open.reset(static_cast<void*>(nullptr), [this, id](void*) { rendezvous_router.Close(id); });
    }
    std::unique_ptr<LearnerGroup> group;
    if (a.world_size() > 1) {
      if (a.store_address().empty()) {
        return absl::InvalidArgumentError("the assignment names no rendezvous store for the learners' group");
      }
      LearnerGroup::Options go;
      go.store = Endpoint(a, "learners");
      go.local_host = options.advertise_host;
      go.device = JobDevice(spec);
      go.rank = static_cast<int>(a.rank());
      go.world_size = static_cast<int>(a.world_size());
      if (options.collective_timeout > absl::ZeroDuration()) go.timeout = options.collective_timeout;
      ASSIGN_OR_RETURN(group, LearnerGroup::Create(go));
    }
    RemoteServices remote;
    remote.rollout_addresses.assign(a.rollout_addresses().begin(), a.rollout_addresses().end());
    remote.reward_addresses.assign(a.reward_addresses().begin(), a.reward_addresses().end());
    remote.store_address = a.store_address();
    remote.credential = a.job_credential();
    remote.channel = options.peer_credentials;
    remote.local_host = options.advertise_host;
    remote.device = JobDevice(spec);
    if (options.collective_timeout > absl::ZeroDuration()) remote.join_timeout = options.collective_timeout;
    if (!remote.rollout_addresses.empty() && remote.store_address.empty()) {
      return absl::InvalidArgumentError("the assignment names rollout workers but no rendezvous store");
    }
    TrainOptions o;
    o.resume = !fresh;
    o.group = group.get();
    o.remote = &remote;
    o.cancelled = [&task] { return task.cancelled.load(); };
    const std::string job_id = a.job_id();
    if (leader) {
      auto report = [this, job_id](int64_t step, const Metrics& metrics) {
        v1::WorkerMessage m;
        v1::Progress* p = m.mutable_progress();
        p->set_job_id(job_id);
        p->set_step(static_cast<uint64_t>(step));
        for (const auto& [k, v] : metrics) (*p->mutable_metrics())[k] = v;
        Send(std::move(m));
      };
      o.on_step = [this, job_id, report](int64_t step, const Metrics& metrics) {
        RecordStepMetrics(job_id, metrics);
        report(step, metrics);
      };
      o.on_eval = report;  // eval/... metrics at their step, for the page and `alignctl logs --plot`
      o.on_checkpoint = [this, job_id](int64_t step, const std::string& dir) {
        v1::WorkerMessage m;
        v1::Progress* p = m.mutable_progress();
        p->set_job_id(job_id);
        p->set_step(static_cast<uint64_t>(step));
        p->set_checkpoint_step(static_cast<uint64_t>(step));
        p->set_checkpoint_path(dir);
        Send(std::move(m));
      };
    }
    o.device = JobDevice(spec);
    absl::StatusOr<TrainResult> result = RunTraining(spec, o);
    if (!result.ok()) return result.status();
    return absl::OkStatus();
  }

  // The job's rendezvous store on learner rank 0's worker, as group `group`.
  collective::StoreEndpoint Endpoint(const v1::Assignment& a, const std::string& group) const {
    return {a.store_address(), group, a.job_credential(), options.peer_credentials};
  }

  // The device of a job on this node: the node's own GPU for a cuda job (the coordinator matched the kinds).
  c10::Device JobDevice(const JobSpec& spec) const {
    return spec.device == "cuda" && options.torch_device.is_cuda() ? options.torch_device : c10::Device(c10::kCPU);
  }

  absl::Status RunRollout(Task& task, const JobSpec& spec) {
    const v1::Assignment& a = task.assignment;
    SetComputeThreads(static_cast<int>(spec.threads));
    auto job = std::make_shared<RolloutJob>();
    LoadOptions load;
    load.device = JobDevice(spec);
    ASSIGN_OR_RETURN(LoadedModel loaded, LoadModelDir(spec.model.path, load));
    loaded.model->eval();
    // A PEFT job trains adapters on a frozen base: this worker attaches the same (freshly initialised) adapters, and
    // the learner's weight versions carry only their tensors.
    ASSIGN_OR_RETURN(job->peft, AttachPeft(spec, loaded.model));
    if (job->peft) {
      job->peft->Eval();
      for (auto& [name, t] : job->peft->named_parameters()) job->adapters[kJobAdapter][name] = t;
    }
    rollout::Engine::Options eo;
    eo.model = loaded.model;
    eo.tokenizer = std::shared_ptr<const Tokenizer>(std::move(loaded.tokenizer));
    eo.chat_template = spec.data.chat_template;
    ASSIGN_OR_RETURN(job->engine, rollout::Engine::Create(eo));
    if (!a.store_address().empty()) {
      collective::WeightBroadcastGroup::Options go;
      go.store = Endpoint(a, "weights");
      go.local_host = options.advertise_host;
      go.device = JobDevice(spec);
      go.rank = static_cast<int>(a.rank()) + 1;
      go.world_size = static_cast<int>(a.world_size()) + 1;
      go.timeout = options.collective_timeout > absl::ZeroDuration() ? options.collective_timeout : absl::Minutes(2);
      ASSIGN_OR_RETURN(job->group, collective::WeightBroadcastGroup::Create(go));
      RETURN_IF_ERROR(job->group->Join());
      LOG(INFO) << "worker " << address << ": weights for " << a.job_id() << " arrive over " << job->group->transport()
                << " (rank " << go.rank << " of " << go.world_size << ", " << go.device.str() << ")";
    }
    rollout::RolloutService::Options so;
    so.model_name = spec.model.path;
    so.collective = job->group.get();
    so.adapters = &job->adapters;
    job->service = std::make_unique<rollout::RolloutService>(job->engine.get(), so);
    rollout_router.slot.Set(IdentityOf(a), job);
    LOG(INFO) << "worker " << address << ": serving rollout for " << a.job_id();
    task.stop.WaitForNotification();
    rollout_router.slot.Clear();
    return absl::OkStatus();
  }

  absl::Status RunReward(Task& task, const JobSpec& spec) {
    SetComputeThreads(static_cast<int>(spec.threads));
    // The job's parts, made by the same registry as a learner scoring in-process, so both score alike.
    reward::RewardCore::Options co;
    ASSIGN_OR_RETURN(co.scorers, reward::MakeScorers(spec.rewards, reward::ModelScorerContext(spec.data.chat_template,
                                                                                              JobDevice(spec))));
    co.max_request_items = 4096;
    co.max_queued_requests = 64;
    auto job = std::make_shared<RewardJob>();
    ASSIGN_OR_RETURN(job->core, reward::RewardCore::Create(std::move(co)));
    job->service = std::make_unique<reward::RewardService>(job->core.get());
    reward_router.slot.Set(IdentityOf(task.assignment), job);
    LOG(INFO) << "worker " << address << ": serving rewards for " << task.assignment.job_id();
    task.stop.WaitForNotification();
    reward_router.slot.Clear();
    return absl::OkStatus();
  }
};

WorkerNode::WorkerNode(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

WorkerNode::~WorkerNode() { Stop(); }

absl::StatusOr<std::unique_ptr<WorkerNode>> WorkerNode::Start(NodeOptions options) {
  if (options.roles.empty()) return absl::InvalidArgumentError("roles: at least one is required");
  for (v1::Role r : options.roles) {
    if (r == v1::ROLE_UNSPECIFIED) return absl::InvalidArgumentError("roles: unspecified role");
  }
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  grpc::ServerBuilder builder;
  AddRpcMetrics(builder);
  int port = 0;
  builder.AddListeningPort(options.listen,
                           options.server_credentials ? options.server_credentials : grpc::InsecureServerCredentials(),
                           &port);
  builder.SetMaxReceiveMessageSize(kMaxMessageBytes);
  builder.SetMaxSendMessageSize(kMaxMessageBytes);
  builder.RegisterService(&impl->rollout_router);
  builder.RegisterService(&impl->reward_router);
  builder.RegisterService(&impl->rendezvous_router);
  impl->server = builder.BuildAndStart();
  if (!impl->server || port == 0) {
    return absl::UnavailableError(absl::StrCat("worker: cannot listen on ", options.listen));
  }
  impl->address = absl::StrCat(options.advertise_host, ":", port);
  std::shared_ptr<grpc::ChannelCredentials> creds =
      options.credentials ? options.credentials : grpc::InsecureChannelCredentials();
  impl->stub = v1::WorkerService::NewStub(grpc::CreateChannel(options.coordinator, creds));
  Impl* raw = impl.get();
  impl->control = std::thread([raw] { raw->ControlLoop(); });
  impl->executor = std::thread([raw] { raw->ExecutorLoop(); });
  return std::unique_ptr<WorkerNode>(new WorkerNode(std::move(impl)));
}

void WorkerNode::Stop() {
  if (!impl_ || impl_->stopping.exchange(true)) return;
  impl_->stopped.Notify();
  impl_->CancelAll();
  {
    absl::MutexLock lock(&impl_->mu);
    if (impl_->stream_context) impl_->stream_context->TryCancel();
  }
  if (impl_->control.joinable()) impl_->control.join();
  if (impl_->executor.joinable()) impl_->executor.join();
  impl_->server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
}

const std::string& WorkerNode::address() const { return impl_->address; }

std::string WorkerNode::worker_id() const {
  absl::MutexLock lock(&impl_->mu);
  return impl_->worker_id;
}

int64_t WorkerNode::assignments_done() const { return impl_->done.load(); }

absl::StatusOr<std::vector<v1::Role>> ParseRoles(const std::string& text) {
  std::vector<v1::Role> roles;
  for (absl::string_view r : absl::StrSplit(text, ',', absl::SkipEmpty())) {
    if (r == "learner") {
      roles.push_back(v1::ROLE_LEARNER);
    } else if (r == "rollout") {
      roles.push_back(v1::ROLE_ROLLOUT);
    } else if (r == "reward") {
      roles.push_back(v1::ROLE_REWARD);
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("--roles: unknown role \"", r, "\" (known: learner, rollout, reward)"));
    }
  }
  if (roles.empty()) return absl::InvalidArgumentError("--roles: at least one role is required");
  return roles;
}

}  // namespace alignd::node
