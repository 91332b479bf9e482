// The reward role: serves alignd.v1.Reward through the node's RewardRouter with the parts of the job's `rewards`
// (made by reward/registry.h, as for a learner scoring in-process, so both score alike), each reported by name,
// until the assignment is cancelled. The job's intra-op thread count is set on the runner's thread while it serves
// (ScopedComputeThreads), which the reward core's batch thread, started then, begins with.
#ifndef ALIGND_NODE_REWARD_RUNNER_H_
#define ALIGND_NODE_REWARD_RUNNER_H_

#include "node/role_context.h"
#include "node/routers.h"
#include "node/runner.h"

namespace alignd::node {

class RewardRunner final : public Runner {
 public:
  // `router` outlives the runner.
  RewardRunner(RoleContext context, RewardRouter* router);
  // Serves until `cancel`, then OK; INVALID_ARGUMENT (or a reward model's load error) for parts that cannot be made.
  absl::Status Run(const v1::Assignment& assignment, const CancelSignal& cancel) override;

 private:
  const RoleContext context_;
  RewardRouter* const router_;
};

}  // namespace alignd::node

#endif  // ALIGND_NODE_REWARD_RUNNER_H_
