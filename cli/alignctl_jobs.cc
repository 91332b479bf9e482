// alignctl's job commands: submit, status, list, cancel, watch, logs. Each RPC carries a deadline (--timeout; watch and
// submit --wait: --wait-timeout) and the bearer token (--token / ALIGND_TOKEN). Exit codes: 0 success, 1 the call
// failed (the status code and message are printed), 2 usage error, 3 the watched job ended FAILED or CANCELLED.
#include <unistd.h>

#include <algorithm>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "cli/commands.h"
#include "cli/plot.h"
#include "common/base/file_util.h"
#include "common/base/flags.h"
#include "coordinator/job_client.h"
#include "coordinator/metric_series.h"
#include "spec/job_validation.h"

namespace alignd::cli {
namespace {

using coordinator::JobClient;

void DeclareConnectionFlags(FlagSet& flags) {
  flags.String("coordinator", "127.0.0.1:7070", "coordinator address HOST:PORT", "ALIGND_COORDINATOR");
  DeclareTokenFlags(flags, "bearer token (over plaintext, sent only to loopback addresses)");
  flags.String("tls-ca", "", "PEM CA bundle to verify the coordinator with: use TLS", "ALIGND_TLS_CA");
  flags.String("tls-cert", "", "PEM client certificate for mutual TLS (with --tls-key)", "ALIGND_TLS_CERT");
  flags.String("tls-key", "", "PEM key of --tls-cert", "ALIGND_TLS_KEY");
  flags.String("tls-server-name", "", "name expected in the coordinator's certificate (default: the host)");
  flags.Double("timeout", 30, "deadline of each call, in seconds");
  flags.String("output", "text", "text or json");
}

// Parses flags; returns -1 to go on, or the exit code to return now (help, usage errors).
int ParseFlags(FlagSet& flags, const Args& args, size_t positional, std::ostream& out, std::ostream& err) {
  absl::Status parsed = flags.Parse(args);
  if (!parsed.ok()) {
    ReportError(parsed, err);
    err << flags.Usage();
    return 2;
  }
  if (flags.help_requested()) {
    out << flags.Usage();
    return 0;
  }
  if (flags.positional().size() != positional) {
    err << "error: expected " << positional << " argument" << (positional == 1 ? "" : "s") << ", got "
        << flags.positional().size() << "\n"
        << flags.Usage();
    return 2;
  }
  const std::string output = flags.GetString("output");
  if (output != "text" && output != "json") {
    err << "error: --output must be text or json, got \"" << output << "\"\n";
    return 2;
  }
  if (!(flags.GetDouble("timeout") > 0)) {
    err << "error: --timeout must be > 0\n";
    return 2;
  }
  return -1;
}

absl::StatusOr<std::unique_ptr<JobClient>> Connect(const FlagSet& flags) {
  JobClient::Options options;
  options.address = flags.GetString("coordinator");
  auto token = TokenFromFlags(flags);
  if (!token.ok()) return token.status();
  options.token = *token;
  options.timeout = absl::Seconds(flags.GetDouble("timeout"));
  options.tls_ca_file = flags.GetString("tls-ca");
  options.tls_cert_file = flags.GetString("tls-cert");
  options.tls_key_file = flags.GetString("tls-key");
  options.tls_server_name = flags.GetString("tls-server-name");
  return JobClient::Connect(options);
}

std::string StateName(v1::JobState state) {
  std::string name = v1::JobState_Name(state);
  return name.rfind("JOB_STATE_", 0) == 0 ? name.substr(10) : name;
}

std::string FormatTime(int64_t unix_ms) {
  if (unix_ms == 0) return "-";
  return absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::FromUnixMillis(unix_ms), absl::UTCTimeZone());
}

nlohmann::json JobJson(const v1::Job& job) {
  return {{"id", job.id()},
          {"name", job.name()},
          {"state", StateName(job.state())},
          {"attempt", job.attempt()},
          {"max_restarts", job.max_restarts()},
          {"step", job.step()},
          {"total_steps", job.total_steps()},
          {"owner", job.owner()},
          {"message", job.message()},
          {"resources",
           {{"learners", job.resources().learners()},
            {"rollout_workers", job.resources().rollout_workers()},
            {"reward_servers", job.resources().reward_servers()},
            {"device", job.resources().device() == v1::DEVICE_KIND_CUDA ? "cuda" : "cpu"}}},
          {"created", FormatTime(job.created_unix_ms())},
          {"updated", FormatTime(job.updated_unix_ms())},
          {"created_unix_ms", job.created_unix_ms()},
          {"updated_unix_ms", job.updated_unix_ms()}};
}

// `step` of `total` as "step 120/400 [######--------------]  30%"; without a total, "step 120".
std::string ProgressBar(uint64_t step, uint64_t total) {
  if (total == 0) return absl::StrCat("step ", step);
  constexpr int kWidth = 20;
  const double done = std::min(1.0, static_cast<double>(step) / static_cast<double>(total));
  const int filled = static_cast<int>(done * kWidth + 0.5);
  return absl::StrFormat("step %d/%d [%s%s] %3.0f%%", step, total, std::string(filled, '#'),
                         std::string(kWidth - filled, '-'), 100 * done);
}

void PrintJob(const v1::Job& job, const std::string& output, std::ostream& out) {
  if (output == "json") {
    out << JobJson(job).dump() << "\n";
    return;
  }
  out << "id:        " << job.id() << "\n"
      << "name:      " << job.name() << "\n"
      << "state:     " << StateName(job.state()) << "\n"
      << "attempt:   " << job.attempt() << " (max restarts " << job.max_restarts() << ")\n"
      << "progress:  " << ProgressBar(job.step(), job.total_steps()) << "\n"
      << "owner:     " << job.owner() << "\n"
      << "resources: " << job.resources().learners() << " learners, " << job.resources().rollout_workers()
      << " rollout workers, " << job.resources().reward_servers() << " reward servers ("
      << (job.resources().device() == v1::DEVICE_KIND_CUDA ? "cuda" : "cpu") << ")\n"
      << "created:   " << FormatTime(job.created_unix_ms()) << "\n"
      << "updated:   " << FormatTime(job.updated_unix_ms()) << "\n"
      << "message:   " << job.message() << "\n";
}

std::string RandomRequestId() {
  std::random_device device;
  return absl::StrFormat("%08x%08x%08x%08x", device(), device(), device(), device());
}

absl::StatusOr<std::vector<v1::JobState>> ParseStates(const std::string& text) {
  std::vector<v1::JobState> states;
  for (absl::string_view part : absl::StrSplit(text, ',', absl::SkipEmpty())) {
    std::string name = absl::AsciiStrToUpper(absl::StripAsciiWhitespace(part));
    if (name.rfind("JOB_STATE_", 0) != 0) name = "JOB_STATE_" + name;
    v1::JobState state;
    if (!v1::JobState_Parse(name, &state) || state == v1::JOB_STATE_UNSPECIFIED) {
      return absl::InvalidArgumentError(absl::StrCat("--state: unknown state \"", part,
                                                     "\" (PENDING, SCHEDULED, RUNNING, RESTARTING, SUCCEEDED, FAILED, "
                                                     "CANCELLED)"));
    }
    states.push_back(state);
  }
  return states;
}

constexpr int kJobDidNotSucceed = 3;

// The metrics a progress line shows (all of them go to --output=json and are stored by the coordinator).
bool KeyMetric(const std::string& name) {
  static const char* kKeys[] = {"train/loss",      "rm/accuracy",       "rewards/accuracies",
                                "rewards/margins", "reward/mean",       "objective/kl",
                                "task/accuracy",   "task/refusal_rate", "weights/sync_seconds"};
  if (name.rfind("eval/", 0) == 0) return true;
  return std::find(std::begin(kKeys), std::end(kKeys), name) != std::end(kKeys);
}

struct WatchMode {
  bool json = false;
  bool past_only = false;  // the events so far, then stop (alignctl logs without --follow)
  bool live = false;       // redraw progress in place (stdout is a terminal)
};

// Prints each event of `id` as it happens: state changes and messages as lines, progress as a bar with the key
// metrics. The exit code follows how the job ended (past_only: 0 once the events are printed).
int WatchJob(JobClient& client, const std::string& id, absl::Duration timeout, const WatchMode& mode, std::ostream& out,
             std::ostream& err) {
  uint64_t total = 0;  // the spec's train.steps, for the bar
  if (auto job = client.Get(id); job.ok()) {
    total = job->total_steps();
    // An older coordinator does not fill total_steps: read it from the spec.
    if (total == 0) {
      if (auto spec = ValidateJobSpec(job->spec_yaml()); spec.ok()) total = spec->spec.train.steps;
    }
  }
  v1::JobState last = v1::JOB_STATE_UNSPECIFIED;
  bool bar_open = false;  // a live bar is on the current line
  absl::Status status = client.Watch(
      id, timeout,
      [&](const v1::JobEvent& e) {
        last = e.state();
        const std::map<std::string, double> metrics(e.metrics().begin(), e.metrics().end());
        if (mode.json) {
          nlohmann::json line{{"id", e.job_id()},
                              {"time", FormatTime(e.unix_ms())},
                              {"state", StateName(e.state())},
                              {"attempt", e.attempt()},
                              {"message", e.message()}};
          if (e.step() > 0 || !metrics.empty()) {
            line["step"] = e.step();
            line["metrics"] = metrics;
          }
          out << line.dump() << std::endl;
          return;
        }
        const bool progress = e.step() > 0 && e.message().rfind("step ", 0) == 0;
        if (progress) {
          std::string line = absl::StrCat(FormatTime(e.unix_ms()), "  ", ProgressBar(e.step(), total));
          for (const auto& [name, value] : metrics) {
            if (KeyMetric(name)) absl::StrAppend(&line, "  ", name, "=", absl::StrFormat("%.4g", value));
          }
          const size_t note = e.message().find("; ");
          if (note != std::string::npos) absl::StrAppend(&line, "  (", e.message().substr(note + 2), ")");
          if (mode.live) {
            out << "\r\x1b[K" << line << std::flush;
            bar_open = true;
          } else {
            out << line << std::endl;
          }
          return;
        }
        if (bar_open) out << "\n";
        bar_open = false;
        out << FormatTime(e.unix_ms()) << "  " << absl::StrFormat("%-10s", StateName(e.state())) << " attempt "
            << e.attempt() << "  " << e.message() << std::endl;
      },
      mode.past_only);
  if (bar_open) out << "\n";
  if (!status.ok()) return ReportError(status, err);
  if (mode.past_only || last == v1::JOB_STATE_SUCCEEDED) return 0;
  err << "job " << id << " ended " << StateName(last) << "\n";
  return kJobDidNotSucceed;
}

// `alignctl logs --plot`: one chart per metric in `names`, of the values the job's progress events carry so far. When
// an attempt after a restart reports a step again, its value replaces the earlier one (as in metrics.jsonl).
int PlotJob(JobClient& client, const std::string& id, absl::Duration timeout, const std::vector<std::string>& names,
            const PlotOptions& options, std::ostream& out, std::ostream& err) {
  const std::set<std::string> wanted(names.begin(), names.end());
  coordinator::MetricSeries series;
  absl::Status status = client.Watch(
      id, timeout,
      [&](const v1::JobEvent& e) {
        coordinator::AddToSeries(
            e.step(), e.metrics(), [&](const std::string& n) { return wanted.count(n) > 0; }, &series);
      },
      /*past_only=*/true);
  if (!status.ok()) return ReportError(status, err);
  for (size_t i = 0; i < names.size(); ++i)
    out << (i > 0 ? "\n" : "") << PlotMetric(names[i], series[names[i]], options);
  return 0;
}

// --plot's metric names, or a usage error.
absl::StatusOr<std::vector<std::string>> PlotNames(const FlagSet& flags) {
  std::vector<std::string> names;
  for (absl::string_view part : absl::StrSplit(flags.GetString("plot"), ',', absl::SkipWhitespace())) {
    names.emplace_back(absl::StripAsciiWhitespace(part));
  }
  if (names.empty()) return absl::InvalidArgumentError("--plot: name at least one metric, e.g. train/loss,reward/mean");
  if (flags.GetBool("follow")) {
    return absl::InvalidArgumentError("--plot draws the steps so far and does not combine with --follow");
  }
  if (flags.GetString("output") == "json") {
    return absl::InvalidArgumentError("--plot draws text; --output=json lists the events with all their metrics");
  }
  const int64_t width = flags.GetInt("plot-width"), height = flags.GetInt("plot-height");
  if (width < 10 || width > 500) return absl::InvalidArgumentError("--plot-width must be in 10..500");
  if (height < 2 || height > 200) return absl::InvalidArgumentError("--plot-height must be in 2..200");
  return names;
}

WatchMode ModeFor(const FlagSet& flags, const std::ostream& out) {
  WatchMode mode;
  mode.json = flags.GetString("output") == "json";
  mode.live = &out == &std::cout && isatty(STDOUT_FILENO);
  return mode;
}

void DeclareWaitTimeout(FlagSet& flags) {
  flags.Double("wait_timeout", 7 * 24 * 3600, "how long to watch before giving up, in seconds");
}

}  // namespace

