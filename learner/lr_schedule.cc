#include "learner/lr_schedule.h"

#include <algorithm>
#include <cmath>

namespace alignd::learner {

double LearningRate(const TrainSpec& t, int64_t step) {
  if (step < t.warmup_steps) return t.lr * static_cast<double>(step + 1) / static_cast<double>(t.warmup_steps);
  if (t.schedule == "constant") return t.lr;
  double progress =
      static_cast<double>(step - t.warmup_steps) / static_cast<double>(std::max<int64_t>(1, t.steps - t.warmup_steps));
  progress = std::min(1.0, progress);
  double factor = t.schedule == "cosine" ? 0.5 * (1.0 + std::cos(M_PI * progress)) : 1.0 - progress;
  return t.lr * (t.min_lr_ratio + (1.0 - t.min_lr_ratio) * factor);
}

}  // namespace alignd::learner
