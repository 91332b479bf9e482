// The manifest checks and stream reassembly of rollout/weight_manifest.h on hand-made manifests, among them the two
// whose 64-bit arithmetic wrapped (found while writing tests/fuzz/weight_manifest_fuzzer.cc).
#include "rollout/weight_manifest.h"

#include <ATen/ops/zeros.h>

#include <cstdint>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace alignd::rollout {
namespace {

using ::testing::HasSubstr;

constexpr char kXxh3Digest[] = "0123456789abcdef0123456789abcdef";

class WeightManifestTest : public ::testing::Test {
 protected:
  WeightManifestTest() {
    manifest_.set_version(1);
    manifest_.set_checksum_algorithm(kChecksumXxh3);
    manifest_.set_checksum(kXxh3Digest);
  }

  void Bucket(uint64_t bytes) { manifest_.add_bucket_bytes(bytes); }

  void Tensor(const std::string& name, const std::string& dtype, std::vector<int64_t> shape, uint64_t offset,
              uint64_t nbytes, uint32_t bucket = 0) {
    v1::TensorEntry* t = manifest_.add_tensors();
    t->set_name(name);
    t->set_dtype(dtype);
    for (int64_t d : shape) t->add_shape(d);
    t->set_offset(offset);
    t->set_nbytes(nbytes);
    t->set_bucket(bucket);
  }

  void ExpectInvalid(const std::string& part) {
    absl::Status status = ValidateManifest(manifest_);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
    EXPECT_THAT(status.message(), HasSubstr(part));
  }

  v1::WeightManifest manifest_;
};

TEST_F(WeightManifestTest, AcceptsTensorsInsideTheirBuckets) {
  Bucket(24);
  Bucket(8);
  Tensor("a", "F32", {2, 2}, 0, 16);
  Tensor("b", "BF16", {4}, 16, 8);
  Tensor("c", "F64", {}, 0, 8, 1);
  Tensor("empty", "F16", {0, 3}, 8, 0, 1);
  EXPECT_TRUE(ValidateManifest(manifest_).ok()) << ValidateManifest(manifest_);
  NamedTensors targets = {
      {"a", at::zeros({2, 2})}, {"b", at::zeros({4})}, {"c", at::zeros({})}, {"empty", at::zeros({0, 3})}};
  EXPECT_TRUE(CheckManifestAgainst(manifest_, targets).ok());
  targets["b"] = at::zeros({2, 2});
  absl::Status status = CheckManifestAgainst(manifest_, targets);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("tensor \"b\" has shape [4], the model's is [2, 2]"));
}

TEST_F(WeightManifestTest, RejectsAShapeWhoseByteSizeWraps) {
  // 2^62 x 4 elements used to wrap to 0, matching nbytes 0.
  Bucket(0);
  Tensor("a", "F32", {int64_t{1} << 62, 4}, 0, 0);
  ExpectInvalid("tensor \"a\": shape [4611686018427387904, 4] x F32 overflows 64 bits");
  manifest_.mutable_tensors(0)->clear_shape();
  manifest_.mutable_tensors(0)->add_shape(int64_t{1} << 62);  // 2^62 elements of 4 bytes: only the bytes overflow
  ExpectInvalid("overflows 64 bits");
}

TEST_F(WeightManifestTest, RejectsBytesPastTheBucketWithoutWrapping) {
  Bucket(8);
  Tensor("a", "F32", {4}, UINT64_MAX - 7, 16);
  ExpectInvalid("tensor \"a\": bytes [");
  ExpectInvalid("lie outside bucket 0 of 8 bytes");
}

TEST_F(WeightManifestTest, RejectsOverlapsRepeatsAndUnknownBuckets) {
  Bucket(32);
  Tensor("a", "F32", {4}, 0, 16);
  Tensor("b", "F32", {4}, 8, 16);
  ExpectInvalid("tensors overlap in bucket 0 at byte 8");
  manifest_.mutable_tensors(1)->set_name("a");
  ExpectInvalid("tensor \"a\" repeats");
  manifest_.mutable_tensors(1)->set_name("b");
  manifest_.mutable_tensors(1)->set_bucket(3);
  ExpectInvalid("tensor \"b\": bucket 3 does not exist (1 buckets)");
}

TEST_F(WeightManifestTest, AssemblerRefusesBucketsWhoseSumWraps) {
  // Two buckets of 2^63 bytes used to add up to 0, pass the limit, and throw std::length_error when reserved.
  Bucket(uint64_t{1} << 63);
  Bucket(uint64_t{1} << 63);
  Tensor("a", "F32", {4}, 0, 16);
  ASSERT_TRUE(ValidateManifest(manifest_).ok());
  absl::StatusOr<WeightAssembler> assembler = WeightAssembler::Start(manifest_, 1 << 20);
  EXPECT_EQ(assembler.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(assembler.status().message(), HasSubstr("bucket 0 of 9223372036854775808 bytes takes the total past"));
}

TEST_F(WeightManifestTest, AssemblerTakesChunksUpToTheLimit) {
  Bucket(16);
  Bucket(4);
  Tensor("a", "F32", {4}, 0, 16);
  Tensor("b", "F32", {1}, 0, 4, 1);
  EXPECT_EQ(WeightAssembler::Start(manifest_, 19).status().code(), absl::StatusCode::kResourceExhausted);
  absl::StatusOr<WeightAssembler> assembler = WeightAssembler::Start(manifest_, 20);
  ASSERT_TRUE(assembler.ok()) << assembler.status();
  EXPECT_TRUE(assembler->Add(0, 0, std::string(10, 'x')).ok());
  EXPECT_EQ(assembler->Add(0, 0, "y").code(), absl::StatusCode::kInvalidArgument);  // not where the bucket ends
  EXPECT_EQ(assembler->Add(0, 10, std::string(7, 'x')).code(), absl::StatusCode::kInvalidArgument);  // past its end
  EXPECT_EQ(assembler->Add(2, 0, "x").code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(assembler->Add(0, 10, std::string(6, 'x')).ok());
  EXPECT_EQ(assembler->Finish().status().code(), absl::StatusCode::kDataLoss);  // bucket 1 is missing
}

}  // namespace
}  // namespace alignd::rollout
