#include "node/learner_runner.h"

#include <filesystem>
#include <optional>
#include <string>
#include <utility>

#include "absl/cleanup/cleanup.h"
#include "collective/learner_group.h"
#include "common/base/file_util.h"
#include "common/base/status.h"
#include "common/metrics/prometheus.h"
#include "learner/remote.h"
#include "learner/trainer.h"

namespace alignd::node {
namespace {

// A learner step in Prometheus terms (common/metrics/prometheus.h): steps, tokens and weight syncs as counters and
// histograms, and the last step's rates as gauges, labelled with the job.
void RecordStepMetrics(const std::string& job_id, const learner::Metrics& m) {
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

}  // namespace

LearnerRunner::LearnerRunner(RoleContext context, RendezvousRouter* rendezvous,
                             std::function<void(v1::WorkerMessage)> send)
    : context_(std::move(context)), rendezvous_(rendezvous), send_(std::move(send)) {}

absl::Status LearnerRunner::Run(const v1::Assignment& a, const CancelSignal& cancel) {
  return RunRole(context_, a, [&](const JobSpec& spec) -> absl::Status {
    const bool leader = a.rank() == 0;
    const bool fresh = a.attempt() <= 1;
    if (fresh && leader) {
      // A job's first attempt starts from scratch: checkpoints left in its folder by an earlier job are not its own.
      std::error_code ec;
      std::filesystem::remove_all(JoinPath(spec.output_dir, "checkpoints"), ec);
    }
    // Learner rank 0's worker hosts the gang's rendezvous store while the job runs here.
    const JobIdentity id = IdentityOf(a);
    const bool host_store = leader && !a.store_address().empty();
    if (host_store) rendezvous_->Open(id);
    absl::Cleanup close_store = [&] {
      if (host_store) rendezvous_->Close(id);
    };
    const c10::Device device = JobDevice(context_, spec);
    std::unique_ptr<collective::LearnerGroup> group;
    if (a.world_size() > 1) {
      if (a.store_address().empty()) {
        return absl::InvalidArgumentError("the assignment names no rendezvous store for the learners' group");
      }
      collective::LearnerGroup::Options go;
      go.store = Endpoint(context_, a, "learners");
      go.local_host = context_.advertise_host;
      go.device = device;
      go.rank = static_cast<int>(a.rank());
      go.world_size = static_cast<int>(a.world_size());
      if (context_.collective_timeout > absl::ZeroDuration()) go.timeout = context_.collective_timeout;
      ASSIGN_OR_RETURN(group, collective::LearnerGroup::Create(go));
    }
    learner::RemoteServices remote;
    remote.rollout_addresses.assign(a.rollout_addresses().begin(), a.rollout_addresses().end());
    remote.reward_addresses.assign(a.reward_addresses().begin(), a.reward_addresses().end());
    remote.store_address = a.store_address();
    remote.credential = a.job_credential();
    remote.channel = context_.peer_credentials;
    remote.local_host = context_.advertise_host;
    remote.device = device;
    if (context_.collective_timeout > absl::ZeroDuration()) remote.join_timeout = context_.collective_timeout;
    remote.cancel = &cancel;  // a cancelled job's calls end now, not at their deadline (a peer may be unreachable)
    if (!remote.rollout_addresses.empty() && remote.store_address.empty()) {
      return absl::InvalidArgumentError("the assignment names rollout workers but no rendezvous store");
    }
    learner::TrainOptions o;
    o.resume = !fresh;
    o.group = group.get();
    o.remote = &remote;
    o.cancelled = [&cancel] { return cancel.cancelled(); };
    const std::string job_id = a.job_id();
    if (leader) {
      auto report = [this, job_id](int64_t step, const learner::Metrics& metrics) {
        v1::WorkerMessage m;
        v1::Progress* p = m.mutable_progress();
        p->set_job_id(job_id);
        p->set_step(static_cast<uint64_t>(step));
        for (const auto& [k, v] : metrics) (*p->mutable_metrics())[k] = v;
        send_(std::move(m));
      };
      o.on_step = [job_id, report](int64_t step, const learner::Metrics& metrics) {
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
        send_(std::move(m));
      };
    }
    o.device = device;
    absl::StatusOr<learner::TrainResult> result = learner::RunTraining(spec, o);
    return result.status();
  });
}

}  // namespace alignd::node
