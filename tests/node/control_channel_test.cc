#include "node/control_channel.h"

#include <gtest/gtest.h>

#include <deque>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "tests/node/fake_clock.h"

namespace alignd::node {
namespace {

constexpr absl::Duration kRealBound = absl::Seconds(10);  // how long a broken test waits before failing

// One Control stream, scripted by the test: Push delivers a coordinator message, Break makes reads end and writes
// fail (a connection reset).
class FakeStream final : public ControlStream {
 public:
  bool Read(v1::CoordinatorMessage* message) override {
    absl::MutexLock lock(&mu_);
    auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return ended_ || !inbox_.empty(); };
    mu_.Await(absl::Condition(&ready));
    if (inbox_.empty()) return false;
    *message = std::move(inbox_.front());
    inbox_.pop_front();
    return true;
  }
  bool Write(const v1::WorkerMessage& message) override {
    absl::MutexLock lock(&mu_);
    if (ended_) return false;
    written_.push_back(message);
    return true;
  }
  void Cancel() override {
    absl::MutexLock lock(&mu_);
    ended_ = true;
  }
  absl::Status Finish() override { return absl::OkStatus(); }

  void Push(v1::CoordinatorMessage message) {
    absl::MutexLock lock(&mu_);
    inbox_.push_back(std::move(message));
  }
  void Break() { Cancel(); }
  // The messages written, once there are at least `n` (fewer if that takes longer than kRealBound).
  std::vector<v1::WorkerMessage> Written(size_t n) {
    absl::MutexLock lock(&mu_);
    auto enough = [this, n]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return written_.size() >= n; };
    mu_.AwaitWithTimeout(absl::Condition(&enough), kRealBound);
    return written_;
  }

 private:
  absl::Mutex mu_;
  bool ended_ ABSL_GUARDED_BY(mu_) = false;
  std::deque<v1::CoordinatorMessage> inbox_ ABSL_GUARDED_BY(mu_);
  std::vector<v1::WorkerMessage> written_ ABSL_GUARDED_BY(mu_);
};

// Answers Register from a script (then OK as "w-<n>" with lease "lease-<n>"), and records the clock's time of each
// call; every stream it opens stays reachable through Stream(i).
class FakeStub final : public ControlStub {
 public:
  explicit FakeStub(Clock* clock) : clock_(clock) {}

  absl::StatusOr<v1::RegisterWorkerResponse> Register(const v1::RegisterWorkerRequest& request) override {
    absl::MutexLock lock(&mu_);
    requests_.push_back(request);
    times_.push_back(clock_->Now());
    if (!failures_.empty()) {
      absl::Status s = failures_.front();
      failures_.pop_front();
      return s;
    }
    ++registrations_;
    v1::RegisterWorkerResponse response;
    response.set_worker_id("w-" + std::to_string(registrations_));
    response.set_lease_id("lease-" + std::to_string(registrations_));
    response.set_credential_key("key-" + std::to_string(registrations_));
    return response;
  }
  std::unique_ptr<ControlStream> OpenControl() override {
    auto stream = std::make_shared<FakeStream>();
    absl::MutexLock lock(&mu_);
    streams_.push_back(stream);
    return std::make_unique<Handle>(stream);
  }

