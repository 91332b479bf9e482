#include "node/rollout_runner.h"

#include <memory>
#include <utility>

#include "collective/weight_broadcast.h"
#include "common/base/logging.h"  // last: LOG is glog's
#include "common/base/status.h"
#include "common/model/compute_threads.h"
#include "common/model/hf_model.h"
#include "learner/peft_glue.h"
#include "learner/remote.h"
#include "node/assignment_executor.h"
#include "rollout/engine.h"
#include "rollout/service.h"
#include "rollout/weight_update.h"

namespace alignd::node {
namespace {

// The job's service with its thread count set on the gRPC thread of each call (generation runs there).
class ThreadScopedRollout final : public v1::Rollout::Service {
 public:
  ThreadScopedRollout(v1::Rollout::Service* inner, int threads) : inner_(inner), threads_(threads) {}
  grpc::Status Generate(grpc::ServerContext* c, const v1::GenerateRequest* q, v1::GenerateResponse* r) override {
    ScopedComputeThreads scope(threads_);
    return inner_->Generate(c, q, r);
  }
  grpc::Status GenerateStream(grpc::ServerContext* c, const v1::GenerateRequest* q,
                              grpc::ServerWriter<v1::GenerateResponse>* w) override {
    ScopedComputeThreads scope(threads_);
    return inner_->GenerateStream(c, q, w);
  }
  grpc::Status UpdateWeights(grpc::ServerContext* c, const v1::UpdateWeightsRequest* q,
                             v1::UpdateWeightsResponse* r) override {
    ScopedComputeThreads scope(threads_);
    return inner_->UpdateWeights(c, q, r);
  }
  grpc::Status UpdateWeightsStream(grpc::ServerContext* c, grpc::ServerReader<v1::WeightChunk>* q,
                                   v1::UpdateWeightsResponse* r) override {
    ScopedComputeThreads scope(threads_);
    return inner_->UpdateWeightsStream(c, q, r);
  }
  grpc::Status GetInfo(grpc::ServerContext* c, const v1::GetInfoRequest* q, v1::RolloutInfo* r) override {
    return inner_->GetInfo(c, q, r);
  }

 private:
  v1::Rollout::Service* const inner_;
  const int threads_;
};

// Members in construction order; destroyed in reverse (the service before what it refers to).
struct RolloutJob {
  std::unique_ptr<learner::PeftGlue> peft;  // the job's adapters on the engine's model (PEFT jobs)
  rollout::AdapterTargets adapters;         // their tensors, which weight updates replace
  std::unique_ptr<rollout::Engine> engine;
  std::unique_ptr<collective::WeightBroadcastGroup> group;
  std::unique_ptr<rollout::RolloutService> service;
  std::unique_ptr<ThreadScopedRollout> scoped;
};

}  // namespace

RolloutRunner::RolloutRunner(RoleContext context, RolloutRouter* router)
    : context_(std::move(context)), router_(router) {}

absl::Status RolloutRunner::Run(const v1::Assignment& a, const CancelSignal& cancel) {
  return RunRole(context_, a, [&](const JobSpec& spec) -> absl::Status {
    const int threads = static_cast<int>(spec.threads);
    ScopedComputeThreads scope(threads);
    const c10::Device device = JobDevice(context_, spec);
    auto job = std::make_shared<RolloutJob>();
    LoadOptions load;
    load.device = device;
    ASSIGN_OR_RETURN(LoadedModel loaded, LoadModelDir(spec.model.path, load));
    loaded.model->eval();
    // A PEFT job trains adapters on a frozen base: this worker attaches the same (freshly initialised) adapters, and
    // the learner's weight versions carry only their tensors.
    ASSIGN_OR_RETURN(job->peft, learner::AttachPeft(spec, loaded.model));
    if (job->peft) {
      job->peft->Eval();
      for (auto& [name, t] : job->peft->named_parameters()) job->adapters[learner::kJobAdapter][name] = t;
    }
    rollout::Engine::Options eo;
    eo.model = loaded.model;
    eo.tokenizer = std::shared_ptr<const Tokenizer>(std::move(loaded.tokenizer));
    eo.chat_template = spec.data.chat_template;
    ASSIGN_OR_RETURN(job->engine, rollout::Engine::Create(eo));
    if (!a.store_address().empty()) {
      collective::WeightBroadcastGroup::Options go;
      go.store = Endpoint(context_, a, "weights");
      go.local_host = context_.advertise_host;
      go.device = device;
      go.rank = static_cast<int>(a.rank()) + 1;
      go.world_size = static_cast<int>(a.world_size()) + 1;
      go.timeout = context_.collective_timeout > absl::ZeroDuration() ? context_.collective_timeout : absl::Minutes(2);
      ASSIGN_OR_RETURN(job->group, collective::WeightBroadcastGroup::Create(go));
      RETURN_IF_ERROR(job->group->Join());
      LOG(INFO) << "worker " << context_.name << ": weights for " << a.job_id() << " arrive over "
                << job->group->transport() << " (rank " << go.rank << " of " << go.world_size << ", " << go.device.str()
                << ")";
    }
    rollout::RolloutService::Options so;
    so.model_name = spec.model.path;
    so.collective = job->group.get();
    so.adapters = &job->adapters;
    job->service = std::make_unique<rollout::RolloutService>(job->engine.get(), so);
    job->scoped = std::make_unique<ThreadScopedRollout>(job->service.get(), threads);
    router_->slot().Set(IdentityOf(a), std::shared_ptr<v1::Rollout::Service>(job, job->scoped.get()));
    LOG(INFO) << "worker " << context_.name << ": serving rollout for " << a.job_id();
    cancel.Wait();
    router_->slot().Clear();
    return absl::OkStatus();
  });
}

}  // namespace alignd::node
