// The coordinator's page and its JSON API (coordinator/web_ui.h): auth through tokens and session cookies, ownership,
// a job's series across a restart, thinning, workers, and the same over a real loopback HTTP server.
#include "coordinator/web_ui.h"

#include <httplib.h>

#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "absl/strings/match.h"
#include "coordinator/memory_job_store.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace alignd::coordinator {
namespace {

using ::nlohmann::json;
using ::testing::HasSubstr;
using ::testing::StartsWith;

constexpr char kSpec[] = R"(name: tiny
algorithm: sft
model:
  path: runs/base
data:
  train: data/toy/sft_train.jsonl
resources:
  learners: 1
  max_restarts: 1
train:
  steps: 100
)";

constexpr char kTokens[] = R"(admin-token-0123456789 root admin
alice-token-0123456789 alice user
bob-token-012345678901 bob user
worker-token-012345678 w1 worker
)";

const Principal kAlice{"alice", Role::kUser};
const Principal kBob{"bob", Role::kUser};

class WebUiTest : public ::testing::Test {
 protected:
  void SetUp() override { Make(/*open=*/false, {}); }

  void Make(bool open, WebUi::Options options) {
    web_.reset();
    JobManager::Options jm;
    jm.now_ms = [this] { return now_ms_; };
    auto manager = JobManager::Create(&store_, jm);
    ASSERT_TRUE(manager.ok()) << manager.status();
    manager_ = std::move(*manager);
    WorkerRegistry::Options wr;
    wr.now_ms = [this] { return now_ms_; };
    auto workers = WorkerRegistry::Create(wr);
    ASSERT_TRUE(workers.ok()) << workers.status();
    workers_ = std::move(*workers);
    if (open) {
      auth_ = std::make_unique<TokenAuthenticator>(TokenAuthenticator::AllowAll());
    } else {
      auto auth = TokenAuthenticator::Parse(kTokens, "tokens");
      ASSERT_TRUE(auth.ok()) << auth.status();
      auth_ = std::make_unique<TokenAuthenticator>(*std::move(auth));
    }
    options.now_ms = [this] { return now_ms_; };
    web_ = std::make_unique<WebUi>(manager_.get(), workers_.get(), auth_.get(), options);
  }

  // GET `path` (with ?query) as the holder of `token` ("" for none) or with `cookie`.
  HttpResponse Get(const std::string& path, const std::string& token, const std::string& cookie = "") {
    HttpRequest r;
    r.method = "GET";
    const size_t q = path.find('?');
    r.path = path.substr(0, q);
    if (q != std::string::npos) r.query = ParseForm(path.substr(q + 1));
    if (!token.empty()) r.headers["authorization"] = "Bearer " + token;
    if (!cookie.empty()) r.headers["cookie"] = "theme=dark; alignd_session=" + cookie;
    return web_->Handle(r);
  }

  HttpResponse Post(const std::string& path, const std::string& body, bool json_reply = false,
                    const std::string& cookie = "") {
    HttpRequest r;
    r.method = "POST";
    r.path = path;
    r.body = body;
    r.query = ParseForm(body);
    if (json_reply) r.headers["accept"] = "application/json";
    if (!cookie.empty()) r.headers["cookie"] = "alignd_session=" + cookie;
    return web_->Handle(r);
  }

  // The session id in a Set-Cookie header.
  static std::string SessionOf(const HttpResponse& r) {
    auto it = r.headers.find("Set-Cookie");
    if (it == r.headers.end()) return "";
    const std::string& v = it->second;
    const size_t start = v.find('=') + 1;
    return v.substr(start, v.find(';') - start);
  }

  std::string Submit(const Principal& who) {
    auto job = manager_->SubmitJob(who, kSpec, "");
    EXPECT_TRUE(job.ok()) << job.status();
    return job.ok() ? job->id : "";
  }

  int64_t now_ms_ = 1'700'000'000'000;
  MemoryJobStore store_;
  std::unique_ptr<JobManager> manager_;
  std::unique_ptr<WorkerRegistry> workers_;
  std::unique_ptr<TokenAuthenticator> auth_;
  std::unique_ptr<WebUi> web_;
};

