#include "node/reward_runner.h"

#include <memory>
#include <utility>

#include "common/base/logging.h"  // last: LOG is glog's
#include "common/base/status.h"
#include "common/model/compute_threads.h"
#include "node/assignment_executor.h"
#include "reward/model_scorer.h"
#include "reward/registry.h"
#include "reward/reward_core.h"
#include "reward/reward_service.h"

namespace alignd::node {
namespace {

// Members in construction order; destroyed in reverse (the service before the core it refers to).
struct RewardJob {
  std::unique_ptr<reward::RewardCore> core;
  std::unique_ptr<reward::RewardService> service;
};

}  // namespace

RewardRunner::RewardRunner(RoleContext context, RewardRouter* router) : context_(std::move(context)), router_(router) {}

absl::Status RewardRunner::Run(const v1::Assignment& a, const CancelSignal& cancel) {
  return RunRole(context_, a, [&](const JobSpec& spec) -> absl::Status {
    ScopedComputeThreads scope(static_cast<int>(spec.threads));
    reward::RewardCore::Options co;
    ASSIGN_OR_RETURN(co.scorers,
                     reward::MakeScorers(
                         spec.rewards, reward::ModelScorerContext(spec.data.chat_template, JobDevice(context_, spec))));
    co.max_request_items = 4096;
    co.max_queued_requests = 64;
    auto job = std::make_shared<RewardJob>();
    ASSIGN_OR_RETURN(job->core, reward::RewardCore::Create(std::move(co)));
    job->service = std::make_unique<reward::RewardService>(job->core.get());
    router_->slot().Set(IdentityOf(a), std::shared_ptr<v1::Reward::Service>(job, job->service.get()));
    LOG(INFO) << "worker " << context_.name << ": serving rewards for " << a.job_id();
    cancel.Wait();
    router_->slot().Clear();
    return absl::OkStatus();
  });
}

}  // namespace alignd::node
