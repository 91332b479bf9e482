// What the assignment executor runs: one Runner per role (node/learner_runner.h, node/rollout_runner.h,
// node/reward_runner.h), fakes in tests.
#ifndef ALIGND_NODE_RUNNER_H_
#define ALIGND_NODE_RUNNER_H_

#include "absl/status/status.h"
#include "common/base/cancel.h"  // CancelSignal: the cancellation of one running assignment
#include "proto/alignd.pb.h"

namespace alignd::node {

class Runner {
 public:
  virtual ~Runner() = default;
  // Runs `assignment` on the calling thread until it is done, it fails, or (soon after) `cancel` fires; a serving
  // role (rollout, reward) serves until `cancel`. Returns the job's outcome: a configuration error as
  // INVALID_ARGUMENT or NOT_FOUND (not retried), anything else as the status that explains it. Never throws.
  virtual absl::Status Run(const v1::Assignment& assignment, const CancelSignal& cancel) = 0;
};

}  // namespace alignd::node

#endif  // ALIGND_NODE_RUNNER_H_