int RunWorkers(const Args& args, std::ostream& out, std::ostream& err) {
  FlagSet flags("alignctl workers [flags]\nLists registered workers. Exit codes: 0 listed, 1 failed, 2 usage.");
  DeclareConnectionFlags(flags);
  if (int code = ParseFlags(flags, args, 0, out, err); code >= 0) return code;
  auto client = Connect(flags);
  if (!client.ok()) return ReportError(client.status(), err);
  auto workers = (*client)->ListWorkers();
  if (!workers.ok()) return ReportError(workers.status(), err);
  auto roles_of = [](const v1::WorkerInfo& info) {
    std::vector<std::string> roles;
    for (int r : info.roles()) roles.push_back(absl::AsciiStrToLower(v1::Role_Name(r).substr(5)));
    return absl::StrJoin(roles, ",");
  };
  if (flags.GetString("output") == "json") {
    nlohmann::json list = nlohmann::json::array();
    for (const v1::WorkerStatus& w : workers->workers()) {
      list.push_back({{"id", w.worker().worker_id()},
                      {"roles", roles_of(w.worker())},
                      {"device", w.worker().device() == v1::DEVICE_KIND_CUDA ? "cuda" : "cpu"},
                      {"device_count", w.worker().device_count()},
                      {"address", w.worker().address()},
                      {"job", w.job_id()},
                      {"lease_expires", FormatTime(w.lease_expires_unix_ms())}});
    }
    out << nlohmann::json{{"workers", list}}.dump() << "\n";
    return 0;
  }
  out << absl::StrFormat("%-10s %-22s %-6s %-22s %s\n", "ID", "ROLES", "DEVICE", "ADDRESS", "JOB");
  for (const v1::WorkerStatus& w : workers->workers()) {
    out << absl::StrFormat("%-10s %-22s %-6s %-22s %s\n", w.worker().worker_id(), roles_of(w.worker()),
                           w.worker().device() == v1::DEVICE_KIND_CUDA ? "cuda" : "cpu", w.worker().address(),
                           w.job_id().empty() ? "-" : w.job_id());
  }
  return 0;
}

