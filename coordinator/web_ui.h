// The coordinator's page (`--http-listen`): the jobs with state, progress and owner; one job's curves (every metric
// its progress events carry: loss, reward and its parts, KL, eval metrics, ...) and events; and the workers with
// their roles, devices, leases and current jobs. Static HTML/JS/CSS embedded in the binary (coordinator/web/), over
// a small JSON API:
//
//   GET  /  /app.js  /app.css   the page (no data in it; the script reads the API)
//   GET  /api/me                who the caller is                       {name, role, session}
//   GET  /api/jobs              the caller's jobs (admins: all)         {jobs: [...]}
//   GET  /api/job?id=JOB        one job, its series and its events      {job, series: {name: [[step, value]]}, events}
//   GET  /api/workers           registered workers                      {workers: [...]}
//   POST /login   token=TOKEN   a session cookie for that token's principal (303 to the page; JSON when the request
//                               accepts application/json)
//   POST /logout                ends the session
//
// Auth is the job API's own: every /api call needs the bearer token of a user or admin (`Authorization: Bearer T`) or
// the session cookie that /login gave for one; the same ownership rules as JobService apply (users see only their own
// jobs), and worker tokens are refused (403). A coordinator without tokens (loopback only) lets everyone in as admin.
// Sessions live in memory (lost when the coordinator restarts) and expire after `session_ttl`; the cookie is
// HttpOnly and SameSite=Strict, and every response forbids framing and sniffing.
//
// Thread-safe: handlers may run on several server threads at once.
#ifndef ALIGND_COORDINATOR_WEB_UI_H_
#define ALIGND_COORDINATOR_WEB_UI_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/metrics/http_server.h"
#include "coordinator/auth.h"
#include "coordinator/job_manager.h"
#include "coordinator/worker_registry.h"

namespace alignd::coordinator {

class WebUi {
 public:
  struct Options {
    // Milliseconds since the Unix epoch. Default: the system clock.
    std::function<int64_t()> now_ms;
    // How long a session cookie stays good. Default 12 h.
    absl::Duration session_ttl = absl::Hours(12);
    // Most sessions kept at once; past it the oldest is dropped. Default 10000.
    size_t max_sessions = 10000;
    // Per metric, at most this many points go to the page (a longer series is thinned to every n-th step, keeping
    // the last). Default 2000.
    size_t max_points = 2000;
    // Mark the cookie Secure (the page is served behind TLS). Default false.
    bool secure_cookie = false;
  };

  // All three must outlive the WebUi.
  WebUi(JobManager* jobs, WorkerRegistry* workers, const TokenAuthenticator* auth, Options options);

  // The routes above, for HttpServer::Start.
  std::map<std::string, HttpHandler> GetRoutes();
  std::map<std::string, HttpHandler> PostRoutes();

  // Serves `request` as the routes do (for tests): 404 for an unknown path, 405 for a known path with the other
  // method.
  HttpResponse Handle(const HttpRequest& request);

  // Serves the page on `listen` (HOST:PORT; port 0: any free one). A non-loopback `listen` needs a coordinator with
  // tokens (INVALID_ARGUMENT otherwise), as the job API does. The server must be destroyed before this WebUi.
  absl::StatusOr<std::unique_ptr<HttpServer>> Serve(const std::string& listen);

 private:
  struct Session {
    Principal principal;
    int64_t expires_ms = 0;
    int64_t created_ms = 0;
  };
  // The caller from its bearer token or session cookie; `session` says which. UNAUTHENTICATED or PERMISSION_DENIED.
  absl::StatusOr<Principal> Caller(const HttpRequest& request, bool* session);
  HttpResponse Me(const HttpRequest& request);
  HttpResponse Jobs(const HttpRequest& request);
  HttpResponse Job(const HttpRequest& request);
  HttpResponse Workers(const HttpRequest& request);
  HttpResponse Login(const HttpRequest& request);
  HttpResponse Logout(const HttpRequest& request);
  int64_t Now() const;

  JobManager* const jobs_;
  WorkerRegistry* const workers_;
  const TokenAuthenticator* const auth_;
  const Options options_;
  absl::Mutex mu_;
  std::map<std::string, Session> sessions_ ABSL_GUARDED_BY(mu_);  // by session id
};

}  // namespace alignd::coordinator

#endif  // ALIGND_COORDINATOR_WEB_UI_H_
