// Forming a c10d process group over a rendezvous store: the job's store on learner rank 0's worker, over gRPC with the
// job's credential (collective/grpc_store.h), or a c10d TCPStore that rank 0 hosts. The one mechanism behind the
// learners' group (collective/learner_group.h) and the weight-broadcast group (collective/weight_broadcast.h). The
// backend follows the members' device: NCCL when they are on CUDA (every member of a job is: the coordinator places a
// cuda job on cuda workers only), Gloo on the CPU. Internal: it exposes c10d types, so only those two .cc files include
// it. Nothing here throws.
#ifndef ALIGND_COLLECTIVE_PROCESS_GROUP_H_
#define ALIGND_COLLECTIVE_PROCESS_GROUP_H_

#include <chrono>
#include <cstdint>
#include <string>
#include <torch/csrc/distributed/c10d/Backend.hpp>
#include <torch/csrc/distributed/c10d/Store.hpp>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "collective/store_endpoint.h"

namespace alignd::collective {

struct GroupOptions {
  // The job's store over gRPC; when its address is empty, a TCPStore on rank 0 at host:port.
  StoreEndpoint store;
  std::string host = "127.0.0.1";  // rank 0's TCPStore host
  uint16_t port = 0;               // rank 0: 0 = any free port; other ranks: rank 0's port
  // This member's own address, which Gloo binds to; empty: loopback when the store's host is a loopback address, the
  // machine's hostname otherwise (Gloo's default device).
  std::string local_host;
  int rank = 0;
  int world_size = 1;
  absl::Duration timeout = absl::Minutes(10);  // rendezvous and each collective
  c10::Device device = c10::kCPU;  // this member's device: a CUDA device selects NCCL (bound to it), the CPU Gloo
};

// The GroupOptions of a group's own Options (LearnerGroup::Options, WeightBroadcastGroup::Options), which carry the
// same fields under the same names.
template <typename GroupSpecificOptions>
GroupOptions ToGroupOptions(const GroupSpecificOptions& o) {
  GroupOptions g;
  g.store = o.store;
  g.local_host = o.local_host;
  g.host = o.host;
  g.port = o.port;
  g.rank = o.rank;
  g.world_size = o.world_size;
  g.timeout = o.timeout;
  g.device = o.device;
  return g;
}

// `d` in whole milliseconds (truncated), as c10d's options take it.
inline std::chrono::milliseconds Millis(absl::Duration d) {
  return std::chrono::milliseconds(absl::ToInt64Milliseconds(d));
}

// "nccl" or "gloo": the backend JoinGroup forms for `options`.
const char* BackendName(const GroupOptions& options);

// Checks rank, world size (>= `min_world`) and port (a TCPStore's other ranks need rank 0's), then opens the store:
// the gRPC one (nothing is contacted until the first operation), or the TCPStore, which rank 0 serves without waiting
// for the others. INVALID_ARGUMENT / UNAVAILABLE, messages prefixed with `who`.
absl::StatusOr<c10::intrusive_ptr<c10d::Store>> OpenStore(const GroupOptions& options, int min_world,
                                                          absl::string_view who);
// The port a TCPStore listens on; 0 for any other store.
uint16_t StorePort(const c10::intrusive_ptr<c10d::Store>& store);

// Forms the group over `store` (blocks until every rank is there). Gloo binds to options.local_host (see there).
// NCCL: the communicator is bound to options.device and connected at once. UNAVAILABLE with LibTorch's message,
// prefixed with `who`; FAILED_PRECONDITION for a CUDA device in a build without NCCL.
absl::StatusOr<c10::intrusive_ptr<c10d::Backend>> JoinGroup(const c10::intrusive_ptr<c10d::Store>& store,
                                                            const GroupOptions& options, absl::string_view who);

// Collectives on host memory (flags, metrics, serialised bytes). NCCL moves device memory only, so on a CUDA group
// the tensor is staged through the device: Start copies it there, Finish (after the work completed) copies the result
// back into the host tensor. On a CPU group both are no-ops around the host tensor itself.
class HostStaging {
 public:
  // Shares `host` (the result lands in its storage); on a CUDA `device`, copies it there. Unlike the functions above,
  // the constructor and Finish throw c10::Error when a copy fails: call them inside the caller's try.
  HostStaging(at::Tensor host, c10::Device device);
  std::vector<at::Tensor>& tensors() { return tensors_; }  // what the collective reads and writes
  // Copies the device result back into the host tensor (nothing on a CPU group). Call once the work has completed.
  void Finish();

 private:
  at::Tensor host_;
  std::vector<at::Tensor> tensors_;
};

}  // namespace alignd::collective

#endif  // ALIGND_COLLECTIVE_PROCESS_GROUP_H_
