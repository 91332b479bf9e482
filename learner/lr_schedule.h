// The learning rate of each optimiser step: a linear warmup, then cosine, linear or no decay (train.schedule).
#ifndef ALIGND_LEARNER_LR_SCHEDULE_H_
#define ALIGND_LEARNER_LR_SCHEDULE_H_

#include <cstdint>

#include "spec/job_spec.h"

namespace alignd::learner {

// The rate for 0-based step `step` (the trainer's step N uses N - 1) of a run of train.steps steps:
//   step < warmup_steps:  lr * (step + 1) / warmup_steps, so the first step already trains and the last warmup
//                         step reaches lr;
//   then "constant":      lr;
//   "cosine" / "linear":  lr * (min_lr_ratio + (1 - min_lr_ratio) * f(p)), p = (step - warmup) / max(1, steps -
//                         warmup) capped at 1, f = (1 + cos(pi p)) / 2 or 1 - p; lr at p = 0, min_lr_ratio * lr from
//                         p = 1 on (steps past train.steps stay there).
// An unknown schedule name decays linearly (job_spec validates the name).
double LearningRate(const TrainSpec& train, int64_t step);

}  // namespace alignd::learner

#endif  // ALIGND_LEARNER_LR_SCHEDULE_H_
