// The learner role: RunTraining (learner/trainer.h) as rank `rank` of the job's learners, resuming from the job's
// latest checkpoint on every attempt after the first. Rank 0 hosts the gang's rendezvous store (on the node's
// RendezvousRouter) while the job runs, reports progress and checkpoints through `send`, and records each step's
// Prometheus metrics. PPO/GRPO/RLOO: rank 0 generates on the assignment's rollout workers and scores on its reward
// servers (learner/remote.h).
#ifndef ALIGND_NODE_LEARNER_RUNNER_H_
#define ALIGND_NODE_LEARNER_RUNNER_H_

#include <functional>

#include "node/assignment_executor.h"
#include "node/role_context.h"
#include "node/routers.h"
#include "node/runner.h"

namespace alignd::node {

class LearnerRunner final : public Runner {
 public:
  // `rendezvous` outlives the runner; `send` queues a message on the control stream (thread-safe).
  LearnerRunner(RoleContext context, RendezvousRouter* rendezvous, std::function<void(v1::WorkerMessage)> send);
  // INVALID_ARGUMENT for a gang (world_size > 1) or rollout workers without a rendezvous store; the trainer's errors.
  absl::Status Run(const v1::Assignment& assignment, const CancelSignal& cancel) override;

 private:
  const RoleContext context_;
  RendezvousRouter* const rendezvous_;
  const std::function<void(v1::WorkerMessage)> send_;
};

}  // namespace alignd::node

#endif  // ALIGND_NODE_LEARNER_RUNNER_H_
