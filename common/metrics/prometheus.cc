#include "common/metrics/prometheus.h"

#include <glog/logging.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "absl/strings/str_cat.h"

namespace alignd::metrics {

const std::vector<double>& LatencyBuckets() {
  static const auto* const kBuckets =
      new std::vector<double>{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};
  return *kBuckets;
}

Registry& Registry::Default() {
  static Registry* const kRegistry = new Registry;
  return *kRegistry;
}

Registry::Family& Registry::GetFamily(const std::string& name, const std::string& help, const std::string& type) {
  auto [it, inserted] = families_.try_emplace(name);
  if (inserted) {
    it->second.help = help;
    it->second.type = type;
  }
  CHECK_EQ(it->second.type, type) << "metric " << name << " used as " << type << " and " << it->second.type;
  return it->second;
}

void Registry::CounterAdd(const std::string& name, const std::string& help, const Labels& labels, double delta) {
  absl::MutexLock lock(&mu_);
  GetFamily(name, help, "counter").values[labels] += delta;
}

void Registry::GaugeSet(const std::string& name, const std::string& help, const Labels& labels, double value) {
  absl::MutexLock lock(&mu_);
  GetFamily(name, help, "gauge").values[labels] = value;
}

void Registry::GaugeAdd(const std::string& name, const std::string& help, const Labels& labels, double delta) {
  absl::MutexLock lock(&mu_);
  GetFamily(name, help, "gauge").values[labels] += delta;
}

void Registry::Observe(const std::string& name, const std::string& help, const Labels& labels, double value,
                       const std::vector<double>& buckets) {
  absl::MutexLock lock(&mu_);
  Histogram& h = GetFamily(name, help, "histogram").histograms[labels];
  if (h.bounds.empty()) {
    h.bounds = buckets;
    h.counts.assign(buckets.size() + 1, 0);
  }
  size_t i = 0;
  while (i < h.bounds.size() && value > h.bounds[i]) ++i;
  ++h.counts[i];
  h.sum += value;
  ++h.count;
}

Registry::CollectorHandle::~CollectorHandle() {
  absl::MutexLock lock(&registry_->collectors_mu_);
  registry_->collectors_.erase(id_);
}

std::unique_ptr<Registry::CollectorHandle> Registry::AddCollector(std::function<void(std::vector<Sample>*)> collect) {
  absl::MutexLock lock(&collectors_mu_);
  const int64_t id = next_collector_++;
  collectors_[id] = std::move(collect);
  return std::make_unique<CollectorHandle>(this, id);
}

std::string EscapeLabelValue(const std::string& value) {
  std::string out;
  for (char c : value) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

namespace {

std::string FormatLabels(const Labels& labels, const std::string& extra_key = "", const std::string& extra = "") {
  if (labels.empty() && extra_key.empty()) return "";
  std::string out = "{";
  bool first = true;
  for (const auto& [k, v] : labels) {
    absl::StrAppend(&out, first ? "" : ",", k, "=\"", EscapeLabelValue(v), "\"");
    first = false;
  }
  if (!extra_key.empty()) absl::StrAppend(&out, first ? "" : ",", extra_key, "=\"", extra, "\"");
  return out + "}";
}

std::string FormatValue(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  // The shortest spelling that reads back as the same double.
  char buf[32];
  for (int precision = 6; precision <= 17; ++precision) {
    std::snprintf(buf, sizeof(buf), "%.*g", precision, v);
    if (std::strtod(buf, nullptr) == v) break;
  }
  return buf;
}

}  // namespace

std::string Registry::Render() {
  std::vector<Sample> collected;
  {
    absl::MutexLock lock(&collectors_mu_);
    for (auto& [id, collect] : collectors_) collect(&collected);
  }
  absl::MutexLock lock(&mu_);
  std::map<std::string, Family> all = families_;
  for (const Sample& s : collected) {
    auto [it, inserted] = all.try_emplace(s.name);
    if (inserted) {
      it->second.help = s.help;
      it->second.type = s.type;
    }
    if (it->second.type != s.type) continue;  // a collector may not shadow an updated family
    it->second.values[s.labels] = s.value;
  }
  std::string out;
  for (const auto& [name, f] : all) {
    absl::StrAppend(&out, "# HELP ", name, " ", f.help, "\n# TYPE ", name, " ", f.type, "\n");
    for (const auto& [labels, v] : f.values)
      absl::StrAppend(&out, name, FormatLabels(labels), " ", FormatValue(v), "\n");
    for (const auto& [labels, h] : f.histograms) {
      uint64_t cumulative = 0;
      for (size_t i = 0; i < h.counts.size(); ++i) {
        cumulative += h.counts[i];
        const std::string le = i < h.bounds.size() ? FormatValue(h.bounds[i]) : "+Inf";
        absl::StrAppend(&out, name, "_bucket", FormatLabels(labels, "le", le), " ", cumulative, "\n");
      }
      absl::StrAppend(&out, name, "_sum", FormatLabels(labels), " ", FormatValue(h.sum), "\n");
      absl::StrAppend(&out, name, "_count", FormatLabels(labels), " ", h.count, "\n");
    }
  }
  return out;
}

}  // namespace alignd::metrics