  void FailNextRegistrations(int n, absl::Status status) {
    absl::MutexLock lock(&mu_);
    for (int i = 0; i < n; ++i) failures_.push_back(status);
  }
  // Stream i (0-based), once opened; null if it is not within kRealBound.
  std::shared_ptr<FakeStream> Stream(size_t i) {
    absl::MutexLock lock(&mu_);
    auto opened = [this, i]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return streams_.size() > i; };
    if (!mu_.AwaitWithTimeout(absl::Condition(&opened), kRealBound)) return nullptr;
    return streams_[i];
  }
  std::vector<absl::Time> register_times() {
    absl::MutexLock lock(&mu_);
    return times_;
  }
  std::vector<v1::RegisterWorkerRequest> requests() {
    absl::MutexLock lock(&mu_);
    return requests_;
  }

 private:
  // The channel owns its stream; the test keeps the shared state.
  class Handle final : public ControlStream {
   public:
    explicit Handle(std::shared_ptr<FakeStream> s) : s_(std::move(s)) {}
    bool Read(v1::CoordinatorMessage* m) override { return s_->Read(m); }
    bool Write(const v1::WorkerMessage& m) override { return s_->Write(m); }
    void Cancel() override { s_->Cancel(); }
    absl::Status Finish() override { return s_->Finish(); }

   private:
    std::shared_ptr<FakeStream> s_;
  };

  Clock* clock_;
  absl::Mutex mu_;
  std::deque<absl::Status> failures_ ABSL_GUARDED_BY(mu_);
  int registrations_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<v1::RegisterWorkerRequest> requests_ ABSL_GUARDED_BY(mu_);
  std::vector<absl::Time> times_ ABSL_GUARDED_BY(mu_);
  std::vector<std::shared_ptr<FakeStream>> streams_ ABSL_GUARDED_BY(mu_);
};

// What the callbacks saw.
struct Seen {
  absl::Mutex mu;
  std::vector<std::string> events ABSL_GUARDED_BY(mu);  // "registered w-1 key-1", "assignment job-a", ...
  std::vector<std::string> Wait(size_t n) {
    absl::MutexLock lock(&mu);
    auto enough = [this, n]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) { return events.size() >= n; };
    mu.AwaitWithTimeout(absl::Condition(&enough), kRealBound);
    return events;
  }
  void Add(std::string e) {
    absl::MutexLock lock(&mu);
    events.push_back(std::move(e));
  }
};

class ControlChannelTest : public ::testing::Test {
 protected:
  ControlChannelTest() : clock_(std::make_shared<FakeClock>()), stub_(std::make_shared<FakeStub>(clock_.get())) {
    options_.name = "test-node";
    options_.worker.set_address("127.0.0.1:9999");
    options_.worker.add_roles(v1::ROLE_ROLLOUT);
    options_.heartbeat = absl::Milliseconds(500);
    options_.register_backoff = absl::Seconds(1);
    options_.max_register_backoff = absl::Seconds(4);
    options_.reconnect_delay = absl::Milliseconds(200);
  }

  void Start() {
    ControlChannel::Callbacks cb;
    cb.on_registered = [this](const std::string& id, const std::string& key) {
      seen_.Add("registered " + id + " " + key);
    };
    cb.on_assignment = [this](const v1::Assignment& a) { seen_.Add("assignment " + a.job_id()); };
    cb.on_cancel = [this](const std::string& job) { seen_.Add("cancel " + job); };
    cb.on_lease_lost = [this] { seen_.Add("lease lost"); };
    auto channel = ControlChannel::Create(stub_, clock_, options_, std::move(cb));
    ASSERT_TRUE(channel.ok()) << channel.status();
    channel_ = *std::move(channel);
    channel_->Start();
  }

  static int64_t Ms(absl::Time t) { return absl::ToUnixMillis(t); }

  std::shared_ptr<FakeClock> clock_;
  std::shared_ptr<FakeStub> stub_;
  ControlChannel::Options options_;
  Seen seen_;
  std::unique_ptr<ControlChannel> channel_;
};

TEST_F(ControlChannelTest, RegistersThenHeartbeatsUnderTheLease) {
  const absl::Time t0 = clock_->Now();
  Start();
  std::shared_ptr<FakeStream> stream = stub_->Stream(0);
  ASSERT_NE(stream, nullptr);
  std::vector<v1::WorkerMessage> written = stream->Written(1);
  ASSERT_EQ(written.size(), 1u);
  EXPECT_TRUE(written[0].has_heartbeat());
  EXPECT_EQ(written[0].lease_id(), "lease-1");
  EXPECT_EQ(written[0].heartbeat().unix_ms(), Ms(t0));
  ASSERT_EQ(stub_->requests().size(), 1u);
  EXPECT_EQ(stub_->requests()[0].worker().address(), "127.0.0.1:9999");
  EXPECT_EQ(seen_.Wait(1), std::vector<std::string>{"registered w-1 key-1"});
  EXPECT_EQ(channel_->worker_id(), "w-1");
}

