// Prometheus metrics of one process, rendered in the text exposition format (version 0.0.4) for `--metrics-listen`.
// Names follow Prometheus conventions: the `alignd_` prefix, base units in the name (`_seconds`, `_bytes`), `_total`
// on counters. Counters and histograms are updated where things happen; gauges that are a view of some state (jobs by
// state, worker leases) are computed by collectors when scraped.
//
// One registry serves the process: in `alignd local` the coordinator and every worker role share it, and the labels
// (role, method, state, ...) tell their series apart.
//
// Thread safety: every method is thread-safe. A collector runs on the scraping thread, under no registry lock.
#ifndef ALIGND_COMMON_METRICS_PROMETHEUS_H_
#define ALIGND_COMMON_METRICS_PROMETHEUS_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/synchronization/mutex.h"

namespace alignd::metrics {

using Labels = std::vector<std::pair<std::string, std::string>>;

// Default buckets of latency histograms, in seconds (0.5 ms .. 60 s).
const std::vector<double>& LatencyBuckets();

// One sample a collector reports: a gauge (or counter) value.
struct Sample {
  std::string name;
  std::string help;
  std::string type = "gauge";  // gauge or counter
  Labels labels;
  double value = 0;
};

class Registry {
 public:
  // The process's registry, made on first use and never destroyed.
  static Registry& Default();

  // A family is made on first use with its help text and type; later calls reuse it (the help of the first call
  // stays). Using one name with two types is a programming error and CHECK-fails.
  // CounterAdd/GaugeAdd add `delta` to the series of `labels` (created at 0); GaugeSet replaces its value; Observe
  // counts `value` into a histogram whose bucket upper bounds (ascending) are fixed by the series' first Observe.
  void CounterAdd(const std::string& name, const std::string& help, const Labels& labels, double delta = 1);
  void GaugeSet(const std::string& name, const std::string& help, const Labels& labels, double value);
  void GaugeAdd(const std::string& name, const std::string& help, const Labels& labels, double delta);
  void Observe(const std::string& name, const std::string& help, const Labels& labels, double value,
               const std::vector<double>& buckets = LatencyBuckets());

  // A collector reports samples at each scrape. It is removed when the returned handle is destroyed, which waits for
  // a scrape running it to finish; destroy the handle before what the collector reads.
  class CollectorHandle {
   public:
    // Made by AddCollector; `registry` is not owned and must outlive the handle.
    CollectorHandle(Registry* registry, int64_t id) : registry_(registry), id_(id) {}
    ~CollectorHandle();
    CollectorHandle(const CollectorHandle&) = delete;
    CollectorHandle& operator=(const CollectorHandle&) = delete;

   private:
    Registry* registry_;
    int64_t id_;
  };
  // Registers `collect`; it runs on each Render under the collectors' lock only: it may update metrics, but must not
  // add a collector or destroy a handle (deadlock).
  std::unique_ptr<CollectorHandle> AddCollector(std::function<void(std::vector<Sample>*)> collect);

  // Every family, sorted by name, in the text format.
  std::string Render();

 private:
  struct Histogram {
    std::vector<double> bounds;
    std::vector<uint64_t> counts;  // per bucket (not cumulative); one more for +Inf
    double sum = 0;
    uint64_t count = 0;
  };
  struct Family {
    std::string help, type;
    std::map<Labels, double> values;
    std::map<Labels, Histogram> histograms;
  };
  Family& GetFamily(const std::string& name, const std::string& help, const std::string& type)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  absl::Mutex mu_;
  std::map<std::string, Family> families_ ABSL_GUARDED_BY(mu_);
  absl::Mutex collectors_mu_;  // held while collectors run, and to add or remove one
  std::map<int64_t, std::function<void(std::vector<Sample>*)>> collectors_ ABSL_GUARDED_BY(collectors_mu_);
  int64_t next_collector_ ABSL_GUARDED_BY(collectors_mu_) = 1;
};

// A label value escaped for the text format (backslash, double quote, newline).
std::string EscapeLabelValue(const std::string& value);

}  // namespace alignd::metrics

#endif  // ALIGND_COMMON_METRICS_PROMETHEUS_H_
