#include "node/node.h"

#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <map>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/base/logging.h"  // LOG is glog's
#include "common/base/status.h"
#include "common/metrics/rpc_metrics.h"
#include "node/assignment_executor.h"
#include "node/clock.h"
#include "node/control_channel.h"
#include "node/learner_runner.h"
#include "node/reward_runner.h"
#include "node/rollout_runner.h"
#include "node/routers.h"

namespace alignd::node {
namespace {

constexpr int kMaxMessageBytes = 256 << 20;

}  // namespace

absl::Duration LeaseLostDrainBound(absl::Duration collective_timeout) {
  return std::max(absl::Minutes(2), collective_timeout + absl::Seconds(30));
}

// Members in construction order, destroyed in reverse: the control channel and the executor (whose threads call
// into the routers) before the server, the server before the routers it dispatches to.
struct WorkerNode::Impl {
  explicit Impl(const NodeOptions& o)
      : options(o),
        admission(o.token,
                  [this] {
                    AssignmentExecutor* e = held_by.load();
                    return e ? e->Held() : std::vector<JobIdentity>();
                  }),
        rollout_router(&admission),
        reward_router(&admission),
        rendezvous_router(&admission) {}

  NodeOptions options;
  std::string address;
  std::shared_ptr<Clock> clock = std::make_shared<RealClock>();
  Admission admission;
  RolloutRouter rollout_router;
  RewardRouter reward_router;
  RendezvousRouter rendezvous_router;
  std::unique_ptr<grpc::Server> server;
  std::unique_ptr<AssignmentExecutor> executor;
  // The executor once made: the server (up before it) admits calls against it; until then, no job is held.
  std::atomic<AssignmentExecutor*> held_by{nullptr};
  std::unique_ptr<ControlChannel> control;
  std::atomic<bool> stopped{false};
};

WorkerNode::WorkerNode(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

WorkerNode::~WorkerNode() { Stop(); }

absl::StatusOr<std::unique_ptr<WorkerNode>> WorkerNode::Start(NodeOptions options) {
  if (options.roles.empty()) return absl::InvalidArgumentError("roles: at least one is required");
  for (v1::Role r : options.roles) {
    if (r == v1::ROLE_UNSPECIFIED) return absl::InvalidArgumentError("roles: unspecified role");
  }
  auto impl = std::make_unique<Impl>(options);
  Impl* raw = impl.get();
  // Port 0 is bound here, by gRPC, and the port the kernel chose is the one registered: nothing probes a port and
  // frees it for another process to take first.
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
  ControlChannel::Options co;
  co.name = impl->address;
  co.heartbeat = options.heartbeat;
  v1::WorkerInfo& info = co.worker;
  for (v1::Role r : options.roles) info.add_roles(r);
  info.set_device(options.device);
  info.set_device_count(options.device_count);
  info.set_memory_bytes(static_cast<uint64_t>(sysconf(_SC_PHYS_PAGES)) * static_cast<uint64_t>(sysconf(_SC_PAGESIZE)));
  info.set_address(impl->address);
  ControlChannel::Callbacks callbacks;
  callbacks.on_registered = [raw](const std::string&, const std::string& key) { raw->admission.SetCredentialKey(key); };
  callbacks.on_assignment = [raw](const v1::Assignment& a) { raw->executor->Enqueue(a); };
  callbacks.on_cancel = [raw](const std::string& job_id) {
    raw->executor->Cancel(job_id);
    raw->rendezvous_router.CloseJob(job_id);
  };
  // The stream ended, so the coordinator ended this lease and restarts whatever gang this node was part of. The node
  // registers again only once its cancelled assignment has returned: registered while still busy with it, it could be
  // given a place in a new gang that would wait for it.
  callbacks.on_lease_lost = [raw] {
    raw->executor->CancelAll();
    raw->rendezvous_router.CloseJob("");
    const absl::Duration bound = LeaseLostDrainBound(raw->options.collective_timeout);
    if (!raw->executor->AwaitIdle(raw->clock->Now() + bound)) {
      LOG(WARNING) << "worker " << raw->address << ": a cancelled assignment has not returned within " << bound
                   << "; registering again all the same";
    }
  };
  ASSIGN_OR_RETURN(
      impl->control,
      ControlChannel::Create(NewGrpcControlStub(grpc::CreateChannel(options.coordinator, creds), options.token),
                             impl->clock, std::move(co), std::move(callbacks)));

  RoleContext context;
  context.name = impl->address;
  context.advertise_host = options.advertise_host;
  context.torch_device = options.torch_device;
  context.peer_credentials = options.peer_credentials;
  context.collective_timeout = options.collective_timeout;
  context.threads = options.threads;
  auto send = [raw](v1::WorkerMessage m) { raw->control->Send(std::move(m)); };
  AssignmentExecutor::Runners runners;
  runners[v1::ROLE_LEARNER] = std::make_unique<LearnerRunner>(context, &impl->rendezvous_router, send);
  runners[v1::ROLE_ROLLOUT] = std::make_unique<RolloutRunner>(context, &impl->rollout_router);
  runners[v1::ROLE_REWARD] = std::make_unique<RewardRunner>(context, &impl->reward_router);
  AssignmentExecutor::Options eo;
  eo.name = impl->address;
  eo.peer_failure_grace = options.peer_failure_grace;
  auto report = [raw](const v1::JobResult& result) {
    v1::WorkerMessage m;
    *m.mutable_result() = result;
    raw->control->Send(std::move(m));
  };
  ASSIGN_OR_RETURN(impl->executor, AssignmentExecutor::Create(std::move(runners), impl->clock, eo, report));
  impl->held_by = impl->executor.get();

  impl->executor->Start();
  impl->control->Start();
  return std::unique_ptr<WorkerNode>(new WorkerNode(std::move(impl)));
}

void WorkerNode::Stop() {
  if (!impl_ || impl_->stopped.exchange(true)) return;
  impl_->executor->CancelAll();
  impl_->rendezvous_router.CloseJob("");
  impl_->control->Stop();
  impl_->executor->Stop();
  impl_->server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
}

const std::string& WorkerNode::address() const { return impl_->address; }

std::string WorkerNode::worker_id() const { return impl_->control->worker_id(); }

int64_t WorkerNode::assignments_done() const { return impl_->executor->done(); }

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