int RunWatch(const Args& args, std::ostream& out, std::ostream& err) {
  FlagSet flags(
      "alignctl watch JOB [flags]\nPrints the job's events until it ends. Exit codes: 0 SUCCEEDED, "
      "1 failed call, 2 usage, 3 FAILED or CANCELLED.");
  DeclareConnectionFlags(flags);
  DeclareWaitTimeout(flags);
  if (int code = ParseFlags(flags, args, 1, out, err); code >= 0) return code;
  auto client = Connect(flags);
  if (!client.ok()) return ReportError(client.status(), err);
  return WatchJob(**client, flags.positional()[0], absl::Seconds(flags.GetDouble("wait_timeout")), ModeFor(flags, out),
                  out, err);
}

int RunLogs(const Args& args, std::ostream& out, std::ostream& err) {
  FlagSet flags(
      "alignctl logs JOB [--follow | --plot train/loss,reward/mean] [flags]\nPrints the job's events: "
      "state changes, failures and restarts with their reasons, progress with metrics, checkpoints; with "
      "--plot, instead, a chart of each metric named over the steps so far. Exit codes: 0 printed (with "
      "--follow: the job SUCCEEDED), 1 failed call, 2 usage, 3 (--follow) FAILED or CANCELLED.");
  DeclareConnectionFlags(flags);
  DeclareWaitTimeout(flags);
  flags.Bool("follow", false, "keep printing new events until the job ends");
  flags.String("plot", "", "comma-separated metrics to chart over the steps (from the progress events)");
  flags.Int("plot-width", 60, "--plot: columns of each chart");
  flags.Int("plot-height", 12, "--plot: rows of each chart");
  if (int code = ParseFlags(flags, args, 1, out, err); code >= 0) return code;
  std::vector<std::string> plot;
  if (flags.IsSet("plot")) {
    auto names = PlotNames(flags);
    if (!names.ok()) {
      ReportError(names.status(), err);
      return 2;
    }
    plot = *std::move(names);
  }
  auto client = Connect(flags);
  if (!client.ok()) return ReportError(client.status(), err);
  if (!plot.empty()) {
    PlotOptions options;
    options.width = static_cast<int>(flags.GetInt("plot-width"));
    options.height = static_cast<int>(flags.GetInt("plot-height"));
    return PlotJob(**client, flags.positional()[0], absl::Seconds(flags.GetDouble("wait_timeout")), plot, options, out,
                   err);
  }
  WatchMode mode = ModeFor(flags, out);
  mode.past_only = !flags.GetBool("follow");
  mode.live = false;  // a log is a list of lines
  return WatchJob(**client, flags.positional()[0], absl::Seconds(flags.GetDouble("wait_timeout")), mode, out, err);
}