TEST_F(WebUiTest, ThePageIsServedToAnyoneAndTheApiOnlyWithAToken) {
  HttpResponse page = Get("/", "");
  EXPECT_EQ(page.status, 200);
  EXPECT_THAT(page.content_type, StartsWith("text/html"));
  EXPECT_THAT(page.body, HasSubstr("<script src=\"app.js\""));
  EXPECT_THAT(page.headers["Content-Security-Policy"], HasSubstr("script-src 'self'"));
  EXPECT_EQ(page.headers["X-Frame-Options"], "DENY");
  EXPECT_THAT(Get("/app.js", "").content_type, StartsWith("text/javascript"));
  EXPECT_THAT(Get("/app.css", "").content_type, StartsWith("text/css"));

  for (const char* path : {"/api/me", "/api/jobs", "/api/job?id=job-000001", "/api/workers"}) {
    EXPECT_EQ(Get(path, "").status, 401) << path;
    EXPECT_EQ(Get(path, "not-a-token-at-all-xx").status, 401) << path;
    EXPECT_EQ(Get(path, "", "made-up-session").status, 401) << path;
    EXPECT_EQ(Get(path, "worker-token-012345678").status, 403) << path;
  }
  EXPECT_EQ(Get("/nowhere", "").status, 404);
  EXPECT_EQ(Post("/api/jobs", "").status, 405);
  EXPECT_EQ(Get("/login", "").status, 405);
}

TEST_F(WebUiTest, UsersSeeTheirOwnJobsAndAdminsSeeAll) {
  const std::string a = Submit(kAlice), b = Submit(kBob);
  json alice = json::parse(Get("/api/jobs", "alice-token-0123456789").body);
  ASSERT_EQ(alice["jobs"].size(), 1u);
  EXPECT_EQ(alice["jobs"][0]["id"], a);
  EXPECT_EQ(alice["jobs"][0]["owner"], "alice");
  EXPECT_EQ(alice["jobs"][0]["state"], "JOB_STATE_PENDING");
  EXPECT_EQ(alice["jobs"][0]["totalSteps"], 100);
  EXPECT_EQ(json::parse(Get("/api/jobs", "admin-token-0123456789").body)["jobs"].size(), 2u);

  EXPECT_EQ(Get("/api/job?id=" + a, "alice-token-0123456789").status, 200);
  EXPECT_EQ(Get("/api/job?id=" + b, "alice-token-0123456789").status, 403);
  EXPECT_EQ(Get("/api/job?id=" + b, "admin-token-0123456789").status, 200);
  EXPECT_EQ(Get("/api/job?id=job-999999", "alice-token-0123456789").status, 404);
  HttpResponse no_id = Get("/api/job", "alice-token-0123456789");
  EXPECT_EQ(no_id.status, 400);
  EXPECT_THAT(json::parse(no_id.body)["error"].get<std::string>(), HasSubstr("id"));
}

TEST_F(WebUiTest, ATokenSignsInToASessionCookieUntilSignOutOrExpiry) {
  HttpResponse in = Post("/login", "token=alice-token-0123456789");
  EXPECT_EQ(in.status, 303);
  EXPECT_EQ(in.headers["Location"], "./");
  EXPECT_THAT(in.headers["Set-Cookie"], HasSubstr("HttpOnly"));
  EXPECT_THAT(in.headers["Set-Cookie"], HasSubstr("SameSite=Strict"));
  const std::string session = SessionOf(in);
  ASSERT_EQ(session.size(), 64u);

  json me = json::parse(Get("/api/me", "", session).body);
  EXPECT_EQ(me["name"], "alice");
  EXPECT_EQ(me["role"], "user");
  EXPECT_EQ(me["session"], true);
  Submit(kAlice);
  Submit(kBob);
  EXPECT_EQ(json::parse(Get("/api/jobs", "", session).body)["jobs"].size(), 1u);

  // Another sign-in gets another session; signing out ends only the one named.
  const std::string second = SessionOf(Post("/login", "token=alice-token-0123456789", /*json_reply=*/true));
  ASSERT_FALSE(second.empty());
  EXPECT_NE(second, session);
  HttpResponse out = Post("/logout", "", false, session);
  EXPECT_EQ(out.status, 303);
  EXPECT_THAT(out.headers["Set-Cookie"], HasSubstr("Max-Age=0"));
  EXPECT_EQ(Get("/api/me", "", session).status, 401);
  EXPECT_EQ(Get("/api/me", "", second).status, 200);

  // A session lasts session_ttl (12 h).
  now_ms_ += 12 * 3600 * 1000 - 1;
  EXPECT_EQ(Get("/api/me", "", second).status, 200);
  now_ms_ += 1;
  EXPECT_EQ(Get("/api/me", "", second).status, 401);
}

