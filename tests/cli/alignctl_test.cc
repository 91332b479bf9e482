// `alignd coordinator` and alignctl's job commands, in-process: the server runs ServeCoordinator on a thread
// (127.0.0.1:0, SQLite, a tokens file) and every alignctl command is called as a function.
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <future>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "cli/coordinator_command.h"
#include "coordinator/job_manager.h"
#include "coordinator/sqlite_job_store.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/cli/cli_runner.h"

namespace alignd::cli {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

constexpr char kAliceToken[] = "alice-token-0123456789";
constexpr char kBobToken[] = "bob-token-0123456789ab";

constexpr char kSpec[] = R"(name: tiny
algorithm: sft
data:
  train: data/toy/sft_train.jsonl
resources:
  learners: 2
)";

// One coordinator, served on a thread until Stop().
class Coordinator {
 public:
  explicit Coordinator(const std::string& dir) {
    std::ofstream(dir + "/tokens") << kAliceToken << " alice user\n" << kBobToken << " bob user\n";
    std::promise<int> port;
    thread_ = std::thread([this, dir, &port] {
      code_ = ServeCoordinator(
          {"--listen=127.0.0.1:0", "--db=" + dir + "/jobs.db", "--auth-tokens=" + dir + "/tokens"}, out_, err_,
          [&port](int p) { port.set_value(p); }, &stop_);
    });
    port_ = port.get_future().get();
  }
  ~Coordinator() { Stop(); }
  int Stop() {
    if (thread_.joinable()) {
      stop_.Notify();
      thread_.join();
    }
    return code_;
  }
  std::string address() const { return absl::StrCat("127.0.0.1:", port_); }

 private:
  absl::Notification stop_;
  std::ostringstream out_, err_;
  std::thread thread_;
  int port_ = 0;
  int code_ = -1;
};

class AlignctlTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = ::testing::TempDir() + "/" + ::testing::UnitTest::GetInstance()->current_test_info()->name();
    std::filesystem::create_directories(dir_);
    spec_ = dir_ + "/job.yaml";
    std::ofstream(spec_) << kSpec;
    coordinator_ = std::make_unique<Coordinator>(dir_);
  }

  // Runs `command` against the coordinator as `token`.
  Outcome As(const char* token, int (*command)(const Args&, std::ostream&, std::ostream&), Args args) {
    args.push_back("--coordinator=" + coordinator_->address());
    args.push_back(std::string("--token=") + token);
    args.push_back("--timeout=10");
    return Call(command, args);
  }

  std::string Submit() {
    Outcome o = As(kAliceToken, RunSubmit, {spec_});
    EXPECT_EQ(o.code, 0) << o.err;
    return o.out.substr(0, o.out.find('\n'));
  }

  // Stops the coordinator, stores `steps` as job `id`'s progress events (step 1, 2, ...) in its database, as its
  // workers' reports would, and starts it again.
  void RecordProgress(const std::string& id, const std::vector<std::map<std::string, double>>& steps) {
    ASSERT_EQ(coordinator_->Stop(), 0);
    {
      auto store = coordinator::SqliteJobStore::Open(dir_ + "/jobs.db");
      ASSERT_TRUE(store.ok()) << store.status();
      auto jobs = coordinator::JobManager::Create(store->get(), {});
      ASSERT_TRUE(jobs.ok()) << jobs.status();
      ASSERT_TRUE((*jobs)->MarkScheduled(id, "placed by the test").ok());
      for (size_t i = 0; i < steps.size(); ++i) ASSERT_TRUE((*jobs)->ReportProgress(id, i + 1, steps[i]).ok());
    }
    coordinator_ = std::make_unique<Coordinator>(dir_);
  }

  std::string dir_, spec_;
  std::unique_ptr<Coordinator> coordinator_;
};

TEST_F(AlignctlTest, SubmitPrintsTheJobIdAloneOnTheFirstLine) {
  Outcome o = As(kAliceToken, RunSubmit, {spec_, "--request_id=r1"});
  ASSERT_EQ(o.code, 0) << o.err;
  EXPECT_THAT(o.out, StartsWith("job-000001\nPENDING: waiting for resources: learners (cpu): need 2, 0 free"));
  // The same request id returns the same job.
  EXPECT_THAT(As(kAliceToken, RunSubmit, {spec_, "--request_id=r1"}).out, StartsWith("job-000001\n"));
}

