// A group of data-parallel learners: every rank runs the same training loop on its own shard of each step's batch,
// and the ranks average their gradients (and step metrics) over a c10d process group (Gloo on TCP; NCCL on CUDA),
// whose rendezvous store rank 0 hosts. A group of one is valid and makes every collective a no-op, so the trainer needs
// no second path.
//
// Every collective must be called by every rank in the same order with matching arguments (the same parameter list,
// the same number of values); a rank that skips one leaves the others waiting until Options::timeout.
//
// Thread safety: thread-compatible; one call at a time per group. After an error the ranks may be out of step: make a
// new group. Ranks may be threads of one process (each with its own group), as the tests do.
#ifndef ALIGND_COLLECTIVE_LEARNER_GROUP_H_
#define ALIGND_COLLECTIVE_LEARNER_GROUP_H_

#include <torch/types.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "collective/store_endpoint.h"

namespace alignd::collective {

class LearnerGroup {
 public:
  struct Options {
    // The job's rendezvous store over gRPC (learner rank 0's worker; group "learners"). Empty address: a TCPStore
    // that rank 0 serves on host:port.
    collective::StoreEndpoint store;
    // Rank 0's TCPStore host.
    std::string host = "127.0.0.1";
    uint16_t port = 0;   // rank 0: listens on exactly this port (0: the OS picks, see port()); others: rank 0's
    int rank = 0;        // in [0, world_size)
    int world_size = 1;  // >= 1; 1 = a group of one (no store, every op is a no-op)
    // This rank's own address, which Gloo binds to. Empty: loopback when the store's host is a loopback address, the
    // machine's hostname otherwise (Gloo's default device).
    std::string local_host;
    absl::Duration timeout = absl::Minutes(10);  // rendezvous and each collective
    // Rank 0 only, optional: called with the store's port once it listens and before Create waits for the other ranks,
    // so that a rank 0 started with port 0 can tell the others where to connect.
    std::function<void(uint16_t port)> on_listening;
    // This rank's device: CUDA forms an NCCL group bound to it (every rank must be on CUDA), the CPU a Gloo group.
    c10::Device device = c10::kCPU;
  };

  // Opens the store (rank 0 serves it) and joins the group, blocking until every rank has joined. INVALID_ARGUMENT
  // for a bad rank or world size, or a rank other than 0 without a port; UNAVAILABLE (with LibTorch's message) when
  // the store cannot be opened or reached, or the rendezvous times out.
  static absl::StatusOr<std::unique_ptr<LearnerGroup>> Create(Options options);
  // Releases this rank's process group and store (on rank 0, the TCPStore it served).
  ~LearnerGroup();

  // From Options.
  int rank() const { return options_.rank; }
  int world_size() const { return options_.world_size; }
  // The TCPStore's port (the chosen one when Options::port was 0); Options::port in a group of one; 0 over gRPC.
  uint16_t port() const;

  // Replaces each tensor's .grad() by its mean over the ranks, reduced in flat buckets of about 25 MB per dtype (as
  // DDP does). Every rank must pass the same list. A tensor that has no grad on any rank is skipped; one that has a
  // grad on some ranks only gets one (zeros) on the others first, so the ranks never disagree about the buckets.
  // UNAVAILABLE when a collective fails.
  absl::Status AllReduceMeanGradients(const std::vector<torch::Tensor>& params);
  // Element-wise mean over the ranks, in place (in double precision). Every rank must pass as many values.
  absl::Status AllReduceMean(std::vector<double>* values);
  // `*bytes` on `root` is sent to every rank (its length first, then the data); on the other ranks it is replaced.
  // INVALID_ARGUMENT for a bad root; UNAVAILABLE when a collective fails.
  absl::Status BroadcastBytes(std::string* bytes, int root = 0);
  // Returns once every rank has reached it. UNAVAILABLE on timeout.
  absl::Status Barrier();

 private:
  struct Impl;  // the c10d store and group: keeps c10d/Gloo headers out of this one
  LearnerGroup(Options options, std::unique_ptr<Impl> impl);
  const Options options_;
  std::unique_ptr<Impl> impl_;  // null in a group of one
};

}  // namespace alignd::collective

#endif  // ALIGND_COLLECTIVE_LEARNER_GROUP_H_
