// Weight broadcast over a c10d process group (rollout/process_group.h): learner rank 0 sends a weight version's
// manifest and flat buckets to every rollout rank in a few large collectives; receivers then verify and swap with
// ApplyWeightUpdate (rollout/weight_update.h). Gloo over TCP (loopback or a cluster network) on the CPU; NCCL when the
// members are on CUDA, the host buckets staged through the device (the checksum is over the host bytes).
//
// Wire order of one version: int64 manifest length, the serialised manifest (uint8), then one uint8 broadcast per
// bucket, all rooted at rank 0. The sender queues every bucket at once; the receiver keeps one bucket queued ahead
// of the one arriving and hashes each as it lands, so neither allocation nor the checksum waits on the wire.
//
// Thread safety: thread-compatible; one Send/Receive at a time per group. After an error the ranks may be out of step
// (a receiver stops at a bad manifest while the sender goes on): make a new group.
#ifndef ALIGND_ROLLOUT_WEIGHT_BROADCAST_H_
#define ALIGND_ROLLOUT_WEIGHT_BROADCAST_H_

#include <cstdint>
#include <memory>
#include <string>

#include <c10/core/Device.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "rollout/weight_update.h"

namespace alignd::rollout {

class WeightBroadcastGroup : public WeightSource {
 public:
  struct Options {
    std::string host = "127.0.0.1";  // where rank 0's rendezvous store listens
    uint16_t port = 0;               // rank 0: 0 lets the OS choose (see port()); other ranks: rank 0's port
    int rank = 0;                    // 0 sends; 1..world_size-1 receive
    int world_size = 2;              // >= 2
    absl::Duration timeout = absl::Seconds(60);  // rendezvous and each collective
    c10::Device device = c10::kCPU;  // this member's device; every member's must be of one kind (CUDA: NCCL)
  };

  // Opens the rendezvous store (rank 0 serves it) without waiting for the other ranks. INVALID_ARGUMENT for a bad
  // rank, world size or port; UNAVAILABLE when the store cannot be opened or reached.
  static absl::StatusOr<std::unique_ptr<WeightBroadcastGroup>> Create(Options options);
  ~WeightBroadcastGroup() override;

  // The store's port (the chosen one when Options::port was 0).
  uint16_t port() const;
  int rank() const { return options_.rank; }

  // Forms the group; blocks until every rank has joined. UNAVAILABLE (with LibTorch's message) on timeout or a
  // network failure. Must precede Send/Receive.
  absl::Status Join();

  // Rank 0 only (FAILED_PRECONDITION elsewhere): broadcasts `weights`. UNAVAILABLE when the collective fails.
  absl::Status Send(const PackedWeights& weights);
  // Ranks >= 1 only (FAILED_PRECONDITION on rank 0): receives one version. INVALID_ARGUMENT / DATA_LOSS when the
  // manifest does not parse or validate; UNAVAILABLE when the collective fails. The buckets are hashed as they
  // arrive (PackedWeights::buckets_checksum) but not compared with the manifest's checksum: ApplyWeightUpdate does it.
  absl::StatusOr<PackedWeights> Receive() override;

 private:
  struct Impl;  // the c10d store and group: keeps c10d/Gloo headers out of this one
  WeightBroadcastGroup(Options options, std::unique_ptr<Impl> impl);
  const Options options_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace alignd::rollout

#endif  // ALIGND_ROLLOUT_WEIGHT_BROADCAST_H_
