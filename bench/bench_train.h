// The training settings that alignd's learner benchmarks share with their TRL twins (bench/reference/learner_ref.py,
// learner_var_ref.py): AdamW at lr 1e-4 with weight decay 0.01, no warm-up, linear decay to 0, gradient clipping at
// 1.0, one micro-batch a step, sigmoid DPO at beta 0.1.
#ifndef ALIGND_BENCH_BENCH_TRAIN_H_
#define ALIGND_BENCH_BENCH_TRAIN_H_

#include "spec/job_spec.h"

namespace alignd::bench {

inline void SetBenchTraining(JobSpec* spec) {
  spec->train.grad_accum = 1;
  spec->train.lr = 1e-4;
  spec->train.weight_decay = 0.01;
  spec->train.warmup_steps = 0;
  spec->train.schedule = "linear";
  spec->train.min_lr_ratio = 0.0;
  spec->train.max_grad_norm = 1.0;
  spec->dpo.loss = "sigmoid";
  spec->dpo.beta = 0.1;
}

}  // namespace alignd::bench

#endif  // ALIGND_BENCH_BENCH_TRAIN_H_
