#include "cli/plot.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace alignd::cli {
namespace {

// Position of `v` in [lo, hi] scaled to 0..cells-1, rounded; the middle cell when the range is empty.
int Scale(double v, double lo, double hi, int cells) {
  if (!(hi > lo)) return (cells - 1) / 2;
  const double t = (v - lo) / (hi - lo);
  return std::clamp(static_cast<int>(std::lround(t * (cells - 1))), 0, cells - 1);
}

}  // namespace

std::string PlotMetric(const std::string& name, const std::map<int64_t, double>& points, const PlotOptions& options) {
  const int width = std::max(2, options.width), height = std::max(2, options.height);
  std::map<int64_t, double> finite;
  for (const auto& [step, value] : points) {
    if (std::isfinite(value)) finite.emplace(step, value);
  }
  const size_t dropped = points.size() - finite.size();
  const std::string not_finite = dropped == 0 ? "" : absl::StrCat(", ", dropped, " not finite, not drawn");
  if (finite.empty()) {
    if (dropped == 0) return absl::StrCat(name, ": no points\n");
    return absl::StrCat(name, ": no finite points (", dropped, " not finite)\n");
  }

  const int64_t first = finite.begin()->first, last = finite.rbegin()->first;
  double lo = finite.begin()->second, hi = lo;
  for (const auto& [step, value] : finite) {
    lo = std::min(lo, value);
    hi = std::max(hi, value);
  }
  // The first step's column is 0 even when there is only one step.
  std::vector<std::string> grid(height, std::string(width, ' '));
  for (const auto& [step, value] : finite) {
    const int column = first == last ? 0 : Scale(static_cast<double>(step), first, last, width);
    grid[height - 1 - Scale(value, lo, hi, height)][column] = '*';
  }

  const std::string top = absl::StrFormat("%.4g", hi), bottom = absl::StrFormat("%.4g", lo);
  const size_t label = std::max(top.size(), bottom.size());
  std::string out = absl::StrCat(name, "  steps ", first, "..", last, "  (", finite.size(),
                                 finite.size() == 1 ? " point" : " points", not_finite, ")\n");
  for (int row = 0; row < height; ++row) {
    std::string y = row == 0 ? top : row == height - 1 ? bottom : "";
    const size_t end = grid[row].find_last_not_of(' ');  // no trailing blanks
    absl::StrAppend(&out, std::string(label - y.size(), ' '), y, " |",
                    end == std::string::npos ? "" : grid[row].substr(0, end + 1), "\n");
  }
  absl::StrAppend(&out, std::string(label + 1, ' '), "+", std::string(width, '-'), "\n");
  // The first step under the first column, the last one ending under the last column.
  absl::StrAppend(&out, std::string(label + 2, ' '), first);
  if (last != first) {
    const std::string left = absl::StrCat(first), right = absl::StrCat(last);
    const size_t used = left.size() + right.size();
    absl::StrAppend(&out, std::string(static_cast<size_t>(width) > used ? width - used : 1, ' '), right);
  }
  absl::StrAppend(&out, "\n");
  return out;
}

}  // namespace alignd::cli