TEST_F(AlignctlTest, StatusListCancelInTextAndJson) {
  const std::string id = Submit();
  Outcome status = As(kAliceToken, RunStatus, {id, "--output=json"});
  ASSERT_EQ(status.code, 0) << status.err;
  auto json = nlohmann::json::parse(status.out);
  EXPECT_EQ(json["id"], id);
  EXPECT_EQ(json["state"], "PENDING");
  EXPECT_EQ(json["name"], "tiny");
  EXPECT_EQ(json["attempt"], 0);
  EXPECT_EQ(json["resources"]["learners"], 2);
  EXPECT_THAT(As(kAliceToken, RunStatus, {id}).out, HasSubstr("state:     PENDING"));

  Outcome list = As(kAliceToken, RunList, {"--state=pending", "--output=json"});
  ASSERT_EQ(list.code, 0) << list.err;
  EXPECT_EQ(nlohmann::json::parse(list.out)["jobs"].size(), 1u);
  EXPECT_THAT(As(kAliceToken, RunList, {}).out, HasSubstr(id + "   PENDING"));

  Outcome cancel = As(kAliceToken, RunCancel, {id});
  ASSERT_EQ(cancel.code, 0) << cancel.err;
  EXPECT_EQ(cancel.out, id + " CANCELLED\n");
  EXPECT_EQ(nlohmann::json::parse(As(kAliceToken, RunList, {"--state=pending", "--output=json"}).out)["jobs"].size(),
            0u);
}

TEST_F(AlignctlTest, WatchPrintsEventsAndExitsThreeWhenTheJobDidNotSucceed) {
  const std::string id = Submit();
  ASSERT_EQ(As(kAliceToken, RunCancel, {id}).code, 0);
  Outcome watch = As(kAliceToken, RunWatch, {id, "--wait_timeout=30"});
  EXPECT_EQ(watch.code, 3) << watch.err;
  EXPECT_THAT(watch.out, HasSubstr("PENDING    attempt 0  submitted by alice\n"));
  EXPECT_THAT(watch.out, HasSubstr("CANCELLED  attempt 0  cancelled by alice\n"));
  EXPECT_EQ(watch.err, "job " + id + " ended CANCELLED\n");
  Outcome json = As(kAliceToken, RunWatch, {id, "--output=json"});
  EXPECT_EQ(json.code, 3);
  EXPECT_EQ(nlohmann::json::parse(json.out.substr(0, json.out.find('\n')))["state"], "PENDING");
}

TEST_F(AlignctlTest, LogsPrintsTheEventsSoFarAndFollowWaitsForTheEnd) {
  const std::string id = Submit();
  Outcome logs = As(kAliceToken, RunLogs, {id});  // a pending job: returns at once with what happened so far
  ASSERT_EQ(logs.code, 0) << logs.err;
  EXPECT_THAT(logs.out, HasSubstr("PENDING    attempt 0  submitted by alice\n"));
  EXPECT_THAT(logs.out, Not(HasSubstr("CANCELLED")));
  ASSERT_EQ(As(kAliceToken, RunCancel, {id}).code, 0);
  Outcome follow = As(kAliceToken, RunLogs, {id, "--follow"});
  EXPECT_EQ(follow.code, 3) << follow.err;
  EXPECT_THAT(follow.out, HasSubstr("CANCELLED  attempt 0  cancelled by alice\n"));
  EXPECT_EQ(As(kBobToken, RunLogs, {id}).code, 1);  // someone else's job
  EXPECT_EQ(As(kAliceToken, RunLogs, {}).code, 2);
}