int RunSubmit(const Args& args, std::ostream& out, std::ostream& err) {
  FlagSet flags(
      "alignctl submit SPEC.yaml [--request-id ID] [flags]\n"
      "Prints the job id alone on the first line. Exit codes: 0 submitted, 1 rejected or failed, 2 usage.");
  DeclareConnectionFlags(flags);
  flags.String("request_id", "",
               "idempotency key: resubmitting with the same key returns the same job "
               "(default: a random key)");
  flags.Bool("wait", false, "then print the job's events until it ends; exit 0 only on SUCCEEDED (3 otherwise)");
  DeclareWaitTimeout(flags);
  if (int code = ParseFlags(flags, args, 1, out, err); code >= 0) return code;
  auto spec = ReadFile(flags.positional()[0]);
  if (!spec.ok()) return ReportError(spec.status(), err);
  auto client = Connect(flags);
  if (!client.ok()) return ReportError(client.status(), err);
  std::string request_id = flags.GetString("request_id");
  if (request_id.empty()) request_id = RandomRequestId();
  auto job = (*client)->Submit(*spec, request_id);
  if (!job.ok()) return ReportError(job.status(), err);
  out << job->id() << "\n";
  if (flags.GetString("output") == "json") {
    out << JobJson(*job).dump() << "\n";
  } else {
    out << StateName(job->state()) << ": " << job->message() << "\n";
  }
  if (flags.GetBool("wait")) {
    return WatchJob(**client, job->id(), absl::Seconds(flags.GetDouble("wait_timeout")), ModeFor(flags, out), out, err);
  }
  return 0;
}

