#include "reward/reward_core.h"

#include <functional>
#include <thread>
#include <utility>

#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace alignd::reward {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

// Scores each item with the length of its response and records the size of every batch it is given. When `gate` is
// set, a call announces itself on `entered` and waits for the gate before scoring.
class FakeScorer : public Scorer {
 public:
  absl::StatusOr<std::vector<std::optional<double>>> ScoreBatch(const std::vector<ScoreInput>& inputs) override {
    batch_sizes.push_back(static_cast<int64_t>(inputs.size()));
    if (gate != nullptr) {
      if (!entered.HasBeenNotified()) entered.Notify();
      gate->WaitForNotification();
    }
    if (!error.ok()) return error;
    std::vector<std::optional<double>> out;
    for (const ScoreInput& in : inputs) out.push_back(static_cast<double>(in.response.size()));
    return out;
  }
  std::vector<int64_t> batch_sizes;
  absl::Notification* gate = nullptr;
  absl::Notification entered;
  absl::Status error;
};

class ConstScorer : public Scorer {
 public:
  explicit ConstScorer(double v) : v_(v) {}
  absl::StatusOr<std::vector<std::optional<double>>> ScoreBatch(const std::vector<ScoreInput>& inputs) override {
    return std::vector<std::optional<double>>(inputs.size(), v_);
  }

 private:
  double v_;
};

std::vector<ScoreInput> Items(std::vector<std::string> responses) {
  std::vector<ScoreInput> items;
  for (std::string& r : responses) items.push_back(ScoreInput{"prompt", std::move(r), {}});
  return items;
}

absl::Time Soon() { return absl::Now() + absl::Seconds(30); }

class RewardCoreTest : public ::testing::Test {
 protected:
  // A core with the fake (weight 2) and a constant scorer (weight -1, value 0.5).
  std::unique_ptr<RewardCore> MakeCore(const std::function<void(RewardCore::Options&)>& edit = nullptr) {
    RewardCore::Options options;
    auto fake = std::make_unique<FakeScorer>();
    fake_ = fake.get();
    options.scorers.push_back(WeightedScorer{"len", 2.0, std::move(fake)});
    options.scorers.push_back(WeightedScorer{"const", -1.0, std::make_unique<ConstScorer>(0.5)});
    if (edit) edit(options);
    auto core = RewardCore::Create(std::move(options));
    EXPECT_TRUE(core.ok()) << core.status();
    return core.ok() ? std::move(core).value() : nullptr;
  }
  FakeScorer* fake_ = nullptr;
};

TEST_F(RewardCoreTest, WeightedSumWithEachPartReported) {
  auto core = MakeCore();
  auto results = core->Score(Items({"abc", ""}), Soon());
  ASSERT_TRUE(results.ok()) << results.status();
  ASSERT_EQ(results->size(), 2u);
  EXPECT_DOUBLE_EQ((*results)[0].total, 2.0 * 3 - 0.5);
  EXPECT_DOUBLE_EQ((*results)[0].parts.at("len"), 3);
  EXPECT_DOUBLE_EQ((*results)[0].parts.at("const"), 0.5);
  EXPECT_DOUBLE_EQ((*results)[1].total, -0.5);
  EXPECT_THAT(core->part_names(), ElementsAre("len", "const"));
}