TEST_F(WebUiTest, SignInRefusesUnknownAndWorkerTokens) {
  HttpResponse bad = Post("/login", "token=nope");
  EXPECT_EQ(bad.status, 303);
  EXPECT_EQ(bad.headers["Location"], "./?login=failed");
  EXPECT_EQ(bad.headers.count("Set-Cookie"), 0u);
  EXPECT_EQ(Post("/login", "token=nope", /*json_reply=*/true).status, 401);
  EXPECT_EQ(Post("/login", "", /*json_reply=*/true).status, 400);
  HttpResponse worker = Post("/login", "token=worker-token-012345678", /*json_reply=*/true);
  EXPECT_EQ(worker.status, 403);
  EXPECT_THAT(worker.body, HasSubstr("worker token"));
}

TEST_F(WebUiTest, OldestSessionsGoPastTheLimit) {
  WebUi::Options options;
  options.max_sessions = 2;
  Make(false, options);
  const std::string first = SessionOf(Post("/login", "token=alice-token-0123456789"));
  now_ms_ += 1;
  const std::string second = SessionOf(Post("/login", "token=alice-token-0123456789"));
  now_ms_ += 1;
  const std::string third = SessionOf(Post("/login", "token=bob-token-012345678901"));
  EXPECT_EQ(Get("/api/me", "", first).status, 401);
  EXPECT_EQ(Get("/api/me", "", second).status, 200);
  EXPECT_EQ(json::parse(Get("/api/me", "", third).body)["name"], "bob");
}

TEST_F(WebUiTest, AJobsSeriesTakeTheRestartedAttemptsValues) {
  const std::string id = Submit(kAlice);
  ASSERT_TRUE(manager_->MarkScheduled(id, "placed").ok());
  ASSERT_TRUE(manager_->ReportProgress(id, 1, {{"train/loss", 2.0}, {"reward/parts/format", 0.5}}).ok());
  ASSERT_TRUE(manager_->ReportProgress(id, 2, {{"train/loss", 1.5}}).ok());
  ASSERT_TRUE(manager_->ReportFailure(id, "learner w-000001 lost", /*retryable=*/true).ok());
  ASSERT_TRUE(manager_->MarkScheduled(id, "placed again").ok());
  ASSERT_TRUE(manager_->ReportProgress(id, 2, {{"train/loss", 1.4}}).ok());
  ASSERT_TRUE(manager_->ReportProgress(id, 3, {{"train/loss", 1.1}, {"eval/loss", 1.3}}).ok());

  HttpResponse r = Get("/api/job?id=" + id, "alice-token-0123456789");
  ASSERT_EQ(r.status, 200) << r.body;
  json detail = json::parse(r.body);
  EXPECT_EQ(detail["job"]["state"], "JOB_STATE_RUNNING");
  EXPECT_EQ(detail["job"]["step"], 3);
  EXPECT_EQ(detail["job"]["attempt"], 2);
  EXPECT_EQ(detail["series"]["train/loss"], json::parse("[[1,2.0],[2,1.4],[3,1.1]]"));
  EXPECT_EQ(detail["series"]["reward/parts/format"], json::parse("[[1,0.5]]"));
  EXPECT_EQ(detail["series"]["eval/loss"], json::parse("[[3,1.3]]"));
  EXPECT_EQ(detail["downsampled"], false);
  // The events list the state changes and the failure, not the progress reports.
  std::vector<std::string> states;
  bool failure_listed = false;
  for (const json& e : detail["events"]) {
    states.push_back(e["state"]);
    failure_listed |= absl::StrContains(e["message"].get<std::string>(), "learner w-000001 lost");
  }
  EXPECT_TRUE(failure_listed) << detail["events"].dump();
  EXPECT_THAT(states, ::testing::Contains("JOB_STATE_RESTARTING"));
  EXPECT_LE(states.size(), 6u) << detail["events"].dump();
}

TEST_F(WebUiTest, LongSeriesAreThinnedKeepingTheLastStep) {
  WebUi::Options options;
  options.max_points = 10;
  Make(false, options);
  const std::string id = Submit(kAlice);
  ASSERT_TRUE(manager_->MarkScheduled(id, "placed").ok());
  for (int step = 1; step <= 95; ++step) {
    ASSERT_TRUE(manager_->ReportProgress(id, step, {{"train/loss", 100.0 - step}}).ok());
  }
  json detail = json::parse(Get("/api/job?id=" + id, "alice-token-0123456789").body);
  const json& points = detail["series"]["train/loss"];
  EXPECT_EQ(detail["downsampled"], true);
  EXPECT_GE(points.size(), 9u);
  EXPECT_LE(points.size(), 11u);
  EXPECT_EQ(points.front(), json::parse("[1,99.0]"));
  EXPECT_EQ(points.back(), json::parse("[95,5.0]"));
}

