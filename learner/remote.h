// The learner's side of a distributed PPO/GRPO/RLOO job: learner rank 0 generates on the job's rollout workers
// (alignd.v1.Rollout), scores on its reward servers (alignd.v1.Reward), and publishes new weights to the rollout
// workers: one UpdateWeights announcement per worker carrying the manifest, then the tensors as a few flat buckets
// over a c10d broadcast group (learner rank 0 = rank 0, rollout worker r = rank r + 1; collective/weight_broadcast.h).
//
// Every call has a deadline (RemoteServices::rpc_timeout) and ends at once, CANCELLED, when the job's cancel fires
// (RemoteServices::cancel): a peer cut off the network would otherwise hold a cancelled learner until the deadline.
// Errors keep the remote status code and name the worker, except that a peer refusing this job's credential
// (PERMISSION_DENIED, UNAUTHENTICATED) after the arrival window is UNAVAILABLE: the gang has changed, which a restart
// mends.
// Thread safety: thread-compatible; one call at a time per object (requests to several workers run in parallel
// inside a call).
#ifndef ALIGND_LEARNER_REMOTE_H_
#define ALIGND_LEARNER_REMOTE_H_

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "common/base/cancel.h"
#include "reward/scorer.h"
#include "rollout/engine.h"

namespace grpc {
class ChannelCredentials;
}  // namespace grpc

namespace alignd::v1 {
class Rollout;
}  // namespace alignd::v1

namespace alignd::learner {

// The name under which a job's own PEFT adapter travels to, and is held by, its rollout workers.
inline constexpr char kJobAdapter[] = "job";

// Where the rest of a job's gang is, as the coordinator's assignment names it.
struct RemoteServices {
  std::vector<std::string> rollout_addresses;  // host:port, by rollout rank
  std::vector<std::string> reward_addresses;   // host:port, by reward rank
  // host:port of the job's rendezvous store over gRPC (learner rank 0's worker); the broadcast group forms over it
  // (group "weights").
  std::string store_address;
  // The job's credential, shown on every call to the gang's servers ("authorization: Bearer ..."); empty: none.
  std::string credential;
  std::shared_ptr<grpc::ChannelCredentials> channel;  // for the gang's servers; null: plaintext
  std::string local_host;                             // this worker's own address, for Gloo (see process_group.h)
  absl::Duration rpc_timeout = absl::Minutes(5);      // deadline of each Generate / Score / UpdateWeights call
  // How long a rollout or reward server that has not answered yet may refuse as not (yet) assigned to this job
  // (UNAVAILABLE, PERMISSION_DENIED): its assignment may reach it a moment after this learner's. Retried until then.
  absl::Duration arrival_window = absl::Seconds(30);
  absl::Duration join_timeout = absl::Minutes(2);  // forming the broadcast group, and each of its collectives
  c10::Device device = c10::kCPU;                  // the learner's device: CUDA makes the broadcast group NCCL
  // The job's cancel (null: none; it must outlive the objects made from these services): when it fires, the calls in
  // flight end CANCELLED and no retry starts. The broadcast's collectives stay bounded by join_timeout only.
  const CancelSignal* cancel = nullptr;
};

// Generates on the rollout workers: the prompts are split into contiguous chunks, one per worker, sent as token ids
// in parallel, each with params.seed and its first prompt's index (SamplingParams::first_prompt_index), so that every
// row draws what it would draw on one worker, or in-process. Samples come back ordered by (prompt, sample) with
// prompt_index into `prompts`.
class RemoteGenerator {
 public:
  // INVALID_ARGUMENT when there is no rollout address.
  static absl::StatusOr<std::unique_ptr<RemoteGenerator>> Create(const RemoteServices& services);
  ~RemoteGenerator();

  // INVALID_ARGUMENT for no prompts; a worker's error (see above); DATA_LOSS when a worker's samples do not match its
  // chunk. params.max_new_tokens_per_prompt does not travel (the proto has no such field), and an empty
  // stop_token_ids list arrives as "the engine's defaults".
  absl::StatusOr<std::vector<rollout::Sample>> Generate(const std::vector<std::vector<int32_t>>& prompts,
                                                        const rollout::SamplingParams& params);

 private:
  struct Impl;
  explicit RemoteGenerator(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// The job's reward, scored on its reward servers (which run the same parts: contiguous chunks of at most `max_items`
// per call, spread over the servers in parallel). Each item carries the prompt's text, the response and the record's
// fields (reward::ScoreInput).
absl::StatusOr<std::unique_ptr<reward::Reward>> MakeRemoteReward(const RemoteServices& services,
                                                                 int64_t max_items = 256);

// Learner rank 0's publisher: forms the broadcast group with every rollout worker (which joins when it takes its
// assignment) and sends weight versions.
class WeightPublisher {
 public:
  struct Stats {
    uint64_t bytes = 0;  // bucket bytes sent
    double seconds = 0;  // announcement + broadcast + every worker's verified swap
  };
  // Blocks until the group is formed (RemoteServices::join_timeout). INVALID_ARGUMENT without a rendezvous store
  // address or rollout addresses; UNAVAILABLE when the group cannot be formed.
  static absl::StatusOr<std::unique_ptr<WeightPublisher>> Create(const RemoteServices& services);
  ~WeightPublisher();

  // Packs `tensors` (by the names the rollout model knows them) as `version` and sends them; returns once every
  // rollout worker has verified and swapped them in. The workers' status codes otherwise (FAILED_PRECONDITION for
  // a version not above theirs, DATA_LOSS for a checksum mismatch, UNAVAILABLE for a lost peer, among them one that
  // has not answered within RemoteServices::join_timeout of the send).
  // `adapter` non-empty: the tensors are that adapter's (manifest.adapter), which the workers hold by that name.
  absl::StatusOr<Stats> Publish(const std::vector<std::pair<std::string, torch::Tensor>>& tensors, uint64_t version,
                                const std::string& adapter = "");

 private:
  struct Impl;
  explicit WeightPublisher(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace alignd::learner

#endif  // ALIGND_LEARNER_REMOTE_H_