TEST_F(ControlChannelTest, HeartbeatsAtThePeriodOfTheClock) {
  const absl::Time t0 = clock_->Now();
  Start();
  std::shared_ptr<FakeStream> stream = stub_->Stream(0);
  ASSERT_NE(stream, nullptr);
  ASSERT_EQ(stream->Written(1).size(), 1u);
  for (int beat = 1; beat <= 3; ++beat) {
    ASSERT_TRUE(clock_->WaitForWaiters(1));
    EXPECT_EQ(clock_->NextDeadline(), clock_->Now() + absl::Milliseconds(500));
    clock_->Advance(absl::Milliseconds(250));  // half a period: nothing is due
    clock_->Advance(absl::Milliseconds(250));
    std::vector<v1::WorkerMessage> written = stream->Written(beat + 1);
    ASSERT_EQ(written.size(), static_cast<size_t>(beat + 1));
    EXPECT_TRUE(written.back().has_heartbeat());
    // Stamped when it was due, not at the half period.
    EXPECT_EQ(written.back().heartbeat().unix_ms(), Ms(t0 + beat * absl::Milliseconds(500)));
  }
}

TEST_F(ControlChannelTest, SentMessagesGoOutWithoutWaitingForTheHeartbeat) {
  Start();
  std::shared_ptr<FakeStream> stream = stub_->Stream(0);
  ASSERT_NE(stream, nullptr);
  ASSERT_EQ(stream->Written(1).size(), 1u);
  ASSERT_TRUE(clock_->WaitForWaiters(1));
  v1::WorkerMessage progress;
  progress.mutable_progress()->set_job_id("job-a");
  progress.mutable_progress()->set_step(7);
  channel_->Send(progress);
  std::vector<v1::WorkerMessage> written = stream->Written(2);  // the clock has not moved
  ASSERT_EQ(written.size(), 2u);
  EXPECT_EQ(written[1].progress().job_id(), "job-a");
  EXPECT_EQ(written[1].progress().step(), 7u);
  EXPECT_EQ(written[1].lease_id(), "lease-1");
}

TEST_F(ControlChannelTest, RetriesRegistrationWithDoublingBackoff) {
  const absl::Time t0 = clock_->Now();
  stub_->FailNextRegistrations(4, absl::UnavailableError("coordinator down"));
  Start();
  // 1 s, 2 s, 4 s, then the 4 s cap.
  for (absl::Duration backoff : {absl::Seconds(1), absl::Seconds(2), absl::Seconds(4), absl::Seconds(4)}) {
    ASSERT_TRUE(clock_->WaitForWaiters(1));
    EXPECT_EQ(clock_->NextDeadline(), clock_->Now() + backoff);
    clock_->Advance(backoff);
  }
  ASSERT_NE(stub_->Stream(0), nullptr);
  EXPECT_EQ(stub_->register_times(), (std::vector<absl::Time>{t0, t0 + absl::Seconds(1), t0 + absl::Seconds(3),
                                                              t0 + absl::Seconds(7), t0 + absl::Seconds(11)}));
  EXPECT_EQ(seen_.Wait(1), std::vector<std::string>{"registered w-1 key-1"});
}

