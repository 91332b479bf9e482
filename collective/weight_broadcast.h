// Weight broadcast over a c10d process group (collective/process_group.h): learner rank 0 sends a weight version's
// manifest and flat buckets to every rollout rank; receivers then verify and swap with ApplyWeightUpdate
// (rollout/weight_update.h). Three transports, chosen at Join from what every member reports through the store:
//   - gloo: members on the CPU. Host buckets (PackWeights) over TCP, loopback or a cluster network.
//   - nccl: members on CUDA, on different GPUs. Device buckets (PackWeightsOnDevice) broadcast device to device; host
//     buckets, if that is what the sender has, are staged through the device.
//   - shared: members on CUDA, every one on rank 0's GPU (one GPU, co-located roles). The buckets are not copied at
//     all: receivers map the sender's device buckets, through CUDA IPC handles from another process (as verl and
//     OpenRLHF do) or by taking the tensors themselves within the sender's process (`alignd local`, where CUDA IPC
//     cannot open a process's own handles). Only the manifest and the handles travel, over Gloo on loopback.
//
// Wire order of one version: int64 manifest length, the serialised manifest (uint8), then one uint8 broadcast per
// bucket (shared: an int64 length and the serialised handles, then a sum over all ranks that says every receiver
// mapped them), all rooted at rank 0. The sender queues every bucket at once; the receiver keeps one bucket queued
// ahead of the one arriving and hashes each host bucket as it lands, so neither allocation nor the checksum waits
// on the wire. Shared buckets stay valid while the sender's PackedWeights lives: WeightPublisher keeps it until every
// receiver has answered UpdateWeights, that is, applied the version.
//
// Thread safety: thread-compatible; one Send/Receive at a time per group. After an error the ranks may be out of step
// (a receiver stops at a bad manifest while the sender goes on): make a new group.
#ifndef ALIGND_COLLECTIVE_WEIGHT_BROADCAST_H_
#define ALIGND_COLLECTIVE_WEIGHT_BROADCAST_H_

#include <c10/core/Device.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "collective/store_endpoint.h"
#include "rollout/weight_update.h"

namespace alignd::collective {

class WeightBroadcastGroup : public rollout::WeightSource {
 public:
  struct Options {
    // The job's rendezvous store over gRPC (learner rank 0's worker; group "weights"). Empty address: a TCPStore
    // that rank 0 serves on host:port.
    StoreEndpoint store;
    std::string host = "127.0.0.1";  // where rank 0's TCPStore listens
    uint16_t port = 0;               // rank 0: 0 lets the OS choose (see port()); other ranks: rank 0's port
    int rank = 0;                    // 0 sends; 1..world_size-1 receive
    int world_size = 2;              // >= 2
    absl::Duration timeout = absl::Seconds(60);  // rendezvous and each collective
    c10::Device device = c10::kCPU;              // this member's device; every member's must be of one kind
    std::string local_host;                      // this member's own address for Gloo (empty: as process_group.h says)
    // kAuto: as above. kShared forces sharing (a CPU group in one process takes the sender's tensors; tests use it);
    // Join fails with FAILED_PRECONDITION when a receiver can reach neither the sender's process nor its GPU.
    enum class Transport { kAuto, kShared } transport = Transport::kAuto;
    // Receivers: how many bytes of host buckets Recycle may keep for the next Receive, which lands a bucket in a kept
    // one of the same size (the same model's versions have the same bucket sizes) rather than in freshly faulted
    // pages. Kept memory is one version's buckets at most (whatever the next Receive does not reuse is freed), held
    // between versions. 0: Recycle frees everything.
    uint64_t max_recycled_bytes = uint64_t{16} << 30;
  };

  // Opens the rendezvous store (rank 0 serves it) without waiting for the other ranks. INVALID_ARGUMENT for a bad
  // rank, world size or port; UNAVAILABLE when the store cannot be opened or reached.
  static absl::StatusOr<std::unique_ptr<WeightBroadcastGroup>> Create(Options options);
  ~WeightBroadcastGroup() override;

  // The TCPStore's port (the chosen one when Options::port was 0); 0 over gRPC.
  uint16_t port() const;
  int rank() const { return options_.rank; }  // Options::rank: 0 sends, the others receive

  // Forms the group; blocks until every rank has joined. UNAVAILABLE (with LibTorch's message) on timeout or a
  // network failure. Must precede Send/Receive.
  absl::Status Join();
  // "gloo", "nccl" or "shared" once joined; "" before.
  const std::string& transport() const { return transport_; }

  // Rank 0 only (FAILED_PRECONDITION elsewhere): broadcasts `weights` (host or device buckets; shared needs device
  // buckets, INVALID_ARGUMENT otherwise). UNAVAILABLE when the collective fails; shared: UNAVAILABLE naming the
  // receivers that could not map the buckets.
  absl::Status Send(const rollout::PackedWeights& weights);
  // Ranks >= 1 only (FAILED_PRECONDITION on rank 0): receives one version. INVALID_ARGUMENT / DATA_LOSS when the
  // manifest does not parse or validate; UNAVAILABLE when the collective fails. The buckets are hashed as they
  // arrive (PackedWeights::buckets_checksum) but not compared with the manifest's checksum: ApplyWeightUpdate does it.
  // On nccl and shared the result has device buckets (shared: the sender's own memory, mapped).
  absl::StatusOr<rollout::PackedWeights> Receive() override;
  // Keeps `buckets` (up to Options::max_recycled_bytes) for the next Receive on this rank.
  void Recycle(std::vector<std::string> buckets) override;

 private:
  struct Impl;  // the c10d store and group: keeps c10d/Gloo headers out of this one
  WeightBroadcastGroup(Options options, std::unique_ptr<Impl> impl);
  absl::Status SendShared(
      const rollout::PackedWeights& weights);  // after the manifest: the handles and the acknowledgement
  const Options options_;
  std::unique_ptr<Impl> impl_;
  std::string transport_;
};

}  // namespace alignd::collective

#endif  // ALIGND_COLLECTIVE_WEIGHT_BROADCAST_H_
