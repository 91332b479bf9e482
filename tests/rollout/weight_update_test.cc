// Packing on a device and the word-sum checksum (rollout/weight_update.h), on the CPU: the device code is the same
// torch ops whichever device the tensors are on, and the host Checksum must give the same bits.
#include "rollout/weight_update.h"

#include <torch/torch.h>

#include <cstdio>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "common/model/model_config.h"
#include "common/text/tokenizer.h"
#include "gtest/gtest.h"
#include "rollout/engine.h"

namespace alignd::rollout {
namespace {

using Named = std::vector<std::pair<std::string, at::Tensor>>;

std::string HostBytes(const at::Tensor& bucket) {
  at::Tensor c = bucket.contiguous();
  return std::string(static_cast<const char*>(c.data_ptr()), static_cast<size_t>(c.numel()));
}

std::string HostWordSum(const std::vector<std::string>& pieces) {
  Checksum sum(kChecksumWordSum);
  for (const std::string& p : pieces) sum.Update(p);
  return sum.HexDigest();
}

TEST(WordSumTest, DeviceAndHostAgreeWhateverThePieces) {
  torch::manual_seed(3);
  at::Tensor a = torch::randint(0, 256, {4096}, torch::kInt64).to(torch::kUInt8);
  at::Tensor b = torch::randint(0, 256, {1003}, torch::kInt64).to(torch::kUInt8);  // the last may end mid-word
  const std::string digest = DeviceBucketsChecksum({a, b});
  ASSERT_EQ(digest.size(), 32u);
  EXPECT_EQ(HostWordSum({HostBytes(a), HostBytes(b)}), digest);
  // Fed in pieces that split words.
  const std::string all = HostBytes(a) + HostBytes(b);
  std::vector<std::string> pieces;
  for (size_t i = 0, n = 1; i < all.size(); i += n, n = n * 3 % 37 + 1) pieces.push_back(all.substr(i, n));
  EXPECT_EQ(HostWordSum(pieces), digest);
  // Known value: the words 1 and 2 give A = 1*1 + 2*2 = 5 and B = 1*1 + 2*((0x9E3779B1 & 0x7FFFFFFF) + 1).
  at::Tensor two = torch::tensor({1, 0, 0, 0, 2, 0, 0, 0}, torch::kUInt8);
  const uint64_t b_sum = 1 + 2 * ((0x9E3779B1ULL & 0x7FFFFFFF) + 1);
  char expected[33];
  std::snprintf(expected, sizeof expected, "%016llx%016llx", 5ULL, static_cast<unsigned long long>(b_sum));
  EXPECT_EQ(DeviceBucketsChecksum({two}), expected);
}

TEST(WordSumTest, EveryChangedOrMovedWordChangesTheDigest) {
  torch::manual_seed(4);
  at::Tensor base = torch::randint(0, 256, {2048}, torch::kInt64).to(torch::kUInt8);
  const std::string digest = DeviceBucketsChecksum({base});
  for (int64_t byte : {0, 1, 2, 3, 1000, 2047}) {
    at::Tensor flipped = base.clone();
    flipped[byte].bitwise_xor_(1);
    EXPECT_NE(DeviceBucketsChecksum({flipped}), digest) << "byte " << byte;
  }
  at::Tensor swapped = base.clone();  // two different words exchanged
  swapped.narrow(0, 0, 4).copy_(base.narrow(0, 8, 4));
  swapped.narrow(0, 8, 4).copy_(base.narrow(0, 0, 4));
  ASSERT_FALSE(torch::equal(swapped, base));
  EXPECT_NE(DeviceBucketsChecksum({swapped}), digest);
}

Named MixedTensors() {
  torch::manual_seed(5);
  return {{"a", torch::randn({3, 5})},                    // 60 bytes: the next offset is padded to 64
          {"b", torch::randn({3}).to(torch::kBFloat16)},  // 6 bytes
          {"c", torch::randn({7}).to(torch::kDouble)},
          {"d", torch::randn({2, 2}).to(torch::kHalf)}};
}

TEST(PackWeightsOnDeviceTest, AlignedLayoutWithTheSameBytesAsTheHostPacking) {
  const Named tensors = MixedTensors();
  auto device = PackWeightsOnDevice(tensors, 7, /*max_bucket_bytes=*/80);
  ASSERT_TRUE(device.ok()) << device.status();
  auto host = PackWeights(tensors, 7, 80);
  ASSERT_TRUE(host.ok()) << host.status();
  EXPECT_TRUE(device->buckets.empty());
  ASSERT_EQ(device->device_buckets.size(), static_cast<size_t>(device->manifest.bucket_bytes_size()));
  EXPECT_TRUE(ValidateManifest(device->manifest).ok());
  EXPECT_EQ(device->manifest.checksum_algorithm(), kChecksumWordSum);
  for (int i = 0; i < device->manifest.bucket_bytes_size(); ++i) {
    EXPECT_EQ(device->manifest.bucket_bytes(i) % 16, 0u);
    EXPECT_EQ(device->device_buckets[static_cast<size_t>(i)].numel(),
              static_cast<int64_t>(device->manifest.bucket_bytes(i)));
  }
  ASSERT_EQ(device->manifest.tensors_size(), host->manifest.tensors_size());
  for (int i = 0; i < device->manifest.tensors_size(); ++i) {
    const auto& d = device->manifest.tensors(i);
    const auto& h = host->manifest.tensors(i);
    EXPECT_EQ(d.offset() % 16, 0u) << d.name();
    EXPECT_EQ(d.nbytes(), h.nbytes());
    EXPECT_EQ(d.dtype(), h.dtype());
    EXPECT_EQ(HostBytes(device->device_buckets[d.bucket()]).substr(d.offset(), d.nbytes()),
              host->buckets[h.bucket()].substr(h.offset(), h.nbytes()))
        << d.name();
  }
  std::vector<std::string> bytes;
  for (const at::Tensor& b : device->device_buckets) bytes.push_back(HostBytes(b));
  EXPECT_EQ(BucketsChecksum(bytes, kChecksumWordSum), device->manifest.checksum());
  EXPECT_EQ(PackWeightsOnDevice({}, 1, 80).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(PackWeightsOnDevice({{"i", torch::ones({2}, torch::kInt64)}}, 1, 80).status().code(),
            absl::StatusCode::kInvalidArgument);
}

std::unique_ptr<Engine> MakeEngine(CausalLM model) {
  Engine::Options options;
  options.model = std::move(model);
  options.tokenizer = std::shared_ptr<const Tokenizer>(MakeByteTokenizer());
  return Engine::Create(std::move(options)).value();
}

CausalLM TinyModel(uint64_t seed) {
  CausalLM model(TinyLlamaConfig(261, 32, 2, 4, 2, 64));
  model->InitWeights(seed);
  return model;
}

Named Params(CausalLM model) {
  Named out;
  for (const auto& p : model->named_parameters()) out.emplace_back(p.key(), p.value());
  return out;
}

TEST(PackWeightsOnDeviceTest, AppliedFromDeviceBucketsOrRefusedWhole) {
  CausalLM target = TinyModel(1);  // the engine shares the module
  auto engine = MakeEngine(target);
  CausalLM source = TinyModel(2);
  // bf16 on the wire into float32 parameters: converted on the copy, as from host bytes.
  Named bf16;
  for (auto& [name, t] : Params(source)) bf16.emplace_back(name, t.to(torch::kBFloat16));
  auto packed = PackWeightsOnDevice(bf16, 5, 4096);
  ASSERT_TRUE(packed.ok()) << packed.status();
  ASSERT_TRUE(ApplyWeightUpdate(*engine, *packed).ok());
  EXPECT_EQ(engine->weight_version(), 5u);
  std::map<std::string, at::Tensor> want;
  for (auto& [name, t] : bf16) want[name] = t.to(torch::kFloat);
  for (const auto& p : target->named_parameters()) {
    EXPECT_TRUE(torch::equal(p.value(), want.at(p.key()))) << p.key();
  }

  auto corrupt = PackWeightsOnDevice(Params(TinyModel(3)), 6, 4096);
  ASSERT_TRUE(corrupt.ok());
  corrupt->device_buckets.back()[0].add_(1);
  EXPECT_EQ(ApplyWeightUpdate(*engine, *corrupt).code(), absl::StatusCode::kDataLoss);
  auto short_bucket = PackWeightsOnDevice(Params(TinyModel(3)), 6, 4096);
  ASSERT_TRUE(short_bucket.ok());
  short_bucket->device_buckets[0] = short_bucket->device_buckets[0].narrow(0, 0, 16);
  EXPECT_EQ(ApplyWeightUpdate(*engine, *short_bucket).code(), absl::StatusCode::kInvalidArgument);
  auto old = PackWeightsOnDevice(Params(TinyModel(3)), 5, 4096);
  ASSERT_TRUE(old.ok());
  EXPECT_EQ(ApplyWeightUpdate(*engine, *old).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(engine->weight_version(), 5u);
  for (const auto& p : target->named_parameters()) {
    EXPECT_TRUE(torch::equal(p.value(), want.at(p.key()))) << p.key() << " changed by a refused update";
  }
}

}  // namespace
}  // namespace alignd::rollout
