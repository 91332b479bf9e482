#include "coordinator/web_ui.h"

#include <glog/logging.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "coordinator/address.h"
#include "coordinator/metric_series.h"
#include "coordinator/web_assets.h"

namespace alignd::coordinator {
namespace {

using nlohmann::json;

constexpr char kCookie[] = "alignd_session";

int HttpStatusOf(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kInvalidArgument:
      return 400;
    case absl::StatusCode::kUnauthenticated:
      return 401;
    case absl::StatusCode::kPermissionDenied:
      return 403;
    case absl::StatusCode::kNotFound:
      return 404;
    case absl::StatusCode::kUnavailable:
      return 503;
    default:
      return 500;
  }
}

// Headers on every response: no framing (clickjacking), no MIME sniffing, scripts and styles from this origin only,
// nothing cached (the data changes and may be private).
void Harden(HttpResponse* r) {
  r->headers["X-Content-Type-Options"] = "nosniff";
  r->headers["X-Frame-Options"] = "DENY";
  r->headers["Referrer-Policy"] = "no-referrer";
  r->headers["Cache-Control"] = "no-store";
  r->headers["Content-Security-Policy"] =
      "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
      "form-action 'self'; frame-ancestors 'none'; base-uri 'none'";
}

HttpResponse Json(const json& body, int status = 200) {
  HttpResponse r;
  r.status = status;
  r.content_type = "application/json";
  r.body = body.dump(-1, ' ', false, json::error_handler_t::replace);
  Harden(&r);
  return r;
}

HttpResponse Error(const absl::Status& status) { return Json({{"error", status.message()}}, HttpStatusOf(status)); }

// A 303 to `location` (relative to the page, so that the page works under a path prefix).
HttpResponse Redirect(const std::string& location) {
  HttpResponse r;
  r.status = 303;
  r.headers["Location"] = location;
  Harden(&r);
  return r;
}

bool WantsJson(const HttpRequest& request) {
  auto it = request.headers.find("accept");
  return it != request.headers.end() && absl::StrContains(it->second, "application/json");
}

// The value of cookie `name` in a Cookie header ("a=1; b=2"), or empty.
std::string CookieValue(const HttpRequest& request, absl::string_view name) {
  auto it = request.headers.find("cookie");
  if (it == request.headers.end()) return "";
  for (absl::string_view part : absl::StrSplit(it->second, ';')) {
    part = absl::StripAsciiWhitespace(part);
    if (absl::ConsumePrefix(&part, name) && absl::ConsumePrefix(&part, "=")) return std::string(part);
  }
  return "";
}

// 32 random bytes from the OS, as hex: a session id nobody can guess.
std::string NewSessionId() {
  std::random_device device;
  std::string id;
  for (int i = 0; i < 8; ++i) absl::StrAppend(&id, absl::Hex(device(), absl::kZeroPad8));
  return id;
}

std::string StateName(v1::JobState state) { return v1::JobState_Name(state); }

json JobJson(const JobRecord& job) {
  return {{"id", job.id},
          {"name", job.name},
          {"owner", job.owner},
          {"state", StateName(job.state)},
          {"step", job.step},
          {"totalSteps", job.total_steps},
          {"attempt", job.attempt},
          {"maxRestarts", job.max_restarts},
          {"message", job.message},
          {"createdUnixMs", job.created_unix_ms},
          {"updatedUnixMs", job.updated_unix_ms}};
}

// [[step, value], ...] of `points`, thinned to at most `max_points` (every n-th step, and always the last one).
// Values that are not finite go as null (JSON has no NaN).
json PointsJson(const std::map<int64_t, double>& points, size_t max_points, bool* thinned) {
  const size_t stride = points.size() <= max_points ? 1 : (points.size() + max_points - 1) / max_points;
  if (stride > 1) *thinned = true;
  json out = json::array();
  size_t i = 0;
  for (const auto& [step, value] : points) {
    const bool last = i + 1 == points.size();
    if (i++ % stride != 0 && !last) continue;
    out.push_back(json::array({step, std::isfinite(value) ? json(value) : json(nullptr)}));
  }
  return out;
}

}  // namespace

WebUi::WebUi(JobManager* jobs, WorkerRegistry* workers, const TokenAuthenticator* auth, Options options)
    : jobs_(jobs), workers_(workers), auth_(auth), options_(std::move(options)) {}

