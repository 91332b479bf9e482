// A weight update's manifest (alignd.v1.WeightManifest: tensor names, dtypes, shapes, byte offsets into flat buckets,
// and a checksum over the buckets) checked on its own and against the tensors it may name, and the buckets of a
// streamed update reassembled from their chunks. Whatever a manifest holds, these give INVALID_ARGUMENT (or
// RESOURCE_EXHAUSTED, DATA_LOSS where said) naming the tensor or field, and allocate no more than the limits they are
// given: a manifest comes from the network. Split from rollout/weight_update.h so that it needs LibTorch's tensor type
// only, not the engine.
//
// Thread-safe (the free functions) and thread-compatible (WeightAssembler).
#ifndef ALIGND_ROLLOUT_WEIGHT_MANIFEST_H_
#define ALIGND_ROLLOUT_WEIGHT_MANIFEST_H_

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "proto/alignd.pb.h"

namespace alignd::rollout {

// The checksum algorithms a manifest may name (WeightManifest.checksum_algorithm). XXH3-128 is what PackWeights
// writes: the checksum guards against corruption and mix-ups, not forgery (the bytes travel unauthenticated
// either way), and SHA-256 ran at ~1 GB/s here, slower than the loopback copy it checked (bench/weight_sync_bench).
inline constexpr char kChecksumXxh3[] = "xxh3-128";
inline constexpr char kChecksumSha256[] = "sha256";
// The word sum, for buckets that stay on a GPU, where neither hash runs: the buckets concatenated (zero-padded to a
// multiple of 4 bytes) as little-endian 32-bit words w_i, i from 0, and the digest the two sums modulo 2^64
//   A = sum w_i * (i + 1),  B = sum w_i * (((i * 0x9E3779B1) mod 2^31) + 1)
// as 16 + 16 hex digits. Any one changed word changes A; moved or swapped words change A or B. Like XXH3 it guards
// against corruption and mix-ups, not forgery; unlike it, it is a few exact integer reductions that give the same
// bits on any device (DeviceBucketsChecksum) and on the host (Checksum).
inline constexpr char kChecksumWordSum[] = "wsum64x2";
inline constexpr const char* kDefaultChecksum = kChecksumXxh3;

// Checks the manifest alone: version >= 1, at least one tensor, every tensor's bucket exists, its nbytes equals
// shape x dtype size (F32, F16, BF16 or F64; a product past 64 bits is an error), [offset, offset + nbytes) lies
// inside its bucket, tensors of a bucket do not overlap, names do not repeat, the checksum algorithm is known and the
// checksum has its length in hex digits.
// INVALID_ARGUMENT naming the tensor or field otherwise.
absl::Status ValidateManifest(const alignd::v1::WeightManifest& manifest);

// Tensors that a manifest may name, by name: a model's parameters, or a PEFT adapter's (under their saved names).
using NamedTensors = std::map<std::string, at::Tensor>;
// The same checks against `targets`.
absl::Status CheckManifestAgainst(const alignd::v1::WeightManifest& manifest, const NamedTensors& targets);

// Reassembles buckets from chunks of a stream. Chunks of one bucket must arrive in order and without gaps (each
// chunk starts where the previous one of its bucket ended); buckets may interleave.
class WeightAssembler {
 public:
  // ValidateManifest's errors; RESOURCE_EXHAUSTED when the buckets add up to more than `max_total_bytes` (summed
  // without wrapping), before anything is allocated.
  static absl::StatusOr<WeightAssembler> Start(alignd::v1::WeightManifest manifest, uint64_t max_total_bytes);

  // INVALID_ARGUMENT for an unknown bucket, an offset other than the bucket's received bytes, or data past the
  // bucket's end.
  absl::Status Add(uint32_t bucket, uint64_t offset, absl::string_view data);
  // DATA_LOSS naming the bucket when one is incomplete. Leaves the assembler empty.
  absl::StatusOr<std::vector<std::string>> Finish();

  // The manifest given to Start.
  const alignd::v1::WeightManifest& manifest() const { return manifest_; }

 private:
  WeightAssembler() = default;
  alignd::v1::WeightManifest manifest_;
  std::vector<std::string> buckets_;  // received bytes so far, each reserved to its full size
};

}  // namespace alignd::rollout

#endif  // ALIGND_ROLLOUT_WEIGHT_MANIFEST_H_