TEST_F(ControlChannelTest, DeliversAssignmentsAndCancels) {
  Start();
  std::shared_ptr<FakeStream> stream = stub_->Stream(0);
  ASSERT_NE(stream, nullptr);
  v1::CoordinatorMessage assign;
  assign.mutable_assignment()->set_job_id("job-a");
  stream->Push(assign);
  v1::CoordinatorMessage cancel;
  cancel.set_cancel_job_id("job-a");
  stream->Push(cancel);
  EXPECT_EQ(seen_.Wait(3), (std::vector<std::string>{"registered w-1 key-1", "assignment job-a", "cancel job-a"}));
}

TEST_F(ControlChannelTest, ReconnectsAfterABrokenStreamAndResendsWhatWasNotWritten) {
  Start();
  std::shared_ptr<FakeStream> first = stub_->Stream(0);
  ASSERT_NE(first, nullptr);
  ASSERT_EQ(first->Written(1).size(), 1u);
  ASSERT_TRUE(clock_->WaitForWaiters(1));
  first->Break();
  v1::WorkerMessage result;
  result.mutable_result()->set_job_id("job-a");
  result.mutable_result()->set_retryable(true);
  channel_->Send(result);  // its write fails on the broken stream
  EXPECT_EQ(seen_.Wait(2), (std::vector<std::string>{"registered w-1 key-1", "lease lost"}));
  ASSERT_TRUE(clock_->WaitForWaiters(1));
  EXPECT_EQ(clock_->NextDeadline(), clock_->Now() + absl::Milliseconds(200));
  clock_->Advance(absl::Milliseconds(200));
  std::shared_ptr<FakeStream> second = stub_->Stream(1);
  ASSERT_NE(second, nullptr);
  std::vector<v1::WorkerMessage> written = second->Written(1);
  ASSERT_GE(written.size(), 1u);
  EXPECT_EQ(written[0].result().job_id(), "job-a");
  EXPECT_EQ(written[0].lease_id(), "lease-2");  // under the new lease
  EXPECT_EQ(channel_->worker_id(), "w-2");
  EXPECT_EQ(first->Written(1).size(), 1u);  // the first stream got the heartbeat only
}

TEST_F(ControlChannelTest, AStaleLeaseMessageRegistersAgain) {
  Start();
  std::shared_ptr<FakeStream> first = stub_->Stream(0);
  ASSERT_NE(first, nullptr);
  v1::CoordinatorMessage stale;
  stale.set_stale_lease("lease-1");
  first->Push(stale);
  EXPECT_EQ(seen_.Wait(2), (std::vector<std::string>{"registered w-1 key-1", "lease lost"}));
  ASSERT_TRUE(clock_->WaitForWaiters(1));
  clock_->Advance(absl::Milliseconds(200));
  EXPECT_NE(stub_->Stream(1), nullptr);
  EXPECT_EQ(seen_.Wait(3).back(), "registered w-2 key-2");
}

TEST_F(ControlChannelTest, StopEndsARegistrationBackoff) {
  stub_->FailNextRegistrations(1, absl::UnavailableError("coordinator down"));
  Start();
  ASSERT_TRUE(clock_->WaitForWaiters(1));
  channel_->Stop();  // returns without the clock moving
  EXPECT_EQ(stub_->register_times().size(), 1u);
}

TEST(ControlChannelCreateTest, RejectsBadOptions) {
  auto clock = std::make_shared<FakeClock>();
  auto stub = std::make_shared<FakeStub>(clock.get());
  ControlChannel::Options o;
  o.heartbeat = absl::ZeroDuration();
  EXPECT_EQ(ControlChannel::Create(stub, clock, o, {}).status().code(), absl::StatusCode::kInvalidArgument);
  o = {};
  o.max_register_backoff = absl::Milliseconds(10);  // below register_backoff
  EXPECT_EQ(ControlChannel::Create(stub, clock, o, {}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ControlChannel::Create(nullptr, clock, {}, {}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ControlChannel::Create(stub, nullptr, {}, {}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(ControlChannel::Create(stub, clock, {}, {}).ok());
}

}  // namespace
}  // namespace alignd::node
