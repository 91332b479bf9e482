#include "learner/lr_schedule.h"

#include <cmath>

#include "gtest/gtest.h"

namespace alignd::learner {
namespace {

TrainSpec Schedule(const char* name, int64_t steps, int64_t warmup, double min_ratio = 0.1) {
  TrainSpec t;
  t.lr = 1e-3;
  t.schedule = name;
  t.steps = steps;
  t.warmup_steps = warmup;
  t.min_lr_ratio = min_ratio;
  return t;
}

TEST(LearningRate, WarmupRisesLinearlyToTheRateAtItsLastStep) {
  TrainSpec t = Schedule("cosine", 20, 4);
  EXPECT_DOUBLE_EQ(LearningRate(t, 0), 0.25e-3);
  EXPECT_DOUBLE_EQ(LearningRate(t, 1), 0.50e-3);
  EXPECT_DOUBLE_EQ(LearningRate(t, 3), 1e-3);
}

TEST(LearningRate, CosineDecaysFromTheRateToTheFloor) {
  TrainSpec t = Schedule("cosine", 20, 4);
  EXPECT_DOUBLE_EQ(LearningRate(t, 4), 1e-3);                       // progress 0, right after warmup
  EXPECT_DOUBLE_EQ(LearningRate(t, 12), 1e-3 * (0.1 + 0.9 * 0.5));  // halfway: cos(pi / 2) = 0
  EXPECT_DOUBLE_EQ(LearningRate(t, 20), 1e-4);                      // progress 1
  EXPECT_DOUBLE_EQ(LearningRate(t, 25), 1e-4) << "past the end the floor holds";
  EXPECT_DOUBLE_EQ(LearningRate(t, 8), 1e-3 * (0.1 + 0.9 * 0.5 * (1 + std::cos(M_PI * 0.25))));
}

TEST(LearningRate, LinearDecaysInAStraightLine) {
  TrainSpec t = Schedule("linear", 10, 0, 0.0);
  EXPECT_DOUBLE_EQ(LearningRate(t, 0), 1e-3);
  EXPECT_DOUBLE_EQ(LearningRate(t, 5), 0.5e-3);
  EXPECT_DOUBLE_EQ(LearningRate(t, 9), 0.1e-3);
  EXPECT_DOUBLE_EQ(LearningRate(t, 10), 0.0);
}

TEST(LearningRate, ConstantHoldsAfterWarmup) {
  TrainSpec t = Schedule("constant", 10, 2);
  EXPECT_DOUBLE_EQ(LearningRate(t, 0), 0.5e-3);
  EXPECT_DOUBLE_EQ(LearningRate(t, 2), 1e-3);
  EXPECT_DOUBLE_EQ(LearningRate(t, 9), 1e-3);
}

TEST(LearningRate, WarmupAsLongAsTheRunStillEndsAtTheFloor) {
  // steps - warmup_steps = 0: the decay's length is taken as 1 step, not a division by zero.
  TrainSpec t = Schedule("cosine", 3, 3);
  EXPECT_DOUBLE_EQ(LearningRate(t, 2), 1e-3);
  EXPECT_DOUBLE_EQ(LearningRate(t, 3), 1e-3);
  EXPECT_DOUBLE_EQ(LearningRate(t, 4), 1e-4);
}

}  // namespace
}  // namespace alignd::learner
