// A job's metrics over its steps, read from its progress events (the ones that carry a step): what `alignctl logs
// --plot` draws and what the coordinator's page charts.
#ifndef ALIGND_COORDINATOR_METRIC_SERIES_H_
#define ALIGND_COORDINATOR_METRIC_SERIES_H_

#include <cstdint>
#include <map>
#include <string>

namespace alignd::coordinator {

// Metric name -> step -> value.
using MetricSeries = std::map<std::string, std::map<int64_t, double>>;

// Adds one event's metrics at `step` to `series` (every metric, or only those `wanted` answers true for). Events
// without a step (state changes) add nothing. Fed a job's events in order, a step reported again (by an attempt after
// a restart, which resumes from its checkpoint) replaces the earlier value, as in the job's metrics.jsonl. `Metrics`
// is any map of name to value (std::map, or a protobuf Map).
template <typename Metrics, typename Wanted>
void AddToSeries(uint64_t step, const Metrics& metrics, const Wanted& wanted, MetricSeries* series) {
  if (step == 0) return;
  for (const auto& [name, value] : metrics) {
    if (wanted(name)) (*series)[name][static_cast<int64_t>(step)] = value;
  }
}

}  // namespace alignd::coordinator

#endif  // ALIGND_COORDINATOR_METRIC_SERIES_H_
