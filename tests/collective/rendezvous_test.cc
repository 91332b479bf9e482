// The gang's rendezvous store served over gRPC: the table's c10d semantics, the c10d::Store client against a server
// that checks a credential and opens its table late, and a weight-broadcast group formed over it.
#include <ATen/ATen.h>
#include <grpcpp/grpcpp.h>

#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "collective/grpc_store.h"
#include "collective/store_table.h"
#include "collective/weight_broadcast.h"
#include "common/rpc/job_credential.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace alignd::collective {
namespace {

using rollout::PackedWeights;
using rollout::PackWeights;
using ::testing::HasSubstr;
using v1::StoreOp;
using v1::StoreRequest;
using v1::StoreResponse;

StoreRequest Req(StoreOp op, std::vector<std::string> keys, const std::string& group = "g") {
  StoreRequest r;
  r.set_group(group);
  r.set_op(op);
  for (auto& k : keys) r.add_keys(k);
  return r;
}

absl::Time Soon() { return absl::Now() + absl::Seconds(5); }

TEST(StoreTable, HasTheSemanticsOfAC10dStore) {
  StoreTable t;
  StoreResponse r;
  StoreRequest set = Req(StoreOp::STORE_OP_SET, {"a"});
  set.set_value("1");
  ASSERT_TRUE(t.Apply(set, &r, Soon()).ok());
  ASSERT_TRUE(t.Apply(Req(StoreOp::STORE_OP_GET, {"a"}), &r, Soon()).ok());
  EXPECT_EQ(r.value(), "1");
  // Groups are separate namespaces.
  StoreRequest other = Req(StoreOp::STORE_OP_GET, {"a"}, "h");
  other.set_timeout_ms(20);
  EXPECT_EQ(t.Apply(other, &r, Soon()).code(), absl::StatusCode::kDeadlineExceeded);

  StoreRequest add = Req(StoreOp::STORE_OP_ADD, {"n"});
  add.set_delta(5);
  ASSERT_TRUE(t.Apply(add, &r, Soon()).ok());
  EXPECT_EQ(r.number(), 5);
  add.set_delta(-2);
  ASSERT_TRUE(t.Apply(add, &r, Soon()).ok());
  EXPECT_EQ(r.number(), 3);
  EXPECT_EQ(t.Apply(Req(StoreOp::STORE_OP_ADD, {"a"}), &r, Soon()).code(), absl::StatusCode::kOk);  // "1" + 0

  StoreRequest cas = Req(StoreOp::STORE_OP_COMPARE_SET, {"c"});
  cas.set_expected("x");
  cas.set_value("y");
  ASSERT_TRUE(t.Apply(cas, &r, Soon()).ok());
  EXPECT_EQ(r.value(), "x");  // absent and expected non-empty: nothing set
  cas.set_expected("");
  ASSERT_TRUE(t.Apply(cas, &r, Soon()).ok());
  EXPECT_EQ(r.value(), "y");  // absent and expected empty: set
  cas.set_expected("z");
  cas.set_value("w");
  ASSERT_TRUE(t.Apply(cas, &r, Soon()).ok());
  EXPECT_EQ(r.value(), "y");  // mismatch: the current value
  cas.set_expected("y");
  ASSERT_TRUE(t.Apply(cas, &r, Soon()).ok());
  EXPECT_EQ(r.value(), "w");

  ASSERT_TRUE(t.Apply(Req(StoreOp::STORE_OP_CHECK, {"a", "n"}), &r, Soon()).ok());
  EXPECT_TRUE(r.flag());
  ASSERT_TRUE(t.Apply(Req(StoreOp::STORE_OP_CHECK, {"a", "missing"}), &r, Soon()).ok());
  EXPECT_FALSE(r.flag());
  ASSERT_TRUE(t.Apply(Req(StoreOp::STORE_OP_NUM_KEYS, {}), &r, Soon()).ok());
  EXPECT_EQ(r.number(), 3);
  ASSERT_TRUE(t.Apply(Req(StoreOp::STORE_OP_DELETE, {"c"}), &r, Soon()).ok());
  EXPECT_TRUE(r.flag());
  ASSERT_TRUE(t.Apply(Req(StoreOp::STORE_OP_DELETE, {"c"}), &r, Soon()).ok());
  EXPECT_FALSE(r.flag());

  // WAIT returns once another caller sets the key.
  std::thread setter([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    StoreRequest s = Req(StoreOp::STORE_OP_SET, {"late"});
    StoreResponse ignored;
    EXPECT_TRUE(t.Apply(s, &ignored, Soon()).ok());
  });
  EXPECT_TRUE(t.Apply(Req(StoreOp::STORE_OP_WAIT, {"a", "late"}), &r, Soon()).ok());
  setter.join();
}

TEST(StoreTable, RefusesBadRequestsAndEndsWaitsWhenClosed) {
  StoreTable t;
  StoreResponse r;
  EXPECT_EQ(t.Apply(Req(StoreOp::STORE_OP_SET, {}), &r, Soon()).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(t.Apply(Req(StoreOp::STORE_OP_GET, {"a", "b"}), &r, Soon()).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(t.Apply(Req(StoreOp::STORE_OP_UNSPECIFIED, {"a"}), &r, Soon()).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(t.Apply(Req(static_cast<StoreOp>(99), {"a"}), &r, Soon()).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(t.Apply(Req(StoreOp::STORE_OP_SET, {std::string(StoreTable::kMaxKeyBytes + 1, 'k')}), &r, Soon()).code(),
            absl::StatusCode::kInvalidArgument);
  StoreRequest big = Req(StoreOp::STORE_OP_SET, {"v"});
  big.set_value(std::string(StoreTable::kMaxValueBytes + 1, 'v'));
  EXPECT_EQ(t.Apply(big, &r, Soon()).code(), absl::StatusCode::kInvalidArgument);
  // A member cannot grow the table without bound.
  big.set_value(std::string(StoreTable::kMaxValueBytes, 'v'));
  absl::Status last;
  for (int i = 0; i < 20 && last.ok(); ++i) {
    big.set_keys(0, absl::StrCat("v", i));
    last = t.Apply(big, &r, Soon());
  }
  EXPECT_EQ(last.code(), absl::StatusCode::kResourceExhausted);

  absl::Status waited;
  std::thread waiter([&] { waited = t.Apply(Req(StoreOp::STORE_OP_GET, {"never"}), &r, absl::InfiniteFuture()); });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  t.Close();
  waiter.join();
  EXPECT_EQ(waited.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(t.Apply(Req(StoreOp::STORE_OP_CHECK, {"a"}), &r, Soon()).code(), absl::StatusCode::kUnavailable);
}

// A Rendezvous server like a worker's: one credential, and a table that opens when told to.
class TestRendezvous final : public v1::Rendezvous::Service {
 public:
  explicit TestRendezvous(std::string credential) : credential_(std::move(credential)) {}
  void Open() {
    absl::MutexLock lock(&mu_);
    table_ = std::make_shared<StoreTable>();
  }
  grpc::Status Store(grpc::ServerContext* c, const StoreRequest* q, StoreResponse* r) override {
    auto it = c->client_metadata().find("authorization");
    if (it == c->client_metadata().end() ||
        !SecretsEqual(BearerToken(absl::string_view(it->second.data(), it->second.size())), credential_)) {
      return grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "wrong credential");
    }
    std::shared_ptr<StoreTable> table;
    {
      absl::MutexLock lock(&mu_);
      table = table_;
    }
    if (!table) return grpc::Status(grpc::StatusCode::UNAVAILABLE, "not open yet");
    absl::Status s = table->Apply(*q, r, absl::FromChrono(c->deadline()));
    return s.ok() ? grpc::Status::OK : grpc::Status(static_cast<grpc::StatusCode>(s.code()), std::string(s.message()));
  }

 private:
  const std::string credential_;
  absl::Mutex mu_;
  std::shared_ptr<StoreTable> table_ ABSL_GUARDED_BY(mu_);
};

class GrpcStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(&service_);
    server_ = builder.BuildAndStart();
    ASSERT_NE(port, 0);
    address_ = absl::StrCat("127.0.0.1:", port);
  }
  void TearDown() override {
    if (server_) server_->Shutdown(std::chrono::system_clock::now());
  }

  StoreEndpoint Endpoint(const std::string& credential, const std::string& group = "weights") const {
    return {address_, group, credential, nullptr};
  }

  TestRendezvous service_{"secret-credential"};
  std::unique_ptr<grpc::Server> server_;
  std::string address_;
};

TEST_F(GrpcStoreTest, WaitsForTheTableToOpenThenActsAsAStore) {
  GrpcStore store(Endpoint("secret-credential"), std::chrono::milliseconds(10000));
  std::thread opener([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    service_.Open();
  });
  store.set("k", std::vector<uint8_t>{'v'});  // UNAVAILABLE until the table opens: retried
  opener.join();
  EXPECT_EQ(store.get("k"), std::vector<uint8_t>{'v'});
  EXPECT_EQ(store.add("n", 2), 2);
  EXPECT_EQ(store.add("n", 3), 5);
  EXPECT_TRUE(store.check({"k", "n"}));
  EXPECT_EQ(store.getNumKeys(), 2);
  EXPECT_EQ(store.compareSet("k", {'v'}, {'w'}), std::vector<uint8_t>{'w'});
  EXPECT_TRUE(store.deleteKey("k"));
  auto clone = store.clone();
  clone->set("from-clone", std::vector<uint8_t>{'1'});
  EXPECT_TRUE(store.check({"from-clone"}));
  // get() of a key nobody sets fails after the timeout, with the server's word.
  try {
    store.wait({"never"}, std::chrono::milliseconds(100));
    ADD_FAILURE() << "wait returned";
  } catch (const c10::DistStoreError& e) {
    EXPECT_THAT(e.what(), HasSubstr("deadline"));
  }
}

TEST_F(GrpcStoreTest, FailsAtOnceWhenTheHostGoesAwayAfterAnswering) {
  service_.Open();
  GrpcStore store(Endpoint("secret-credential"), std::chrono::milliseconds(20000));
  store.set("k", std::vector<uint8_t>{'v'});
  auto clone = store.clone();
  server_->Shutdown(std::chrono::system_clock::now());
  server_.reset();
  const auto start = std::chrono::steady_clock::now();
  EXPECT_THROW(clone->check({"k"}), c10::DistStoreError);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(5000));
}

TEST_F(GrpcStoreTest, ACallerWithoutTheCredentialGetsNothing) {
  service_.Open();
  GrpcStore store(Endpoint("another-jobs-credential"), std::chrono::milliseconds(2000));
  const auto start = std::chrono::steady_clock::now();
  try {
    store.set("k", std::vector<uint8_t>{'v'});
    ADD_FAILURE() << "set succeeded";
  } catch (const c10::DistStoreError& e) {
    EXPECT_THAT(e.what(), HasSubstr("wrong credential"));
  }
  // Refused at once, not retried until the timeout.
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(1500));
}

std::vector<std::pair<std::string, at::Tensor>> Tensors() {
  return {{"w", at::arange(64, at::kFloat).reshape({8, 8})}, {"b", at::ones({8}, at::kFloat)}};
}

TEST_F(GrpcStoreTest, AWeightBroadcastGroupFormsOverIt) {
  service_.Open();
  WeightBroadcastGroup::Options o0;
  o0.store = Endpoint("secret-credential");
  o0.timeout = absl::Seconds(60);
  WeightBroadcastGroup::Options o1 = o0;
  o1.rank = 1;
  auto sender = WeightBroadcastGroup::Create(o0);
  ASSERT_TRUE(sender.ok()) << sender.status();
  EXPECT_EQ((*sender)->port(), 0);  // no TCPStore
  auto receiver = WeightBroadcastGroup::Create(o1);
  ASSERT_TRUE(receiver.ok()) << receiver.status();
  absl::Status joined1;
  std::thread join1([&] { joined1 = (*receiver)->Join(); });
  ASSERT_TRUE((*sender)->Join().ok());
  join1.join();
  ASSERT_TRUE(joined1.ok()) << joined1;
  PackedWeights packed = PackWeights(Tensors(), 4, 1 << 10).value();
  absl::StatusOr<PackedWeights> got;
  std::thread receive([&] { got = (*receiver)->Receive(); });
  ASSERT_TRUE((*sender)->Send(packed).ok());
  receive.join();
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->manifest.SerializeAsString(), packed.manifest.SerializeAsString());
}

TEST_F(GrpcStoreTest, AMemberWithAWrongCredentialCannotJoin) {
  service_.Open();
  WeightBroadcastGroup::Options o;
  o.store = Endpoint("forged");
  o.rank = 1;
  o.timeout = absl::Seconds(5);
  auto group = WeightBroadcastGroup::Create(o);
  ASSERT_TRUE(group.ok()) << group.status();
  absl::Status joined = (*group)->Join();
  EXPECT_FALSE(joined.ok());
  EXPECT_THAT(std::string(joined.message()), HasSubstr("wrong credential"));
}

}  // namespace
}  // namespace alignd::collective
