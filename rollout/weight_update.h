// Weight updates for the rollout engine: a manifest (alignd.v1.WeightManifest: tensor names, dtypes, shapes, byte
// offsets into flat buckets, and a checksum over the buckets: XXH3-128, or SHA-256) plus the bucket bytes, however
// they travelled (inline in the RPC, a chunked gRPC stream, or a c10d broadcast). Everything is verified before
// anything is applied, and the swap happens between Generate calls through Engine::UpdateWeights, so no batch mixes
// versions.
//
// Free of gRPC; thread-compatible (WeightAssembler) and thread-safe (the free functions).
#ifndef ALIGND_ROLLOUT_WEIGHT_UPDATE_H_
#define ALIGND_ROLLOUT_WEIGHT_UPDATE_H_

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/transformer.h"
#include "proto/alignd.pb.h"
#include "rollout/engine.h"

struct evp_md_ctx_st;  // OpenSSL's EVP_MD_CTX

namespace alignd::rollout {

// Tensors packed into flat buckets with their manifest: what a learner sends. The buckets are host bytes (PackWeights:
// what gRPC and Gloo carry) or uint8 tensors on a device (PackWeightsOnDevice: what NCCL and CUDA IPC carry, so that
// weights on a GPU never leave it); one of the two is empty.
struct PackedWeights {
  alignd::v1::WeightManifest manifest;
  std::vector<std::string> buckets;
  std::vector<at::Tensor> device_buckets;  // 1-D uint8, contiguous, each on the same device
  // Lower-case hex digest of `buckets`, in the manifest's checksum algorithm, when whoever filled them hashed them on
  // the way (WeightBroadcastGroup::Receive hashes each bucket while the next one arrives); empty otherwise. For
  // ApplyWeightUpdate, which then need not read every byte a second time.
  std::string buckets_checksum;
};

// Packs `tensors` (contiguous copies are made as needed; F32, F16, BF16 or F64) in order into buckets of at most
// `max_bucket_bytes` each (a tensor larger than that gets a bucket of its own), and fills the manifest: version,
// entries, bucket sizes, checksum (kDefaultChecksum). INVALID_ARGUMENT for another dtype or max_bucket_bytes 0.
absl::StatusOr<PackedWeights> PackWeights(const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                                          uint64_t version, uint64_t max_bucket_bytes);

// The same on the tensors' device (that of the first; every tensor must be there, else INVALID_ARGUMENT): each bucket
// a 1-D uint8 tensor there, every tensor's offset and every bucket's size a multiple of 16 bytes (so typed views need
// no copy), and the checksum the word sum (kChecksumWordSum), computed there too (DeviceBucketsChecksum). Nothing is
// copied through the host: on CUDA a few device copies per bucket and a few reductions.
absl::StatusOr<PackedWeights> PackWeightsOnDevice(const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                                                  uint64_t version, uint64_t max_bucket_bytes);

// Where the bytes of an announced version come from when they do not travel in the RPC: a collective group
// (WeightBroadcastGroup on a receiving rank) or, in tests, a fake.
class WeightSource {
 public:
  virtual ~WeightSource() = default;
  // Receives the next version's manifest and buckets. Called by one thread at a time.
  virtual absl::StatusOr<PackedWeights> Receive() = 0;
};

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

// Lower-case hex digest of the buckets concatenated in order; `algorithm` as in a manifest ("" = "sha256").
// Call only with an algorithm ValidateManifest accepts.
std::string BucketsChecksum(const std::vector<std::string>& buckets, absl::string_view algorithm);

// The same, fed piece by piece. Thread-compatible.
class Checksum {
 public:
  explicit Checksum(absl::string_view algorithm);  // "xxh3-128", "wsum64x2", "sha256" or "" (= "sha256")
  ~Checksum();
  Checksum(const Checksum&) = delete;
  Checksum& operator=(const Checksum&) = delete;
  void Update(absl::string_view bytes);
  // Lower-case hex digest of everything fed so far; call once.
  std::string HexDigest();

