// gRPC adapter for alignd.v1.Reward over a RewardCore: reads the call's deadline, converts the request, calls the
// core, converts the status once (HandleRpc). A call without a deadline gets Options::default_deadline.
//
// Status codes: INVALID_ARGUMENT for an empty batch or one over the core's max_request_items (oversized: the client
// must split it); RESOURCE_EXHAUSTED when the core's queue is full; DEADLINE_EXCEEDED when the deadline passes first;
// UNAVAILABLE while the core shuts down; a scorer's error with its code, prefixed with the part's name. A cancelled
// call is not noticed: it is answered when its batch is scored or its deadline passes.
//
// Thread safety: thread-safe (gRPC calls handlers from its own threads).
#ifndef ALIGND_REWARD_REWARD_SERVICE_H_
#define ALIGND_REWARD_REWARD_SERVICE_H_

#include "absl/time/time.h"
#include "proto/alignd.grpc.pb.h"
#include "reward/reward_core.h"

namespace alignd::reward {

class RewardService final : public alignd::v1::Reward::Service {
 public:
  struct Options {
    absl::Duration default_deadline = absl::Seconds(30);  // for calls that set none
  };
  // `core` must outlive the service.
  RewardService(RewardCore* core, Options options) : core_(core), options_(options) {}
  explicit RewardService(RewardCore* core) : RewardService(core, Options()) {}

  // The codes above.
  grpc::Status Score(grpc::ServerContext* context, const alignd::v1::ScoreRequest* request,
                     alignd::v1::ScoreResponse* response) override;

 private:
  RewardCore* const core_;
  const Options options_;
};

}  // namespace alignd::reward

#endif  // ALIGND_REWARD_REWARD_SERVICE_H_