int RunStatus(const Args& args, std::ostream& out, std::ostream& err) {
  FlagSet flags("alignctl status JOB [flags]\nExit codes: 0 shown, 1 failed, 2 usage.");
  DeclareConnectionFlags(flags);
  if (int code = ParseFlags(flags, args, 1, out, err); code >= 0) return code;
  auto client = Connect(flags);
  if (!client.ok()) return ReportError(client.status(), err);
  auto job = (*client)->Get(flags.positional()[0]);
  if (!job.ok()) return ReportError(job.status(), err);
  PrintJob(*job, flags.GetString("output"), out);
  return 0;
}

int RunList(const Args& args, std::ostream& out, std::ostream& err) {
  FlagSet flags("alignctl list [--state PENDING,RUNNING] [flags]\nExit codes: 0 listed, 1 failed, 2 usage.");
  DeclareConnectionFlags(flags);
  flags.String("state", "", "only jobs in these states, comma-separated");
  flags.Int("limit", 1000, "show at most this many jobs (oldest first)");
  if (int code = ParseFlags(flags, args, 0, out, err); code >= 0) return code;
  auto states = ParseStates(flags.GetString("state"));
  if (!states.ok()) {
    ReportError(states.status(), err);
    return 2;
  }
  const int64_t limit = flags.GetInt("limit");
  if (limit < 1) {
    err << "error: --limit must be >= 1\n";
    return 2;
  }
  auto client = Connect(flags);
  if (!client.ok()) return ReportError(client.status(), err);
  std::vector<v1::Job> jobs;
  std::string page_token;
  do {
    auto page = (*client)->List(*states, 0, page_token);
    if (!page.ok()) return ReportError(page.status(), err);
    for (const v1::Job& job : page->jobs()) {
      if (static_cast<int64_t>(jobs.size()) < limit) jobs.push_back(job);
    }
    page_token = page->next_page_token();
  } while (!page_token.empty() && static_cast<int64_t>(jobs.size()) < limit);
  if (flags.GetString("output") == "json") {
    nlohmann::json list = nlohmann::json::array();
    for (const v1::Job& job : jobs) list.push_back(JobJson(job));
    out << nlohmann::json{{"jobs", list}}.dump() << "\n";
    return 0;
  }
  out << absl::StrFormat("%-12s %-11s %-7s %-16s %-12s %s\n", "ID", "STATE", "ATTEMPT", "NAME", "OWNER", "MESSAGE");
  for (const v1::Job& job : jobs) {
    out << absl::StrFormat("%-12s %-11s %-7d %-16s %-12s %s\n", job.id(), StateName(job.state()), job.attempt(),
                           job.name(), job.owner(), job.message());
  }
  return 0;
}

int RunCancel(const Args& args, std::ostream& out, std::ostream& err) {
  FlagSet flags(
      "alignctl cancel JOB [flags]\nExit codes: 0 cancelled, 1 failed (already finished: "
      "FAILED_PRECONDITION), 2 usage.");
  DeclareConnectionFlags(flags);
  if (int code = ParseFlags(flags, args, 1, out, err); code >= 0) return code;
  auto client = Connect(flags);
  if (!client.ok()) return ReportError(client.status(), err);
  auto job = (*client)->Cancel(flags.positional()[0]);
  if (!job.ok()) return ReportError(job.status(), err);
  if (flags.GetString("output") == "json") {
    out << JobJson(*job).dump() << "\n";
  } else {
    out << job->id() << " " << StateName(job->state()) << "\n";
  }
  return 0;
}

}  // namespace alignd::cli