 private:
  ::evp_md_ctx_st* sha_ = nullptr;  // SHA-256
  void* xxh_ = nullptr;             // XXH3_state_t (XXH3-128)
  bool word_sum_ = false;           // kChecksumWordSum
  uint64_t sum_a_ = 0, sum_b_ = 0, words_ = 0;
  uint32_t partial_ = 0;            // bytes of an unfinished word, little-endian
  int partial_bytes_ = 0;
  void AddWord(uint32_t w);
};

// kChecksumWordSum of uint8 `buckets` (1-D, contiguous, one device; every bucket but the last a multiple of 4 bytes),
// computed on their device; only the two sums come back. Equals Checksum(kChecksumWordSum) fed the same bytes.
std::string DeviceBucketsChecksum(const std::vector<at::Tensor>& buckets);

// Checks the manifest alone: version >= 1, at least one tensor, every tensor's bucket exists, its nbytes equals
// shape x dtype size (F32, F16, BF16 or F64), [offset, offset + nbytes) lies inside its bucket, tensors of a bucket
// do not overlap, names do not repeat, the checksum algorithm is known and the checksum has its length in hex digits.
// INVALID_ARGUMENT naming the tensor or field otherwise.
absl::Status ValidateManifest(const alignd::v1::WeightManifest& manifest);

// Checks the manifest against a model: every name is one of its parameters and has its shape (a manifest may carry
// a subset of the parameters). INVALID_ARGUMENT naming the tensor otherwise.
absl::Status CheckManifestAgainstModel(const alignd::v1::WeightManifest& manifest, CausalLMImpl& model);

// Tensors that a manifest may name, by name: a model's parameters, or a PEFT adapter's (under their saved names).
using NamedTensors = std::map<std::string, at::Tensor>;
// The same checks against `targets`.
absl::Status CheckManifestAgainst(const alignd::v1::WeightManifest& manifest, const NamedTensors& targets);

// Copies the tensors out of `buckets` into the model's parameters (converted to the parameter's dtype). Call only
// after ValidateManifest and CheckManifestAgainstModel passed and the buckets have the manifest's sizes.
void CopyIntoModel(const alignd::v1::WeightManifest& manifest, const std::vector<std::string>& buckets,
                   CausalLMImpl& model);
void CopyInto(const alignd::v1::WeightManifest& manifest, const std::vector<std::string>& buckets,
              const NamedTensors& targets);

// Adapters a rollout engine serves by name (the adapter's tensors, attached to the engine's model), for manifests
// whose `adapter` field names one: with LoRA only the adapter's tensors travel.
using AdapterTargets = std::map<std::string, NamedTensors>;

// The whole update: ValidateManifest; NOT_FOUND for a manifest naming an adapter that `adapters` (may be null) does
// not hold; FAILED_PRECONDITION when manifest.version is not above the engine's version; INVALID_ARGUMENT when the
// number or sizes of the buckets differ from the manifest; DATA_LOSS when the checksum differs; then, between Generate
// calls, the checks against the model's parameters (or the named adapter's tensors) and the copy. On any error nothing
// is applied and the version stays. `buckets_checksum`: the digest of these very bytes, in the manifest's algorithm,
// when the caller computed it after they arrived (PackedWeights::buckets_checksum); empty: computed here.
absl::Status ApplyWeightUpdate(Engine& engine, const alignd::v1::WeightManifest& manifest,
                               const std::vector<std::string>& buckets, const AdapterTargets* adapters = nullptr,
                               absl::string_view buckets_checksum = {});
// The checks ApplyWeightUpdate makes before any byte is needed (the manifest, its adapter, its version), for an
// announcement whose bytes are still to come: a caller that fails them never starts receiving.
absl::Status CheckAnnouncedUpdate(const Engine& engine, const alignd::v1::WeightManifest& manifest,
                                  const AdapterTargets* adapters = nullptr);
// The same for what a WeightSource delivered: its host buckets as above, or its device buckets, checked the same way
// (the checksum computed on their device) and copied device to device into the engine's tensors.
absl::Status ApplyWeightUpdate(Engine& engine, const PackedWeights& weights, const AdapterTargets* adapters = nullptr);

// Reassembles buckets from chunks of a stream. Chunks of one bucket must arrive in order and without gaps (each
// chunk starts where the previous one of its bucket ended); buckets may interleave.
class WeightAssembler {
 public:
  // ValidateManifest's errors; RESOURCE_EXHAUSTED when the buckets add up to more than `max_total_bytes`.
  static absl::StatusOr<WeightAssembler> Start(alignd::v1::WeightManifest manifest, uint64_t max_total_bytes);

  // INVALID_ARGUMENT for an unknown bucket, an offset other than the bucket's received bytes, or data past the
  // bucket's end.
  absl::Status Add(uint32_t bucket, uint64_t offset, absl::string_view data);
  // DATA_LOSS naming the bucket when one is incomplete. Leaves the assembler empty.
  absl::StatusOr<std::vector<std::string>> Finish();

  const alignd::v1::WeightManifest& manifest() const { return manifest_; }

 private:
  WeightAssembler() = default;
  alignd::v1::WeightManifest manifest_;
  std::vector<std::string> buckets_;  // received bytes so far, each reserved to its full size
};

}  // namespace alignd::rollout

#endif  // ALIGND_ROLLOUT_WEIGHT_UPDATE_H_
