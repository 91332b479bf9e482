#include "learner/metrics_log.h"

#include <filesystem>
#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "common/base/file_util.h"
#include "common/metrics/tfevents.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace alignd::learner {
namespace {

namespace fs = std::filesystem;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

class MetricsLogTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = ::testing::TempDir() + "/metrics_log_" + ::testing::UnitTest::GetInstance()->current_test_info()->name();
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }

  // Opens the log as a run fresh (resumed_from 0) or resumed from a checkpoint, and writes `steps` with a loss each.
  void OpenAndWrite(int64_t resumed_from, std::vector<int64_t> steps) {
    MetricsLog::Options o;
    o.dir = dir_;
    o.resumed_from = resumed_from;
    auto log = MetricsLog::Open(o);
    ASSERT_TRUE(log.ok()) << log.status();
    for (int64_t step : steps) {
      ASSERT_TRUE((*log)->Write(step, {{"train/loss", static_cast<double>(step) / 2}}).ok());
    }
  }

  std::vector<std::string> Lines() {
    auto text = ReadFile(dir_ + "/metrics.jsonl");
    EXPECT_TRUE(text.ok()) << text.status();
    return absl::StrSplit(text.value_or(""), '\n', absl::SkipEmpty());
  }

  int EventsFiles() {
    int n = 0;
    for (const auto& e : fs::directory_iterator(dir_ + "/tb")) n += IsEventsFileName(e.path().filename().string());
    return n;
  }

  std::string dir_;
};

TEST_F(MetricsLogTest, WritesOneJsonLinePerStepAndAnEventsFile) {
  OpenAndWrite(0, {1, 2});
  EXPECT_THAT(Lines(), ElementsAre(R"({"step":1,"train/loss":0.5})", R"({"step":2,"train/loss":1.0})"));
  EXPECT_EQ(EventsFiles(), 1);
}

TEST_F(MetricsLogTest, AFreshRunStartsBothAnew) {
  OpenAndWrite(0, {1, 2, 3});
  OpenAndWrite(0, {1});
  EXPECT_THAT(Lines(), ElementsAre(R"({"step":1,"train/loss":0.5})"));
  EXPECT_EQ(EventsFiles(), 1);
}

TEST_F(MetricsLogTest, AResumedRunDropsTheLinesAfterItsCheckpointAndAppends) {
  OpenAndWrite(0, {1, 2, 3, 4});
  OpenAndWrite(2, {3});
  EXPECT_THAT(Lines(), ElementsAre(R"({"step":1,"train/loss":0.5})", R"({"step":2,"train/loss":1.0})",
                                   R"({"step":3,"train/loss":1.5})"));
  EXPECT_EQ(EventsFiles(), 2) << "a resumed run adds an events file whose START drops the later steps";
}

TEST_F(MetricsLogTest, AResumeKeepsLinesItDidNotWriteAndDropsUnparsableOnes) {
  ASSERT_TRUE(WriteFileAtomic(dir_ + "/metrics.jsonl",
                              "{\"step\":1}\n{\"note\":\"by hand\"}\n{\"step\":\"9\"}\nnot json\n{\"step\":5}\n")
                  .ok());
  OpenAndWrite(3, {});
  EXPECT_THAT(Lines(), ElementsAre(R"({"step":1})", R"({"note":"by hand"})", R"({"step":"9"})"));
}

TEST_F(MetricsLogTest, AResumeWithoutAFileStartsOne) {
  OpenAndWrite(5, {6});
  EXPECT_THAT(Lines(), ElementsAre(R"({"step":6,"train/loss":3.0})"));
}

TEST_F(MetricsLogTest, NoDirIsInvalidArgument) {
  EXPECT_EQ(MetricsLog::Open({}).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(MetricsLogTest, AnUnwritableFileIsInternalNamingIt) {
  fs::create_directories(dir_ + "/metrics.jsonl");  // a folder where the file should be
  MetricsLog::Options o;
  o.dir = dir_;
  auto log = MetricsLog::Open(o);
  EXPECT_EQ(log.status().code(), absl::StatusCode::kInternal);
  EXPECT_THAT(log.status().message(), HasSubstr("metrics.jsonl"));
}

}  // namespace
}  // namespace alignd::learner