int64_t WebUi::Now() const {
  if (options_.now_ms) return options_.now_ms();
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

absl::StatusOr<Principal> WebUi::Caller(const HttpRequest& request, bool* session) {
  *session = false;
  Principal caller;
  auto header = request.headers.find("authorization");
  const std::string cookie = CookieValue(request, kCookie);
  if (header != request.headers.end() || cookie.empty() || auth_->allow_all()) {
    absl::StatusOr<Principal> p =
        auth_->Authenticate(header == request.headers.end() ? absl::string_view() : header->second);
    if (!p.ok()) return p.status();
    caller = *std::move(p);
  } else {
    absl::MutexLock lock(&mu_);
    auto it = sessions_.find(cookie);
    if (it == sessions_.end() || it->second.expires_ms <= Now()) {
      if (it != sessions_.end()) sessions_.erase(it);
      return absl::UnauthenticatedError("no session: sign in again");
    }
    caller = it->second.principal;
    *session = true;
  }
  if (caller.role == Role::kWorker) {
    return absl::PermissionDeniedError(absl::StrCat(caller.name, " has a worker token, which serves workers only"));
  }
  return caller;
}

HttpResponse WebUi::Me(const HttpRequest& request) {
  bool session = false;
  absl::StatusOr<Principal> caller = Caller(request, &session);
  if (!caller.ok()) return Error(caller.status());
  return Json({{"name", caller->name}, {"role", std::string(RoleName(caller->role))}, {"session", session}});
}

HttpResponse WebUi::Jobs(const HttpRequest& request) {
  bool session = false;
  absl::StatusOr<Principal> caller = Caller(request, &session);
  if (!caller.ok()) return Error(caller.status());
  json jobs = json::array();
  std::string token;
  do {  // every page: the page lists them all (oldest first)
    absl::StatusOr<JobPage> page = jobs_->ListJobs(*caller, {}, 0, token);
    if (!page.ok()) return Error(page.status());
    for (const JobRecord& job : page->jobs) jobs.push_back(JobJson(job));
    token = page->next_page_token;
  } while (!token.empty());
  return Json({{"jobs", std::move(jobs)}});
}

HttpResponse WebUi::Job(const HttpRequest& request) {
  bool session = false;
  absl::StatusOr<Principal> caller = Caller(request, &session);
  if (!caller.ok()) return Error(caller.status());
  auto id = request.query.find("id");
  if (id == request.query.end() || id->second.empty()) return Error(absl::InvalidArgumentError("id: name a job"));
  absl::StatusOr<JobRecord> job = jobs_->GetJob(*caller, id->second);
  if (!job.ok()) return Error(job.status());
  absl::StatusOr<std::vector<EventRecord>> events = jobs_->ListEvents(*caller, id->second);
  if (!events.ok()) return Error(events.status());
  MetricSeries series;
  json changes = json::array();
  for (const EventRecord& e : *events) {
    AddToSeries(
        e.step, e.metrics, [](const std::string&) { return true; }, &series);
    // Progress events become points; the rest (state changes, checkpoints, failures) are listed.
    if (e.metrics.empty() || e.step == 0) {
      changes.push_back({{"unixMs", e.unix_ms},
                         {"state", StateName(e.state)},
                         {"attempt", e.attempt},
                         {"step", e.step},
                         {"message", e.message}});
    }
  }
  json series_json = json::object();
  bool thinned = false;
  for (const auto& [name, points] : series) series_json[name] = PointsJson(points, options_.max_points, &thinned);
  return Json({{"job", JobJson(*job)},
               {"series", std::move(series_json)},
               {"downsampled", thinned},
               {"events", std::move(changes)}});
}

HttpResponse WebUi::Workers(const HttpRequest& request) {
  bool session = false;
  absl::StatusOr<Principal> caller = Caller(request, &session);
  if (!caller.ok()) return Error(caller.status());
  const int64_t now = Now();
  std::map<std::string, bool> visible;  // job id -> whether the caller may see it
  json workers = json::array();
  for (const WorkerRecord& w : workers_->List()) {
    json roles = json::array();
    for (int r : w.info.roles()) roles.push_back(v1::Role_Name(static_cast<v1::Role>(r)));
    std::string job = w.job_id;
    if (!job.empty() && !caller->is_admin()) {
      auto [it, fresh] = visible.emplace(job, false);
      if (fresh) it->second = jobs_->GetJob(*caller, job).ok();
      if (!it->second) job = "(another user's)";
    }
    workers.push_back({{"id", w.info.worker_id()},
                       {"roles", std::move(roles)},
                       {"device", v1::DeviceKind_Name(w.info.device())},
                       {"deviceCount", w.info.device_count()},
                       {"address", w.info.address()},
                       {"leaseRemainingS", std::max<int64_t>(0, w.lease_expires_ms - now) / 1000.0},
                       {"job", job},
                       {"assignedRole", w.job_id.empty() ? "" : v1::Role_Name(w.assigned_role)}});
  }
  return Json({{"workers", std::move(workers)}});
}

HttpResponse WebUi::Login(const HttpRequest& request) {
  auto token = request.query.find("token");
  absl::StatusOr<Principal> caller = token == request.query.end()
                                         ? absl::InvalidArgumentError("token: give one")
                                         : auth_->Authenticate(absl::StrCat("Bearer ", token->second));
  if (caller.ok() && caller->role == Role::kWorker) {
    caller = absl::PermissionDeniedError(absl::StrCat(caller->name, " has a worker token, which serves workers only"));
  }
  if (!caller.ok()) {
    LOG(WARNING) << "page: sign-in refused: " << caller.status().message();
    return WantsJson(request) ? Error(caller.status()) : Redirect("./?login=failed");
  }
  const int64_t now = Now();
  const std::string id = NewSessionId();
  {
    absl::MutexLock lock(&mu_);
    for (auto it = sessions_.begin(); it != sessions_.end();) {  // drop the expired ones
      it = it->second.expires_ms <= now ? sessions_.erase(it) : std::next(it);
    }
    while (!sessions_.empty() && sessions_.size() >= options_.max_sessions) {
      auto oldest = std::min_element(sessions_.begin(), sessions_.end(), [](const auto& a, const auto& b) {
        return a.second.created_ms < b.second.created_ms;
      });
      sessions_.erase(oldest);
    }
    sessions_[id] = Session{*caller, now + absl::ToInt64Milliseconds(options_.session_ttl), now};
  }
  HttpResponse r =
      WantsJson(request)
          ? Json({{"name", caller->name}, {"role", std::string(RoleName(caller->role))}, {"session", true}})
          : Redirect("./");
  r.headers["Set-Cookie"] = absl::StrCat(
      kCookie, "=", id, "; Path=/; HttpOnly; SameSite=Strict; Max-Age=", absl::ToInt64Seconds(options_.session_ttl),
      options_.secure_cookie ? "; Secure" : "");
  return r;
}

HttpResponse WebUi::Logout(const HttpRequest& request) {
  const std::string cookie = CookieValue(request, kCookie);
  if (!cookie.empty()) {
    absl::MutexLock lock(&mu_);
    sessions_.erase(cookie);
  }
  HttpResponse r = WantsJson(request) ? Json(json::object()) : Redirect("./");
  r.headers["Set-Cookie"] = absl::StrCat(kCookie, "=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0");
  return r;
}

std::map<std::string, HttpHandler> WebUi::GetRoutes() {
  std::map<std::string, HttpHandler> routes;
  for (int i = 0; i < kWebAssetCount; ++i) {
    const WebAsset& asset = kWebAssets[i];
    const std::string name = asset.name;
    std::string type = "text/plain; charset=utf-8";
    if (absl::EndsWith(name, ".html")) type = "text/html; charset=utf-8";
    if (absl::EndsWith(name, ".js")) type = "text/javascript; charset=utf-8";
    if (absl::EndsWith(name, ".css")) type = "text/css; charset=utf-8";
    HttpHandler serve = [text = asset.text, type](const HttpRequest&) {
      HttpResponse r;
      r.content_type = type;
      r.body = text;
      Harden(&r);
      return r;
    };
    routes["/" + name] = serve;
    if (name == "index.html") routes["/"] = serve;
  }
  routes["/api/me"] = [this](const HttpRequest& r) { return Me(r); };
  routes["/api/jobs"] = [this](const HttpRequest& r) { return Jobs(r); };
  routes["/api/job"] = [this](const HttpRequest& r) { return Job(r); };
  routes["/api/workers"] = [this](const HttpRequest& r) { return Workers(r); };
  return routes;
}

std::map<std::string, HttpHandler> WebUi::PostRoutes() {
  std::map<std::string, HttpHandler> routes;
  routes["/login"] = [this](const HttpRequest& r) { return Login(r); };
  routes["/logout"] = [this](const HttpRequest& r) { return Logout(r); };
  return routes;
}

HttpResponse WebUi::Handle(const HttpRequest& request) {
  std::map<std::string, HttpHandler> get = GetRoutes(), post = PostRoutes();
  auto& mine = request.method == "POST" ? post : get;
  auto& other = request.method == "POST" ? get : post;
  if (auto it = mine.find(request.path); it != mine.end()) return it->second(request);
  if (other.count(request.path) > 0) return Json({{"error", "method not allowed"}}, 405);
  return Json({{"error", absl::StrCat("no page at ", request.path)}}, 404);
}

absl::StatusOr<std::unique_ptr<HttpServer>> WebUi::Serve(const std::string& listen) {
  if (auth_->allow_all() && !IsLoopbackAddress(listen)) {
    return absl::InvalidArgumentError(absl::StrCat("--http-listen ", listen,
                                                   " is not a loopback address, and the coordinator has no "
                                                   "--auth-tokens: the page would show every job to anyone"));
  }
  absl::StatusOr<std::unique_ptr<HttpServer>> server = HttpServer::Start(listen, GetRoutes(), PostRoutes());
  if (!server.ok()) {
    return absl::Status(server.status().code(), absl::StrCat("--http-listen: ", server.status().message()));
  }
  LOG(INFO) << "page on http://" << (*server)->host() << ":" << (*server)->port() << "/";
  return server;
}

}  // namespace alignd::coordinator
