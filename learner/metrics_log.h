// A training run's metrics: metrics.jsonl (one JSON object per line) and the same scalars as TensorBoard event files
// in tb/ (common/metrics/tfevents.h), both in the run's output folder.
#ifndef ALIGND_LEARNER_METRICS_LOG_H_
#define ALIGND_LEARNER_METRICS_LOG_H_

#include <cstdint>
#include <fstream>
#include <map>
#include <memory>
#include <string>

#include "absl/status/statusor.h"

namespace alignd {
class EventsWriter;
}  // namespace alignd

namespace alignd::learner {

using Metrics = std::map<std::string, double>;

// Appends {"step": N, <key>: <value>, ...} lines to <dir>/metrics.jsonl, flushed each Write, and the same scalars to
// an events file in <dir>/tb/. Not thread-safe: one caller (the trainer's rank 0) at a time.
class MetricsLog {
 public:
  struct Options {
    std::string dir;  // the run's output folder (it must exist); required
    // 0: a fresh run, which starts metrics.jsonl anew and replaces tb/'s event files. N > 0: a run resumed from the
    // checkpoint of step N, which keeps metrics.jsonl's lines up to step N and drops the later ones (the resumed run
    // writes those steps again; a line whose "step" is not an integer, or that is not JSON, was not written by a
    // trainer and is kept as it is, or dropped when unparsable), and adds an events file whose SessionLog START at
    // N + 1 makes TensorBoard drop the older files' later steps.
    int64_t resumed_from = 0;
  };

  // Opens both, applying Options::resumed_from. INVALID_ARGUMENT without a dir; INTERNAL (naming the path) when a
  // file cannot be read, written or opened.
  static absl::StatusOr<std::unique_ptr<MetricsLog>> Open(Options options);
  ~MetricsLog();

  // Appends one line and one events record for `step`. INTERNAL when either write fails.
  absl::Status Write(int64_t step, const Metrics& metrics);

  MetricsLog(const MetricsLog&) = delete;
  MetricsLog& operator=(const MetricsLog&) = delete;

 private:
  MetricsLog() = default;

  std::string path_;
  std::ofstream jsonl_;
  std::unique_ptr<EventsWriter> events_;
};

}  // namespace alignd::learner

#endif  // ALIGND_LEARNER_METRICS_LOG_H_