TEST_F(AlignctlTest, LogsPlotChartsEachMetricOfTheProgressEvents) {
  const std::string id = Submit();
  std::vector<std::map<std::string, double>> steps;
  for (int s = 1; s <= 8; ++s) steps.push_back({{"train/loss", 3.0 - 0.25 * s}, {"reward/mean", 0.1 * s}});
  ASSERT_NO_FATAL_FAILURE(RecordProgress(id, steps));
  Outcome o =
      As(kAliceToken, RunLogs, {id, "--plot=train/loss, reward/mean,eval/loss", "--plot-width=20", "--plot-height=5"});
  ASSERT_EQ(o.code, 0) << o.err;
  // A falling loss starts on the top row, a rising reward ends there in the last column; eval metrics are not in
  // progress events.
  EXPECT_THAT(o.out, StartsWith("train/loss  steps 1..8  (8 points)\n2.75 |*\n"));
  EXPECT_THAT(o.out, HasSubstr("\nreward/mean  steps 1..8  (8 points)\n0.8 |" + std::string(19, ' ') + "*\n"));
  EXPECT_THAT(o.out, HasSubstr("\n     1" + std::string(18, ' ') + "8\n"));
  EXPECT_THAT(o.out, HasSubstr("\n\neval/loss: no points\n"));
  EXPECT_THAT(o.out, Not(HasSubstr("submitted by alice")));  // charts instead of the event list
}

TEST_F(AlignctlTest, WorkersListsNoneOnAFreshCoordinator) {
  Outcome text = As(kAliceToken, RunWorkers, {});
  ASSERT_EQ(text.code, 0) << text.err;
  EXPECT_THAT(text.out, StartsWith("ID "));
  Outcome json = As(kAliceToken, RunWorkers, {"--output=json"});
  ASSERT_EQ(json.code, 0) << json.err;
  EXPECT_EQ(nlohmann::json::parse(json.out)["workers"].size(), 0u);
}

TEST_F(AlignctlTest, EnvironmentVariablesGiveCoordinatorAndToken) {
  const std::string id = Submit();
  setenv("ALIGND_COORDINATOR", coordinator_->address().c_str(), 1);
  setenv("ALIGND_TOKEN", kAliceToken, 1);
  Outcome o = Call(RunStatus, {id, "--output=json"});
  unsetenv("ALIGND_COORDINATOR");
  unsetenv("ALIGND_TOKEN");
  ASSERT_EQ(o.code, 0) << o.err;
  EXPECT_EQ(nlohmann::json::parse(o.out)["state"], "PENDING");
}

// `alignctl ARGS...` as the binary runs it: global flags before the command as well as after it, either spelling.
TEST_F(AlignctlTest, GlobalFlagsGoBeforeOrAfterTheCommand) {
  const std::string id = Submit();
  const std::string coordinator = "--coordinator=" + coordinator_->address();
  const std::string token = std::string("--token=") + kAliceToken;
  Outcome before = Call(RunAlignctl, {coordinator, token, "--output=json", "list"});
  ASSERT_EQ(before.code, 0) << before.err;
  EXPECT_EQ(nlohmann::json::parse(before.out)["jobs"][0]["id"], id);
  Outcome after = Call(RunAlignctl, {"list", coordinator, token, "--output=json"});
  ASSERT_EQ(after.code, 0) << after.err;
  EXPECT_EQ(after.out, before.out);
  Outcome around = Call(RunAlignctl, {"--coordinator", coordinator_->address(), "status", id, token});
  ASSERT_EQ(around.code, 0) << around.err;
  EXPECT_THAT(around.out, HasSubstr("state:     PENDING"));
  Outcome underscores = Call(RunAlignctl, {"logs", id, coordinator, token, "--wait_timeout=30"});
  ASSERT_EQ(underscores.code, 0) << underscores.err;
  EXPECT_THAT(underscores.out, HasSubstr("submitted by alice"));
}

TEST_F(AlignctlTest, StatusShowsStepsOutOfTheSpecsTotal) {
  std::ofstream(spec_) << kSpec << "train:\n  steps: 40\n";
  const std::string id = Submit();
  Outcome json = As(kAliceToken, RunStatus, {id, "--output=json"});
  ASSERT_EQ(json.code, 0) << json.err;
  EXPECT_EQ(nlohmann::json::parse(json.out)["total_steps"], 40);
  EXPECT_EQ(nlohmann::json::parse(json.out)["step"], 0);
  EXPECT_THAT(As(kAliceToken, RunStatus, {id}).out, HasSubstr("progress:  step 0/40 ["));
}

