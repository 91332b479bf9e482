// The rollout role: loads the job's model.path into a rollout engine (with the job's freshly initialised PEFT
// adapters, whose tensors the learner's weight versions replace), joins the weight-broadcast group that learner rank
// 0 forms, and serves alignd.v1.Rollout through the node's RolloutRouter until the assignment is cancelled. The job's
// intra-op thread count applies to the runner's thread and to each call the service answers
// (ScopedComputeThreads), not to the other roles of the process.
#ifndef ALIGND_NODE_ROLLOUT_RUNNER_H_
#define ALIGND_NODE_ROLLOUT_RUNNER_H_

#include "node/role_context.h"
#include "node/routers.h"
#include "node/runner.h"

namespace alignd::node {

class RolloutRunner final : public Runner {
 public:
  // `router` outlives the runner.
  RolloutRunner(RoleContext context, RolloutRouter* router);
  // Serves until `cancel`, then OK; the model's, the adapters' and the weight group's errors before that.
  absl::Status Run(const v1::Assignment& assignment, const CancelSignal& cancel) override;

 private:
  const RoleContext context_;
  RolloutRouter* const router_;
};

}  // namespace alignd::node

#endif  // ALIGND_NODE_ROLLOUT_RUNNER_H_
