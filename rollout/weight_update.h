// Weight updates for the rollout engine: a manifest (alignd.v1.WeightManifest: tensor names, dtypes, shapes, byte
// offsets into flat buckets, and a checksum over the buckets: XXH3-128, or SHA-256) plus the bucket bytes, however
// they travelled (inline in the RPC, a chunked gRPC stream, or a c10d broadcast). Everything is verified before
// anything is applied, and the swap happens between Generate calls through Engine::UpdateWeights, so no batch mixes
// versions. The manifest's own checks and the stream's reassembly are rollout/weight_manifest.h.
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
#include "common/model/transformer.h"
#include "proto/alignd.pb.h"
#include "rollout/engine.h"
#include "rollout/weight_manifest.h"

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
// An empty `tensors` gives a manifest without tensors, which ValidateManifest (and so every receiver) refuses.
absl::StatusOr<PackedWeights> PackWeights(const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                                          uint64_t version, uint64_t max_bucket_bytes);

// The same on the tensors' device (that of the first; every tensor must be there, else INVALID_ARGUMENT): each bucket
// a 1-D uint8 tensor there, every tensor's offset and every bucket's size a multiple of 16 bytes (so typed views need
// no copy), and the checksum the word sum (kChecksumWordSum), computed there too (DeviceBucketsChecksum). Nothing is
// copied through the host: on CUDA a few device copies per bucket and a few reductions. INVALID_ARGUMENT also for no
// tensors.
absl::StatusOr<PackedWeights> PackWeightsOnDevice(const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                                                  uint64_t version, uint64_t max_bucket_bytes);

// Where the bytes of an announced version come from when they do not travel in the RPC: a collective group
// (WeightBroadcastGroup on a receiving rank) or, in tests, a fake.
class WeightSource {
 public:
  virtual ~WeightSource() = default;
  // Receives the next version's manifest and buckets. Called by one thread at a time.
  virtual absl::StatusOr<PackedWeights> Receive() = 0;
  // Hands back host buckets that a Receive returned once the caller is done with them (applied or refused), so that
  // the next Receive can land in memory that is already mapped instead of faulting in fresh pages. Optional: a
  // source may free them (the default). Called by the thread that calls Receive.
  virtual void Recycle(std::vector<std::string> buckets) {}
};

// Lower-case hex digest of the buckets concatenated in order; `algorithm` as in a manifest ("" = "sha256").
// Call only with an algorithm ValidateManifest accepts.
std::string BucketsChecksum(const std::vector<std::string>& buckets, absl::string_view algorithm);

// The same, fed piece by piece. Thread-compatible.
class Checksum {
 public:
  // "xxh3-128", "wsum64x2", "sha256" or "" (= "sha256"); any other name also means SHA-256.
  explicit Checksum(absl::string_view algorithm);
  ~Checksum();
  Checksum(const Checksum&) = delete;
  Checksum& operator=(const Checksum&) = delete;
  // Feeds the next `bytes`; pieces may split words and buckets anywhere.
  void Update(absl::string_view bytes);
  // Lower-case hex digest of everything fed so far; call once.
  std::string HexDigest();

 private:
  ::evp_md_ctx_st* sha_ = nullptr;  // SHA-256
  void* xxh_ = nullptr;             // XXH3_state_t (XXH3-128)
  bool word_sum_ = false;           // kChecksumWordSum
  uint64_t sum_a_ = 0, sum_b_ = 0, words_ = 0;
  uint32_t partial_ = 0;  // bytes of an unfinished word, little-endian
  int partial_bytes_ = 0;
  void AddWord(uint32_t w);
};

// kChecksumWordSum of uint8 `buckets` (1-D, contiguous, one device; every bucket but the last a multiple of 4 bytes),
// computed on their device; only the two sums come back. Equals Checksum(kChecksumWordSum) fed the same bytes.
std::string DeviceBucketsChecksum(const std::vector<at::Tensor>& buckets);

// Checks the manifest against a model: every name is one of its parameters and has its shape (a manifest may carry
// a subset of the parameters). INVALID_ARGUMENT naming the tensor otherwise.
absl::Status CheckManifestAgainstModel(const alignd::v1::WeightManifest& manifest, CausalLMImpl& model);

// Copies the tensors out of `buckets` into the model's parameters (converted to the parameter's dtype). Call only
// after ValidateManifest and CheckManifestAgainstModel passed and the buckets have the manifest's sizes. CopyInto: the
// same into `targets` (after CheckManifestAgainst). Both throw c10::Error when LibTorch fails (ApplyWeightUpdate
// catches it).
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

}  // namespace alignd::rollout

#endif  // ALIGND_ROLLOUT_WEIGHT_UPDATE_H_
