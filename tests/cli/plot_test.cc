#include "cli/plot.h"

#include <cmath>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace alignd::cli {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::StartsWith;

// The chart's lines: [0] the title, [1..height] the rows, then the x-axis and the step labels.
std::vector<std::string> Lines(const std::string& chart) {
  EXPECT_EQ(chart.back(), '\n');
  return absl::StrSplit(chart.substr(0, chart.size() - 1), '\n');
}

// The plotting area of a row: what follows the "|" after the y label.
std::string Area(const std::string& row) { return row.substr(row.find('|') + 1); }

std::map<int64_t, double> Series(int64_t first, int64_t last, double (*f)(int64_t)) {
  std::map<int64_t, double> points;
  for (int64_t step = first; step <= last; ++step) points[step] = f(step);
  return points;
}

TEST(PlotTest, DrawsASmallChartExactly) {
  EXPECT_EQ(PlotMetric("m", {{0, 0.0}, {5, 1.0}, {10, 2.0}}, {11, 3}),
            "m  steps 0..10  (3 points)\n"
            "2 |          *\n"
            "  |     *\n"
            "0 |*\n"
            "  +-----------\n"
            "   0        10\n");
}

TEST(PlotTest, ARisingSeriesEndsOnTheTopRowAtTheRight) {
  const std::string chart = PlotMetric("reward/mean", Series(1, 40, [](int64_t s) { return 0.1 * s; }));
  std::vector<std::string> lines = Lines(chart);
  ASSERT_EQ(lines.size(), 1u + 12 + 2);
  EXPECT_EQ(lines[0], "reward/mean  steps 1..40  (40 points)");
  EXPECT_EQ(Area(lines[1]).size(), 60u);  // the last step: top row, last of 60 columns
  EXPECT_EQ(Area(lines[1]).back(), '*');
  EXPECT_EQ(Area(lines[12]).front(), '*');      // the first step: bottom row, first column
  EXPECT_THAT(lines[1], StartsWith("  4 |"));   // max 4.0, labelled on the top row
  EXPECT_THAT(lines[12], StartsWith("0.1 |"));  // min 0.1, on the bottom row
  EXPECT_EQ(lines[13], "    +" + std::string(60, '-'));
  EXPECT_EQ(lines[14], "     1" + std::string(57, ' ') + "40");
}

TEST(PlotTest, AFallingSeriesStartsOnTheTopRow) {
  std::vector<std::string> lines =
      Lines(PlotMetric("train/loss", Series(1, 100, [](int64_t s) { return 5.0 / s; }), {30, 6}));
  EXPECT_EQ(Area(lines[1]), "*");
  EXPECT_EQ(Area(lines[6]).back(), '*');
  EXPECT_EQ(Area(lines[6]).size(), 30u);
  EXPECT_THAT(lines[1], StartsWith("   5 |"));
  EXPECT_THAT(lines[6], StartsWith("0.05 |"));
}

TEST(PlotTest, NegativeValuesAndLargeStepsAreLabelled) {
  std::vector<std::string> lines = Lines(PlotMetric("objective/kl", {{1000, -0.5}, {250000, 12345.678}}, {20, 4}));
  EXPECT_EQ(lines[0], "objective/kl  steps 1000..250000  (2 points)");
  EXPECT_THAT(lines[1], StartsWith("1.235e+04 |"));
  EXPECT_THAT(lines[4], StartsWith("     -0.5 |*"));
  EXPECT_THAT(lines[6], HasSubstr("1000" + std::string(10, ' ') + "250000"));
}

TEST(PlotTest, AConstantSeriesSitsOnTheMiddleRow) {
  std::vector<std::string> lines = Lines(PlotMetric("train/lr", Series(1, 5, [](int64_t) { return 0.001; }), {10, 5}));
  for (int row = 1; row <= 5; ++row) EXPECT_EQ(Area(lines[row]).find('*') != std::string::npos, row == 3) << row;
  EXPECT_THAT(lines[1], StartsWith("0.001 |"));
  EXPECT_THAT(lines[5], StartsWith("0.001 |"));
}

TEST(PlotTest, OnePointIsInTheFirstColumn) {
  std::vector<std::string> lines = Lines(PlotMetric("eval/loss", {{7, 2.5}}, {10, 3}));
  EXPECT_EQ(lines[0], "eval/loss  steps 7..7  (1 point)");
  EXPECT_EQ(Area(lines[2]), "*");
  EXPECT_EQ(lines[5], "     7");
}

TEST(PlotTest, NonFiniteValuesAreCountedNotDrawn) {
  const double nan = std::nan(""), inf = std::numeric_limits<double>::infinity();
  std::vector<std::string> lines = Lines(PlotMetric("train/loss", {{1, 2.0}, {2, nan}, {3, 1.0}, {4, inf}}, {10, 3}));
  EXPECT_EQ(lines[0], "train/loss  steps 1..3  (2 points, 2 not finite, not drawn)");
  EXPECT_THAT(lines[1], StartsWith("2 |*"));
  EXPECT_EQ(PlotMetric("x", {{1, nan}}), "x: no finite points (1 not finite)\n");
}

TEST(PlotTest, NoPointsSaysSo) { EXPECT_EQ(PlotMetric("eval/loss", {}), "eval/loss: no points\n"); }

}  // namespace
}  // namespace alignd::cli
