// What every role's runner takes from the node (node/learner_runner.h, node/rollout_runner.h,
// node/reward_runner.h), and the steps they share: the assignment's spec, the job's device, the store endpoint.
#ifndef ALIGND_NODE_ROLE_CONTEXT_H_
#define ALIGND_NODE_ROLE_CONTEXT_H_

#include <c10/core/Device.h>

#include <functional>
#include <memory>
#include <string>

#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "collective/store_endpoint.h"
#include "proto/alignd.pb.h"
#include "spec/job_spec.h"

namespace grpc {
class ChannelCredentials;
}  // namespace grpc

namespace alignd::node {

struct RoleContext {
  std::string name;                          // for logs: the node's address
  std::string advertise_host = "127.0.0.1";  // where the job's Gloo endpoints bind
  c10::Device torch_device = c10::kCPU;      // the node's GPU, or the CPU
  // Channel credentials for calls to other workers' servers; null: plaintext.
  std::shared_ptr<grpc::ChannelCredentials> peer_credentials;
  // Bound on the rendezvous and each collective of the job's groups; zero: the groups' own defaults.
  absl::Duration collective_timeout = absl::ZeroDuration();
  int threads = 0;  // intra-op threads for a spec whose `threads` is 0; 0 = the cores available
};

// The device of a job on this node: the node's own GPU for a cuda job (the coordinator matched the kinds).
c10::Device JobDevice(const RoleContext& context, const JobSpec& spec);

// The job's rendezvous store on learner rank 0's worker, as group `group`.
collective::StoreEndpoint Endpoint(const RoleContext& context, const v1::Assignment& assignment,
                                   const std::string& group);

// Validates the assignment's spec (INVALID_ARGUMENT naming the job), fills in its thread count, and runs `role` on
// it, turning an exception (LibTorch's c10::Error among them) into a Status.
absl::Status RunRole(const RoleContext& context, const v1::Assignment& assignment,
                     absl::FunctionRef<absl::Status(const JobSpec&)> role);

}  // namespace alignd::node

#endif  // ALIGND_NODE_ROLE_CONTEXT_H_
