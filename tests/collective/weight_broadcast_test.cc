// Weight broadcast over Gloo on loopback between two processes: this test (rank 0, the learner's side) packs a
// model's weights and broadcasts them; a child process running this same binary's DISABLED_ rank-1 test receives
// them, verifies them against the manifest, swaps them into its engine and checks the greedy output. A second
// version with one flipped byte must be refused with DATA_LOSS and leave the first in place.
#include "collective/weight_broadcast.h"

#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "common/model/model_config.h"
#include "common/text/tokenizer.h"
#include "gtest/gtest.h"
#include "rollout/engine.h"

extern char** environ;

namespace alignd::collective {
namespace {

using rollout::ApplyWeightUpdate;
using rollout::BucketsChecksum;
using rollout::Engine;
using rollout::kChecksumWordSum;
using rollout::PackedWeights;
using rollout::PackWeights;
using rollout::PackWeightsOnDevice;
using rollout::SamplingParams;

constexpr char kPortEnv[] = "ALIGND_BROADCAST_TEST_PORT";

CausalLM TinyModel(uint64_t seed) {
  ModelConfig c = TinyLlamaConfig(261, 32, 2, 4, 2, 96);
  c.tie_word_embeddings = false;
  CausalLM model(c);
  model->InitWeights(seed);
  return model;
}

std::vector<std::pair<std::string, at::Tensor>> Params(CausalLM model) {
  std::vector<std::pair<std::string, at::Tensor>> params;
  for (const auto& p : model->named_parameters()) params.emplace_back(p.key(), p.value());
  return params;
}

PackedWeights Pack(CausalLM model, uint64_t version) { return PackWeights(Params(model), version, 16 << 10).value(); }

PackedWeights PackOnDevice(CausalLM model, uint64_t version) {
  return PackWeightsOnDevice(Params(model), version, 16 << 10).value();
}

std::unique_ptr<Engine> MakeEngine(CausalLM model) {
  Engine::Options options;
  options.model = std::move(model);
  options.tokenizer = std::shared_ptr<const Tokenizer>(MakeByteTokenizer());
  return Engine::Create(std::move(options)).value();
}

std::vector<int32_t> GreedyIds(Engine& engine) {
  SamplingParams p;
  p.temperature = 0;
  p.max_new_tokens = 8;
  p.stop_token_ids = std::vector<int32_t>{};
  auto samples = engine.GenerateText({"hello there"}, p);
  EXPECT_TRUE(samples.ok()) << samples.status();
  return samples.ok() ? (*samples)[0].token_ids : std::vector<int32_t>{};
}

// Rank 1, run only as the child of TwoProcessesOverLoopback.
TEST(WeightBroadcastChild, DISABLED_ReceiveVerifyAndSwap) {
  const char* port = std::getenv(kPortEnv);
  ASSERT_NE(port, nullptr) << "run by WeightBroadcast.TwoProcessesOverLoopback";
  WeightBroadcastGroup::Options options;
  options.rank = 1;
  options.port = static_cast<uint16_t>(std::atoi(port));
  options.timeout = absl::Seconds(60);
  auto group = WeightBroadcastGroup::Create(options);
  ASSERT_TRUE(group.ok()) << group.status();
  ASSERT_TRUE((*group)->Join().ok());
  auto engine = MakeEngine(TinyModel(1));
  std::vector<int32_t> expected = GreedyIds(*MakeEngine(TinyModel(2)));
  ASSERT_NE(GreedyIds(*engine), expected);

  auto v7 = (*group)->Receive();
  ASSERT_TRUE(v7.ok()) << v7.status();
  EXPECT_EQ(v7->buckets_checksum,
            BucketsChecksum(v7->buckets,
                            v7->manifest.checksum_algorithm()));  // hashed on the way, as the service passes it on
  ASSERT_TRUE(ApplyWeightUpdate(*engine, v7->manifest, v7->buckets, nullptr, v7->buckets_checksum).ok());
  EXPECT_EQ(engine->weight_version(), 7u);
  EXPECT_EQ(GreedyIds(*engine), expected);

  auto v8 = (*group)->Receive();  // corrupted on the way
  ASSERT_TRUE(v8.ok()) << v8.status();
  EXPECT_EQ(v8->buckets_checksum, BucketsChecksum(v8->buckets, v8->manifest.checksum_algorithm()));
  EXPECT_EQ(ApplyWeightUpdate(*engine, v8->manifest, v8->buckets, nullptr, v8->buckets_checksum).code(),
            absl::StatusCode::kDataLoss);
  EXPECT_EQ(engine->weight_version(), 7u);
  EXPECT_EQ(GreedyIds(*engine), expected);

  // Packed on the sender's device (here the CPU): over Gloo it arrives as host bytes, the word sum taken on the way.
  auto v9 = (*group)->Receive();
  ASSERT_TRUE(v9.ok()) << v9.status();
  EXPECT_EQ(v9->manifest.checksum_algorithm(), kChecksumWordSum);
  EXPECT_TRUE(v9->device_buckets.empty());
  EXPECT_EQ(v9->buckets_checksum, v9->manifest.checksum());
  ASSERT_TRUE(ApplyWeightUpdate(*engine, *v9).ok());
  EXPECT_EQ(engine->weight_version(), 9u);
  EXPECT_EQ(GreedyIds(*engine), GreedyIds(*MakeEngine(TinyModel(4))));
}

TEST(WeightBroadcast, TwoProcessesOverLoopback) {
  auto group = WeightBroadcastGroup::Create(WeightBroadcastGroup::Options());  // rank 0, port chosen by the OS
  ASSERT_TRUE(group.ok()) << group.status();
  ASSERT_GT((*group)->port(), 0);

  std::string filter = "--gtest_filter=WeightBroadcastChild.DISABLED_ReceiveVerifyAndSwap";
  std::string disabled = "--gtest_also_run_disabled_tests";
  std::string self = "/proc/self/exe";
  char* argv[] = {self.data(), filter.data(), disabled.data(), nullptr};
  setenv(kPortEnv, std::to_string((*group)->port()).c_str(), 1);
  pid_t child = 0;
  ASSERT_EQ(posix_spawn(&child, self.c_str(), nullptr, nullptr, argv, environ), 0);
  unsetenv(kPortEnv);

  absl::Status joined = (*group)->Join();
  if (joined.ok()) {
    EXPECT_EQ((*group)->transport(), "gloo");
    EXPECT_TRUE((*group)->Send(Pack(TinyModel(2), 7)).ok());
    PackedWeights corrupt = Pack(TinyModel(3), 8);
    corrupt.buckets[0][5] ^= 0x01;  // the manifest's checksum no longer matches
    EXPECT_TRUE((*group)->Send(corrupt).ok());
    EXPECT_TRUE((*group)->Send(PackOnDevice(TinyModel(4), 9)).ok());
  }
  int wstatus = 0;
  ASSERT_EQ(waitpid(child, &wstatus, 0), child);
  ASSERT_TRUE(joined.ok()) << joined;
  ASSERT_TRUE(WIFEXITED(wstatus));
  EXPECT_EQ(WEXITSTATUS(wstatus), 0) << "the rank-1 process failed (its output is above)";
}

// Two ranks as threads of this process over Gloo on loopback: a receiver that recycles a version's buckets receives
// the next version of the same sizes into that very memory, and the bytes are still the sender's, bit for bit.
TEST(WeightBroadcast, RecycledBucketsCarryTheNextVersion) {
  WeightBroadcastGroup::Options o0;
  o0.timeout = absl::Seconds(60);
  auto sender = WeightBroadcastGroup::Create(o0);
  ASSERT_TRUE(sender.ok()) << sender.status();
  WeightBroadcastGroup::Options o1 = o0;
  o1.rank = 1;
  o1.port = (*sender)->port();
  auto receiver = WeightBroadcastGroup::Create(o1);
  ASSERT_TRUE(receiver.ok()) << receiver.status();
  absl::Status joined1;
  std::thread join1([&] { joined1 = (*receiver)->Join(); });
  ASSERT_TRUE((*sender)->Join().ok());
  join1.join();
  ASSERT_TRUE(joined1.ok()) << joined1;
  ASSERT_EQ((*receiver)->transport(), "gloo");

  const PackedWeights v1 = Pack(TinyModel(2), 1), v2 = Pack(TinyModel(3), 2);
  ASSERT_GT(v1.buckets.size(), 1u);
  absl::StatusOr<PackedWeights> got1, got2;
  std::vector<const char*> recycled;
  std::thread receive([&] {
    got1 = (*receiver)->Receive();
    if (!got1.ok()) return;
    for (const std::string& b : got1->buckets) recycled.push_back(b.data());
    (*receiver)->Recycle(std::move(got1->buckets));
    got2 = (*receiver)->Receive();
  });
  const absl::Status sent1 = (*sender)->Send(v1);
  const absl::Status sent2 = (*sender)->Send(v2);
  receive.join();
  ASSERT_TRUE(sent1.ok()) << sent1;
  ASSERT_TRUE(sent2.ok()) << sent2;
  ASSERT_TRUE(got1.ok()) << got1.status();
  ASSERT_TRUE(got2.ok()) << got2.status();
  ASSERT_EQ(got2->buckets, v2.buckets);
  EXPECT_EQ(got2->buckets_checksum, v2.manifest.checksum());
  // Buckets of equal size may trade places; every one of v2's landed in one of v1's.
  std::sort(recycled.begin(), recycled.end());
  for (const std::string& b : got2->buckets) {
    EXPECT_TRUE(std::binary_search(recycled.begin(), recycled.end(), b.data())) << "a bucket was allocated afresh";
  }
}

// The shared transport within one process (what `alignd local` on one GPU uses; here forced on the CPU, where the
// same registry path runs): the receiver gets the sender's very buckets, not a copy, and verifies them like any other.
TEST(WeightBroadcast, SharedWithinOneProcessMapsTheSendersBuckets) {
  WeightBroadcastGroup::Options o0;
  o0.transport = WeightBroadcastGroup::Options::Transport::kShared;
  o0.timeout = absl::Seconds(60);
  auto sender = WeightBroadcastGroup::Create(o0);
  ASSERT_TRUE(sender.ok()) << sender.status();
  WeightBroadcastGroup::Options o1 = o0;
  o1.rank = 1;
  o1.port = (*sender)->port();
  auto receiver = WeightBroadcastGroup::Create(o1);
  ASSERT_TRUE(receiver.ok()) << receiver.status();
  absl::Status joined1;
  std::thread join1([&] { joined1 = (*receiver)->Join(); });
  ASSERT_TRUE((*sender)->Join().ok());
  join1.join();
  ASSERT_TRUE(joined1.ok()) << joined1;
  EXPECT_EQ((*sender)->transport(), "shared");
  EXPECT_EQ((*receiver)->transport(), "shared");

  auto engine = MakeEngine(TinyModel(1));
  const std::vector<int32_t> expected = GreedyIds(*MakeEngine(TinyModel(2)));
  PackedWeights v3 = PackOnDevice(TinyModel(2), 3);
  PackedWeights v4 = PackOnDevice(TinyModel(3), 4);
  v4.device_buckets[0][5].add_(1);  // after the checksum: the receiver must refuse it
  absl::StatusOr<PackedWeights> got3, got4;
  std::thread receive([&] {
    got3 = (*receiver)->Receive();
    got4 = (*receiver)->Receive();
  });
  const absl::Status sent3 = (*sender)->Send(v3);
  const absl::Status sent4 = (*sender)->Send(v4);
  receive.join();
  ASSERT_TRUE(sent3.ok()) << sent3;
  ASSERT_TRUE(sent4.ok()) << sent4;
  ASSERT_TRUE(got3.ok()) << got3.status();
  ASSERT_EQ(got3->device_buckets.size(), v3.device_buckets.size());
  for (size_t i = 0; i < v3.device_buckets.size(); ++i) {
    EXPECT_EQ(got3->device_buckets[i].data_ptr(), v3.device_buckets[i].data_ptr()) << "bucket " << i << " was copied";
  }
  ASSERT_TRUE(ApplyWeightUpdate(*engine, *got3).ok());
  EXPECT_EQ(engine->weight_version(), 3u);
  EXPECT_EQ(GreedyIds(*engine), expected);
  ASSERT_TRUE(got4.ok()) << got4.status();
  EXPECT_EQ(ApplyWeightUpdate(*engine, *got4).code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(engine->weight_version(), 3u);
  EXPECT_EQ(GreedyIds(*engine), expected);

  // Host bytes cannot be shared; the sender says so before anything is sent.
  EXPECT_EQ((*sender)->Send(Pack(TinyModel(2), 5)).code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace alignd::collective