TEST_F(WebUiTest, WorkersShowRolesDevicesLeasesAndOnlyVisibleJobs) {
  const std::string id = Submit(kAlice);
  v1::WorkerInfo info;
  info.add_roles(v1::ROLE_LEARNER);
  info.add_roles(v1::ROLE_ROLLOUT);
  info.set_device(v1::DEVICE_KIND_CUDA);
  info.set_device_count(2);
  info.set_address("127.0.0.1:5000");
  auto w = workers_->Register(info);
  ASSERT_TRUE(w.ok()) << w.status();
  ASSERT_TRUE(workers_->Assign(w->info.worker_id(), id, v1::ROLE_LEARNER).ok());
  now_ms_ += 2500;

  json alice = json::parse(Get("/api/workers", "alice-token-0123456789").body);
  ASSERT_EQ(alice["workers"].size(), 1u);
  const json& row = alice["workers"][0];
  EXPECT_EQ(row["id"], w->info.worker_id());
  EXPECT_EQ(row["roles"], json::parse(R"(["ROLE_LEARNER","ROLE_ROLLOUT"])"));
  EXPECT_EQ(row["device"], "DEVICE_KIND_CUDA");
  EXPECT_EQ(row["deviceCount"], 2);
  EXPECT_EQ(row["address"], "127.0.0.1:5000");
  EXPECT_DOUBLE_EQ(row["leaseRemainingS"].get<double>(), 7.5);
  EXPECT_EQ(row["job"], id);
  EXPECT_EQ(row["assignedRole"], "ROLE_LEARNER");
  EXPECT_EQ(json::parse(Get("/api/workers", "bob-token-012345678901").body)["workers"][0]["job"], "(another user's)");
  EXPECT_EQ(json::parse(Get("/api/workers", "admin-token-0123456789").body)["workers"][0]["job"], id);
}

TEST_F(WebUiTest, ACoordinatorWithoutTokensIsOpenButOnlyOnLoopback) {
  Make(/*open=*/true, {});
  json me = json::parse(Get("/api/me", "").body);
  EXPECT_EQ(me["role"], "admin");
  EXPECT_EQ(me["session"], false);
  // A stale cookie does not lock anyone out of an open coordinator.
  EXPECT_EQ(Get("/api/jobs", "", "stale-session").status, 200);
  auto refused = web_->Serve("0.0.0.0:0");
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(refused.status().message(), HasSubstr("--auth-tokens"));
}

TEST_F(WebUiTest, OverLoopbackHttpAFormSignInGivesACookieThatReadsTheApi) {
  const std::string id = Submit(kAlice);
  auto server = web_->Serve("127.0.0.1:0");
  ASSERT_TRUE(server.ok()) << server.status();
  httplib::Client client("127.0.0.1", (*server)->port());
  client.set_connection_timeout(10, 0);
  client.set_read_timeout(10, 0);

  auto page = client.Get("/");
  ASSERT_TRUE(page) << httplib::to_string(page.error());
  EXPECT_EQ(page->status, 200);
  auto denied = client.Get("/api/jobs");
  ASSERT_TRUE(denied);
  EXPECT_EQ(denied->status, 401);

  // A token with characters that a form must escape is decoded before it is checked.
  auto in = client.Post("/login", "token=alice%2Dtoken-0123456789", "application/x-www-form-urlencoded");
  ASSERT_TRUE(in);
  EXPECT_EQ(in->status, 303);
  const std::string cookie = in->get_header_value("Set-Cookie");
  ASSERT_THAT(cookie, StartsWith("alignd_session="));
  auto jobs = client.Get("/api/jobs", {{"Cookie", cookie.substr(0, cookie.find(';'))}});
  ASSERT_TRUE(jobs);
  ASSERT_EQ(jobs->status, 200) << jobs->body;
  EXPECT_EQ(json::parse(jobs->body)["jobs"][0]["id"], id);
  auto bearer = client.Get("/api/job?id=" + id, {{"Authorization", "Bearer alice-token-0123456789"}});
  ASSERT_TRUE(bearer);
  EXPECT_EQ(bearer->status, 200);
}

TEST(ParseFormTest, DecodesFieldsAndEscapes) {
  auto fields = ParseForm("a=1&b=x+y&c=%41%2f&d&e=%zz&a=2");
  EXPECT_EQ(fields["a"], "2");
  EXPECT_EQ(fields["b"], "x y");
  EXPECT_EQ(fields["c"], "A/");
  EXPECT_EQ(fields["d"], "");
  EXPECT_EQ(fields["e"], "%zz");
}

}  // namespace
}  // namespace alignd::coordinator