TEST_F(RewardCoreTest, QueuedRequestsAreGroupedIntoOneScorerCall) {
  absl::Notification gate;
  auto core = MakeCore([](RewardCore::Options& o) { o.max_batch_items = 5; });
  fake_->gate = &gate;
  std::thread first([&] { EXPECT_TRUE(core->Score(Items({"a"}), Soon()).ok()); });
  fake_->entered.WaitForNotification();  // the first request is being scored; the next ones queue up
  absl::StatusOr<std::vector<ScoreResult>> second, third, fourth;
  std::thread t2([&] { second = core->Score(Items({"bb", "bb"}), Soon()); });
  core->AwaitQueued(1);
  std::thread t3([&] { third = core->Score(Items({"ccc", "ccc"}), Soon()); });
  core->AwaitQueued(2);
  std::thread t4([&] { fourth = core->Score(Items({"dddd", "dddd"}), Soon()); });
  core->AwaitQueued(3);
  gate.Notify();
  first.join();
  t2.join();
  t3.join();
  t4.join();
  // 1 alone; then 2 + 2 items fit into 5; the last 2 would make 6.
  EXPECT_THAT(fake_->batch_sizes, ElementsAre(1, 4, 2));
  ASSERT_TRUE(second.ok() && third.ok() && fourth.ok());
  EXPECT_DOUBLE_EQ((*second)[1].parts.at("len"), 2);
  EXPECT_DOUBLE_EQ((*third)[0].parts.at("len"), 3);
  EXPECT_DOUBLE_EQ((*fourth)[1].parts.at("len"), 4);
}

// --- Errors ---

TEST_F(RewardCoreTest, EmptyBatchIsInvalidArgument) {
  auto core = MakeCore();
  auto r = core->Score({}, Soon());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(r.status().message(), HasSubstr("empty batch"));
}

TEST_F(RewardCoreTest, OversizedRequestIsInvalidArgument) {
  auto core = MakeCore([](RewardCore::Options& o) { o.max_request_items = 2; });
  EXPECT_TRUE(core->Score(Items({"a", "b"}), Soon()).ok());
  auto r = core->Score(Items({"a", "b", "c"}), Soon());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(r.status().message(), HasSubstr("split the batch"));
}

TEST_F(RewardCoreTest, PastDeadlineIsDeadlineExceeded) {
  auto core = MakeCore();
  EXPECT_EQ(core->Score(Items({"a"}), absl::Now() - absl::Seconds(1)).status().code(),
            absl::StatusCode::kDeadlineExceeded);
}

TEST_F(RewardCoreTest, DeadlinePassingWhileScoringIsDeadlineExceeded) {
  absl::Notification gate;
  auto core = MakeCore();
  fake_->gate = &gate;
  auto r = core->Score(Items({"a"}), absl::Now() + absl::Milliseconds(50));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDeadlineExceeded);
  gate.Notify();
}

TEST_F(RewardCoreTest, FullQueueIsResourceExhausted) {
  absl::Notification gate;
  auto core = MakeCore([](RewardCore::Options& o) { o.max_queued_requests = 1; });
  fake_->gate = &gate;
  std::thread first([&] { EXPECT_TRUE(core->Score(Items({"a"}), Soon()).ok()); });
  fake_->entered.WaitForNotification();
  std::thread second([&] { EXPECT_TRUE(core->Score(Items({"b"}), Soon()).ok()); });
  core->AwaitQueued(1);
  auto r = core->Score(Items({"c"}), Soon());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kResourceExhausted);
  gate.Notify();
  first.join();
  second.join();
}

TEST_F(RewardCoreTest, ScorerErrorNamesTheScorer) {
  auto core = MakeCore();
  fake_->error = absl::InternalError("boom");
  auto r = core->Score(Items({"a"}), Soon());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInternal);
  EXPECT_THAT(r.status().message(), HasSubstr("\"len\""));
}

TEST(RewardCoreCreateTest, RejectsBadOptions) {
  RewardCore::Options none;
  EXPECT_EQ(RewardCore::Create(std::move(none)).status().code(), absl::StatusCode::kInvalidArgument);
  RewardCore::Options dup;
  dup.scorers.push_back(WeightedScorer{"a", 1, std::make_unique<ConstScorer>(1)});
  dup.scorers.push_back(WeightedScorer{"a", 1, std::make_unique<ConstScorer>(1)});
  EXPECT_EQ(RewardCore::Create(std::move(dup)).status().code(), absl::StatusCode::kInvalidArgument);
  RewardCore::Options queue;
  queue.scorers.push_back(WeightedScorer{"a", 1, std::make_unique<ConstScorer>(1)});
  queue.max_queued_requests = 0;
  EXPECT_EQ(RewardCore::Create(std::move(queue)).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace alignd::reward