TEST_F(AlignctlTest, JobsSurviveACoordinatorRestart) {
  const std::string id = Submit();
  ASSERT_EQ(coordinator_->Stop(), 0);
  coordinator_ = std::make_unique<Coordinator>(dir_);
  Outcome o = As(kAliceToken, RunStatus, {id, "--output=json"});
  ASSERT_EQ(o.code, 0) << o.err;
  EXPECT_EQ(nlohmann::json::parse(o.out)["id"], id);
  EXPECT_EQ(nlohmann::json::parse(o.out)["total_steps"], 100);  // kSpec leaves train.steps at its default
}

// Error paths: the status code and message, exit 1; usage errors exit 2.

TEST_F(AlignctlTest, ErrorsPrintTheStatusCodeAndMessage) {
  const std::string id = Submit();
  Outcome denied = As(kBobToken, RunCancel, {id});
  EXPECT_EQ(denied.code, 1);
  EXPECT_THAT(denied.err, StartsWith("error: PERMISSION_DENIED: "));
  Outcome missing = As(kAliceToken, RunStatus, {"job-999999"});
  EXPECT_EQ(missing.code, 1);
  EXPECT_THAT(missing.err, StartsWith("error: NOT_FOUND: "));
  ASSERT_EQ(As(kAliceToken, RunCancel, {id}).code, 0);
  Outcome again = As(kAliceToken, RunCancel, {id});
  EXPECT_EQ(again.code, 1);
  EXPECT_THAT(again.err, StartsWith("error: FAILED_PRECONDITION: "));
  Outcome anonymous = As("", RunList, {});
  EXPECT_EQ(anonymous.code, 1);
  EXPECT_THAT(anonymous.err, StartsWith("error: UNAUTHENTICATED: "));
}

TEST_F(AlignctlTest, InvalidSpecNamesTheField) {
  std::ofstream(spec_) << "name: bad\ndata:\n  train: t.jsonl\nresources:\n  learners: -1\n";
  Outcome o = As(kAliceToken, RunSubmit, {spec_});
  EXPECT_EQ(o.code, 1);
  EXPECT_THAT(o.err, StartsWith("error: INVALID_ARGUMENT: spec:5: resources.learners"));
  EXPECT_EQ(o.out, "");
}

TEST_F(AlignctlTest, TokenIsNotSentInPlaintextToARemoteAddress) {
  Outcome o = Call(RunList, {"--coordinator=coordinator.example.com:7070", std::string("--token=") + kAliceToken});
  EXPECT_EQ(o.code, 1);
  EXPECT_THAT(o.err, StartsWith("error: FAILED_PRECONDITION: refusing to send a token"));
}

TEST_F(AlignctlTest, UsageErrorsExitTwo) {
  EXPECT_EQ(Call(RunStatus, {}).code, 2);
  EXPECT_EQ(Call(RunSubmit, {"a.yaml", "b.yaml"}).code, 2);
  EXPECT_EQ(Call(RunList, {"--state=sleeping"}).code, 2);
  EXPECT_EQ(Call(RunList, {"--output=xml"}).code, 2);
  EXPECT_EQ(Call(RunCoordinator, {"--listen=127.0.0.1:0"}).code, 2);  // no --db
  Outcome unknown = Call(RunAlignctl, {"--coordinator=127.0.0.1:1", "lst"});
  EXPECT_EQ(unknown.code, 2);
  EXPECT_THAT(unknown.err, StartsWith("alignctl: unknown command \"lst\"\n"));
  EXPECT_EQ(Call(RunLogs, {"job-000001", "--plot=train/loss", "--follow"}).code, 2);
  EXPECT_EQ(Call(RunLogs, {"job-000001", "--plot=train/loss", "--output=json"}).code, 2);
  EXPECT_EQ(Call(RunLogs, {"job-000001", "--plot=,"}).code, 2);
  Outcome narrow = Call(RunLogs, {"job-000001", "--plot=train/loss", "--plot-width=3"});
  EXPECT_EQ(narrow.code, 2);
  EXPECT_THAT(narrow.err, HasSubstr("--plot-width must be in 10..500"));
  Outcome no_file = As(kAliceToken, RunSubmit, {dir_ + "/missing.yaml"});
  EXPECT_EQ(no_file.code, 1);
  EXPECT_THAT(no_file.err, StartsWith("error: NOT_FOUND: "));
}

}  // namespace
}  // namespace alignd::cli
