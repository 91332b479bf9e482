#include "learner/metrics_log.h"

#include <nlohmann/json.hpp>
#include <sstream>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/base/file_util.h"
#include "common/base/status.h"
#include "common/metrics/tfevents.h"

namespace alignd::learner {
namespace {

using json = nlohmann::json;

// metrics.jsonl's text up to step `resumed_from`: the lines a resumed run keeps (see Options::resumed_from).
absl::StatusOr<std::string> LinesUpTo(const std::string& path, int64_t resumed_from) {
  if (resumed_from <= 0 || !PathExists(path)) return std::string();
  ASSIGN_OR_RETURN(std::string text, ReadFile(path));
  std::string kept;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    json j = json::parse(line, nullptr, false);
    if (j.is_discarded()) continue;
    const bool after =
        j.is_object() && j.contains("step") && j["step"].is_number_integer() && j["step"].get<int64_t>() > resumed_from;
    if (!after) kept += line + "\n";
  }
  return kept;
}

}  // namespace

absl::StatusOr<std::unique_ptr<MetricsLog>> MetricsLog::Open(Options options) {
  if (options.dir.empty()) return absl::InvalidArgumentError("MetricsLog: no dir");
  std::unique_ptr<MetricsLog> log(new MetricsLog());
  log->path_ = JoinPath(options.dir, "metrics.jsonl");
  ASSIGN_OR_RETURN(std::string kept, LinesUpTo(log->path_, options.resumed_from));
  RETURN_IF_ERROR(WriteFileAtomic(log->path_, kept));
  log->jsonl_.open(log->path_, std::ios::app);
  if (!log->jsonl_) return absl::InternalError(absl::StrCat(log->path_, ": cannot open for appending"));
  EventsWriter::Options tb;
  tb.dir = JoinPath(options.dir, "tb");
  tb.first_step = options.resumed_from + 1;
  tb.fresh = options.resumed_from == 0;
  ASSIGN_OR_RETURN(log->events_, EventsWriter::Create(tb));
  return log;
}

MetricsLog::~MetricsLog() = default;

absl::Status MetricsLog::Write(int64_t step, const Metrics& metrics) {
  json j;
  j["step"] = step;
  for (const auto& [k, v] : metrics) j[k] = v;
  jsonl_ << j.dump() << "\n";
  jsonl_.flush();
  if (!jsonl_) return absl::InternalError(absl::StrCat(path_, ": cannot write"));
  return events_->WriteScalars(step, metrics);
}

}  // namespace alignd::learner
