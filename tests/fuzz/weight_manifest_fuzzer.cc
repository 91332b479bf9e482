// A serialized alignd.v1.WeightManifest, as a rollout worker receives it (rollout/weight_manifest.h). ValidateManifest
// accepts it or says why with INVALID_ARGUMENT; an accepted manifest has every tensor's bytes inside its bucket, and
// is then checked against a fixed set of named tensors, and its buckets are reassembled through WeightAssembler under
// a 1 MiB limit (RESOURCE_EXHAUSTED above it): a manifest decides sizes, so nothing may be allocated before that
// limit is checked.
#include <ATen/ops/zeros.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>

#include "rollout/weight_manifest.h"
#include "tests/fuzz/fuzz_check.h"

namespace alignd::rollout {
namespace {

constexpr uint64_t kMaxTotalBytes = 1 << 20;
constexpr uint64_t kChunkBytes = 4096;

const NamedTensors& Targets() {
  static const NamedTensors* targets = new NamedTensors{{"embed.weight", at::zeros({8, 4})},
                                                        {"layers.0.q_proj.weight", at::zeros({4, 4})},
                                                        {"norm.weight", at::zeros({4})},
                                                        {"scale", at::zeros({})},
                                                        {"empty", at::zeros({0, 3})}};
  return *targets;
}

void Run(const uint8_t* data, size_t size) {
  v1::WeightManifest manifest;
  if (!manifest.ParseFromArray(data, static_cast<int>(size))) return;
  absl::Status valid = ValidateManifest(manifest);
  if (!valid.ok()) {
    FUZZ_CHECK(fuzz::IsErrorOf(valid, {absl::StatusCode::kInvalidArgument}), valid);
    return;
  }
  for (const v1::TensorEntry& t : manifest.tensors()) {
    // The exact product: 0 with a zero dimension (whatever the others), else it must fit in 64 bits.
    uint64_t nbytes = t.dtype() == "F32" ? 4 : t.dtype() == "F64" ? 8 : 2;
    bool zero = false, overflow = false;
    for (int64_t d : t.shape()) {
      zero = zero || d == 0;
      overflow = __builtin_mul_overflow(nbytes, static_cast<uint64_t>(d), &nbytes) || overflow;
    }
    FUZZ_CHECK(
        zero ? t.nbytes() == 0 : !overflow && nbytes == t.nbytes(),
        t.name() << ": " << (overflow ? "overflows" : std::to_string(nbytes)) << ", manifest says " << t.nbytes());
    FUZZ_CHECK(t.bucket() < static_cast<uint32_t>(manifest.bucket_bytes_size()), t.name());
    const uint64_t bucket = manifest.bucket_bytes(static_cast<int>(t.bucket()));
    FUZZ_CHECK(t.offset() <= bucket && t.nbytes() <= bucket - t.offset(), t.name());
  }
  absl::Status against = CheckManifestAgainst(manifest, Targets());
  FUZZ_CHECK(against.ok() || fuzz::IsErrorOf(against, {absl::StatusCode::kInvalidArgument}), against);

  absl::StatusOr<WeightAssembler> assembler = WeightAssembler::Start(manifest, kMaxTotalBytes);
  if (!assembler.ok()) {
    FUZZ_CHECK(fuzz::IsErrorOf(assembler.status(), {absl::StatusCode::kResourceExhausted}), assembler.status());
    return;
  }
  const std::string zeros(kChunkBytes, '\0');
  for (int b = 0; b < manifest.bucket_bytes_size(); ++b) {
    for (uint64_t at = 0; at < manifest.bucket_bytes(b); at += kChunkBytes) {
      const uint64_t n = std::min<uint64_t>(kChunkBytes, manifest.bucket_bytes(b) - at);
      absl::Status added = assembler->Add(static_cast<uint32_t>(b), at, absl::string_view(zeros.data(), n));
      FUZZ_CHECK(added.ok(), added);
    }
  }
  absl::StatusOr<std::vector<std::string>> buckets = assembler->Finish();
  FUZZ_CHECK(buckets.ok() && buckets->size() == static_cast<size_t>(manifest.bucket_bytes_size()), buckets.status());
}

}  // namespace
}  // namespace alignd::rollout

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  alignd::rollout::Run(data, size);
  return 0;
}
