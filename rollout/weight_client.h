// The learner's side of a chunked weight update: streams a PackedWeights (rollout/weight_update.h) to a rollout
// worker's UpdateWeightsStream, the manifest first, then each bucket in chunks.
#ifndef ALIGND_ROLLOUT_WEIGHT_CLIENT_H_
#define ALIGND_ROLLOUT_WEIGHT_CLIENT_H_

#include <cstddef>
#include <cstdint>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "proto/alignd.grpc.pb.h"
#include "rollout/weight_update.h"

namespace alignd::rollout {

struct PushOptions {
  size_t chunk_bytes = 1 << 20;                // data bytes per message (>= 1); keep under the channel's limit
  absl::Duration timeout = absl::Seconds(60);  // deadline of the whole stream
};

// Streams `weights` and returns the version the worker reports. INVALID_ARGUMENT for chunk_bytes 0; otherwise the
// worker's status (see rollout/service.h), DEADLINE_EXCEEDED or UNAVAILABLE from the transport. Thread-safe when
// the stub is.
absl::StatusOr<uint64_t> PushWeights(alignd::v1::Rollout::StubInterface& stub, const PackedWeights& weights,
                                     const PushOptions& options = {});

}  // namespace alignd::rollout

#endif  // ALIGND_ROLLOUT_WEIGHT_CLIENT_H_
