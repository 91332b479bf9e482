// Small terminal charts of a metric over training steps, for `alignctl logs JOB --plot train/loss,reward/mean`.
// Plain ASCII, so that they survive any terminal, pager or log file.
#ifndef ALIGND_CLI_PLOT_H_
#define ALIGND_CLI_PLOT_H_

#include <cstdint>
#include <map>
#include <string>

namespace alignd::cli {

struct PlotOptions {
  int width = 60;   // columns of the plotting area (>= 2)
  int height = 12;  // rows of the plotting area (>= 2)
};

// One chart of `points` (step -> value) named `name`:
//
//   train/loss  steps 1..40  (40 points)
//      2.31 |*
//           | **
//           |   ***
//      0.12 |      ********
//           +------------------------------------------------------------
//            1                                                         40
//
// A title line, then `height` rows between the y-axis labels (the greatest value on the top row, the least on the
// bottom row), an x-axis and the first and last step under its ends. Each point is a '*' in the column of its step
// and the row of its value, both scaled linearly (a single step or a constant series sits in the first column or the
// middle row). Values that are not finite are left out and counted in the title. No points: one line saying so.
// Ends with a newline.
std::string PlotMetric(const std::string& name, const std::map<int64_t, double>& points,
                       const PlotOptions& options = {});

}  // namespace alignd::cli

#endif  // ALIGND_CLI_PLOT_H_
