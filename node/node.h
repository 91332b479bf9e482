// A worker process's runtime: `alignd worker` and each worker inside `alignd local`.
//
// The node registers with the coordinator (its roles, device and the address of its own gRPC server), holds its lease
// with heartbeats on the control stream, and runs the assignments that arrive there, one at a time:
//   learner  RunTraining (learner/trainer.h) as rank `rank` of the job's learners, resuming from the job's latest
//            checkpoint; rank 0 reports progress and checkpoints, and the job's success once final/ is written.
//            PPO/GRPO/RLOO: rank 0 generates on the rollout workers and scores on the reward servers
//            (learner/remote.h).
//   rollout  loads the job's model.path into a rollout engine, joins the weight-broadcast group that learner rank 0
//            forms, and serves alignd.v1.Rollout on the node's server until the job ends.
//   reward   serves alignd.v1.Reward with the parts of the job's `rewards` (reward/registry.h), each reported by
//            name, until the job ends.
// Learner rank 0's node also serves the gang's rendezvous store (alignd.v1.Rendezvous) while the job runs, for the
// learners' process group and the weight-broadcast group. The roles: node/learner_runner.h, node/rollout_runner.h,
// node/reward_runner.h.
//
// Who may call the node's server, and how calls reach the job it holds: node/routers.h. With TLS
// (server_credentials), peers verify each other's certificates as the options say. Retries, cancellation and the
// peer-failure grace period: node/assignment_executor.h. Registration, the control stream and heartbeats:
// node/control_channel.h.
//
// Thread safety: Start/Stop/accessors are thread-safe.
#ifndef ALIGND_NODE_NODE_H_
#define ALIGND_NODE_NODE_H_

#include <c10/core/Device.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "proto/alignd.pb.h"

namespace grpc {
class ChannelCredentials;
class ServerCredentials;
}  // namespace grpc

namespace alignd::node {

struct NodeOptions {
  std::string coordinator = "127.0.0.1:7070";  // host:port of the coordinator's WorkerService
  std::string token;                           // bearer token with the worker role; empty: none
  // Channel credentials for the coordinator; null: plaintext.
  std::shared_ptr<grpc::ChannelCredentials> credentials;
  std::vector<v1::Role> roles;  // at least one
  v1::DeviceKind device = v1::DEVICE_KIND_CPU;
  uint32_t device_count = 0;
  // Where this node's jobs put their models and batches: the CPU, or the GPU of a `device: cuda` worker. The
  // coordinator only gives a node jobs of its own device kind.
  c10::Device torch_device = c10::kCPU;
  // The node's own server (Rollout, Reward, Rendezvous). Port 0: the kernel picks a free one, and the node registers
  // the port its server is bound to (no port is probed and closed first).
  std::string listen = "127.0.0.1:0";
  // Its credentials; null: plaintext. With TLS, set peer_credentials to match (the gang's members call each other).
  std::shared_ptr<grpc::ServerCredentials> server_credentials;
  // Channel credentials for calls to other workers' servers; null: plaintext.
  std::shared_ptr<grpc::ChannelCredentials> peer_credentials;
  // The host other workers reach this node at (its registered address is advertise_host:bound port); also the
  // address its Gloo endpoints bind to.
  std::string advertise_host = "127.0.0.1";
  absl::Duration heartbeat = absl::Milliseconds(500);  // > 0
  // Intra-op threads for jobs whose spec leaves `threads` at 0; 0 = the cores available.
  int threads = 0;
  // Grace period before reporting a failure that may come from a lost peer.
  absl::Duration peer_failure_grace = absl::Seconds(2);
  // Bound on the rendezvous and on each collective of a job's groups (the learners' group, the weight broadcast, on
  // both sides). A cancel does not interrupt a collective, so this is how long a member whose peer vanished from
  // the network (no connection reset) stays in the old gang before taking its next assignment. Zero: the groups'
  // own defaults (10 minutes for the learners, 2 minutes for the weight broadcast).
  absl::Duration collective_timeout = absl::ZeroDuration();
};

// How long a node whose lease lapsed waits for its cancelled assignment to return before it registers again. A cancel
// ends the runner's calls at once; what it cannot interrupt (a collective in flight) ends within the collective
// timeout. The bound is 2 minutes (the weight broadcast's default; the learners' group waits up to 10 by default, and
// the node does not wait that long), or a longer `collective_timeout` and half a minute for the runner to return.
absl::Duration LeaseLostDrainBound(absl::Duration collective_timeout);

class WorkerNode {
 public:
  // Starts the node's server and its control loop (which registers, retrying until the coordinator answers).
  // INVALID_ARGUMENT for no roles or an unspecified role, a heartbeat <= 0 or a negative peer_failure_grace;
  // UNAVAILABLE when `listen` cannot be bound.
  static absl::StatusOr<std::unique_ptr<WorkerNode>> Start(NodeOptions options);
  // Stops (see Stop).
  ~WorkerNode();
  WorkerNode(const WorkerNode&) = delete;
  WorkerNode& operator=(const WorkerNode&) = delete;

  // Cancels the running assignment, closes the control stream and the server, and joins every thread.
  // Idempotent.
  void Stop();

  // host:port other workers call this node at.
  const std::string& address() const;
  // The id the coordinator gave this node ("" until registered).
  std::string worker_id() const;
  // Assignments finished (successfully or not) since Start; for tests and logs.
  int64_t assignments_done() const;

 private:
  struct Impl;
  explicit WorkerNode(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// "learner,rollout" -> roles; INVALID_ARGUMENT naming the unknown role.
absl::StatusOr<std::vector<v1::Role>> ParseRoles(const std::string& text);

}  // namespace alignd::node

#endif  // ALIGND_NODE_NODE_H_
