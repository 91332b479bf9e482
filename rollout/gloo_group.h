// Forming a c10d Gloo process group over a TCPStore that rank 0 hosts: the one mechanism behind the learners' group
// (worker/learner_group.h) and the weight-broadcast group (rollout/weight_broadcast.h). Internal: it exposes c10d
// types, so only those two .cc files include it (compiled with USE_C10D_GLOO). Nothing here throws.
#ifndef ALIGND_ROLLOUT_GLOO_GROUP_H_
#define ALIGND_ROLLOUT_GLOO_GROUP_H_

#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <chrono>
#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace alignd::rollout {

struct GlooGroupOptions {
  std::string host = "127.0.0.1";  // rank 0's store host
  uint16_t port = 0;               // rank 0: 0 = any free port; other ranks: rank 0's port
  int rank = 0;
  int world_size = 1;
  absl::Duration timeout = absl::Minutes(10);  // rendezvous and each collective
};

inline std::chrono::milliseconds Millis(absl::Duration d) {
  return std::chrono::milliseconds(absl::ToInt64Milliseconds(d));
}

// Checks rank, world size (>= `min_world`) and port (others need rank 0's), then opens the store: rank 0 serves it
// without waiting for the others. INVALID_ARGUMENT / UNAVAILABLE, messages prefixed with `who`.
absl::StatusOr<c10::intrusive_ptr<c10d::TCPStore>> OpenStore(const GlooGroupOptions& options, int min_world,
                                                             absl::string_view who);

// Forms the Gloo group over `store` (blocks until every rank is there). A loopback host is used as the interface;
// any other host means the machine's own (Gloo's default device), since a rank cannot bind to rank 0's address.
// UNAVAILABLE with LibTorch's message, prefixed with `who`.
absl::StatusOr<c10::intrusive_ptr<c10d::ProcessGroupGloo>> JoinGloo(const c10::intrusive_ptr<c10d::TCPStore>& store,
                                                                     const GlooGroupOptions& options,
                                                                     absl::string_view who);

}  // namespace alignd::rollout

#endif  // ALIGND_ROLLOUT_GLOO_GROUP_H_
