#include "rollout/weight_update.h"

#include <openssl/evp.h>
#include <torch/torch.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include <algorithm>
#include <functional>
#include <map>
#include <set>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/base/status.h"
#include "common/model/hf_model.h"
#include "common/model/safetensors.h"

namespace alignd::rollout {
namespace {

using safetensors::Dtype;

// Weights travel as floating-point types only (F32, F16, BF16, F64), named as safetensors names them.
absl::StatusOr<torch::ScalarType> FloatType(const std::string& name) {
  absl::StatusOr<Dtype> d = safetensors::ParseDtype(name);
  absl::StatusOr<torch::ScalarType> t = d.ok() ? ToTorchType(*d) : absl::StatusOr<torch::ScalarType>(d.status());
  if (!t.ok() || !c10::isFloatingType(*t)) {
    return absl::InvalidArgumentError(absl::StrCat("dtype \"", name, "\" is not one of F32, F16, BF16, F64"));
  }
  return *t;
}

size_t TypeSize(torch::ScalarType t) { return c10::elementSize(t); }

std::vector<int64_t> Shape(const alignd::v1::TensorEntry& t) { return {t.shape().begin(), t.shape().end()}; }

absl::StatusOr<std::string> DtypeOf(torch::ScalarType t) {
  absl::StatusOr<Dtype> d = ToSafetensorsDtype(t);
  if (!d.ok() || !c10::isFloatingType(t)) {
    return absl::InvalidArgumentError(absl::StrCat("dtype ", c10::toString(t), " cannot travel"));
  }
  return std::string(safetensors::DtypeName(*d));
}

// Appends `tensor`'s entry: its bytes at `offset` in bucket `bucket`.
void AddEntry(alignd::v1::WeightManifest* manifest, const std::string& name, const std::string& dtype,
              const at::Tensor& tensor, uint64_t offset, size_t bucket) {
  alignd::v1::TensorEntry* e = manifest->add_tensors();
  e->set_name(name);
  e->set_dtype(dtype);
  for (int64_t d : tensor.sizes()) e->add_shape(d);
  e->set_offset(offset);
  e->set_nbytes(static_cast<uint64_t>(tensor.numel()) * tensor.element_size());
  e->set_bucket(static_cast<uint32_t>(bucket));
}

}  // namespace

absl::StatusOr<PackedWeights> PackWeights(const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                                          uint64_t version, uint64_t max_bucket_bytes) {
  if (max_bucket_bytes == 0) return absl::InvalidArgumentError("pack: max_bucket_bytes must be >= 1");
  PackedWeights out;
  out.manifest.set_version(version);
  for (const auto& [name, tensor] : tensors) {
    ASSIGN_OR_RETURN(std::string dtype, DtypeOf(tensor.scalar_type()));
    torch::Tensor t = tensor.detach().to(torch::kCPU).contiguous();
    uint64_t nbytes = t.numel() * t.element_size();
    if (out.buckets.empty() || (!out.buckets.back().empty() && out.buckets.back().size() + nbytes > max_bucket_bytes)) {
      out.buckets.emplace_back();
    }
    std::string& bucket = out.buckets.back();
    AddEntry(&out.manifest, name, dtype, t, bucket.size(), out.buckets.size() - 1);
    bucket.append(static_cast<const char*>(t.data_ptr()), nbytes);
  }
  for (const std::string& b : out.buckets) out.manifest.add_bucket_bytes(b.size());
  out.manifest.set_checksum_algorithm(kDefaultChecksum);
  out.manifest.set_checksum(BucketsChecksum(out.buckets, kDefaultChecksum));
  return out;
}

absl::StatusOr<PackedWeights> PackWeightsOnDevice(const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                                                  uint64_t version, uint64_t max_bucket_bytes) {
  if (max_bucket_bytes == 0) return absl::InvalidArgumentError("pack: max_bucket_bytes must be >= 1");
  if (tensors.empty()) return absl::InvalidArgumentError("pack: no tensors");
  constexpr uint64_t kAlign = 16;
  auto aligned = [](uint64_t n) { return (n + kAlign - 1) / kAlign * kAlign; };
  const c10::Device device = tensors.front().second.device();
  PackedWeights out;
  out.manifest.set_version(version);
  // The layout first (sizes are known without touching the data), then one allocation per bucket and a device copy
  // per tensor into its byte range.
  std::vector<uint64_t> sizes;
  for (const auto& [name, tensor] : tensors) {
    ASSIGN_OR_RETURN(std::string dtype, DtypeOf(tensor.scalar_type()));
    if (tensor.device() != device) {
      return absl::InvalidArgumentError(
          absl::StrCat("pack: tensor \"", name, "\" is on ", tensor.device().str(), ", the others on ", device.str()));
    }
    const uint64_t nbytes = static_cast<uint64_t>(tensor.numel()) * tensor.element_size();
    if (sizes.empty() || (sizes.back() > 0 && sizes.back() + nbytes > max_bucket_bytes)) sizes.push_back(0);
    AddEntry(&out.manifest, name, dtype, tensor, sizes.back(), sizes.size() - 1);
    sizes.back() = aligned(sizes.back() + nbytes);
  }
  torch::NoGradGuard no_grad;
  for (uint64_t size : sizes) {
    out.device_buckets.push_back(
        torch::zeros({static_cast<int64_t>(size)}, torch::dtype(torch::kUInt8).device(device)));
    out.manifest.add_bucket_bytes(size);
  }
  for (size_t i = 0; i < tensors.size(); ++i) {
    const alignd::v1::TensorEntry& e = out.manifest.tensors(static_cast<int>(i));
    if (e.nbytes() == 0) continue;
    torch::Tensor src = tensors[i].second.detach().contiguous().view({-1}).view(torch::kUInt8);
    out.device_buckets[e.bucket()]
        .narrow(0, static_cast<int64_t>(e.offset()), static_cast<int64_t>(e.nbytes()))
        .copy_(src);
  }
  out.manifest.set_checksum_algorithm(kChecksumWordSum);
  out.manifest.set_checksum(DeviceBucketsChecksum(out.device_buckets));
  return out;
}

namespace {
constexpr uint64_t kWordMix = 0x9E3779B1u;
std::string Hex64(uint64_t v) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out(16, '0');
  for (int i = 15; i >= 0; --i, v >>= 4) out[static_cast<size_t>(i)] = kHex[v & 15];
  return out;
}
}  // namespace

std::string DeviceBucketsChecksum(const std::vector<at::Tensor>& buckets) {
  // Chunks of at most 2^24 words bound the int64 temporaries (128 MiB each) whatever a bucket's size.
  constexpr int64_t kChunkWords = int64_t{1} << 24;
  torch::NoGradGuard no_grad;
  uint64_t a = 0, b = 0, base = 0;  // base: words before the current bucket
  for (const at::Tensor& bucket : buckets) {
    at::Tensor bytes = bucket.contiguous();
    const int64_t n = bytes.numel();
    if (n == 0) continue;
    if (n % 4 != 0) bytes = torch::cat({bytes, torch::zeros({4 - n % 4}, bytes.options())});
    // Little-endian 32-bit words (every device alignd runs on is), widened to int64 without sign.
    at::Tensor words = bytes.view(torch::kInt32);
    const int64_t count = words.numel();
    for (int64_t begin = 0; begin < count; begin += kChunkWords) {
      const int64_t len = std::min(kChunkWords, count - begin);
      at::Tensor w = words.narrow(0, begin, len).to(torch::kInt64).bitwise_and(0xFFFFFFFFLL);
      at::Tensor i =
          torch::arange(static_cast<int64_t>(base) + begin, static_cast<int64_t>(base) + begin + len, w.options());
      at::Tensor m2 = (i * static_cast<int64_t>(kWordMix)).bitwise_and(0x7FFFFFFFLL) + 1;
      // int64 sums wrap modulo 2^64 on every device: the same bits as the host's uint64 arithmetic.
      at::Tensor sums = torch::stack({(w * (i + 1)).sum(), (w * m2).sum()}).cpu();
      a += static_cast<uint64_t>(sums[0].item<int64_t>());
      b += static_cast<uint64_t>(sums[1].item<int64_t>());
    }
    base += static_cast<uint64_t>(count);
  }
  return Hex64(a) + Hex64(b);
}

void Checksum::AddWord(uint32_t w) {
  const uint64_t i = words_++;
  sum_a_ += static_cast<uint64_t>(w) * (i + 1);
  sum_b_ += static_cast<uint64_t>(w) * (((i * kWordMix) & 0x7FFFFFFFu) + 1);
}

Checksum::Checksum(absl::string_view algorithm) {
  if (algorithm == kChecksumWordSum) {
    word_sum_ = true;
  } else if (algorithm == kChecksumXxh3) {
    auto* state = XXH3_createState();
    XXH3_128bits_reset(state);
    xxh_ = state;
  } else {
    sha_ = EVP_MD_CTX_new();
    EVP_DigestInit_ex(sha_, EVP_sha256(), nullptr);
  }
}

Checksum::~Checksum() {
  if (sha_ != nullptr) EVP_MD_CTX_free(sha_);
  if (xxh_ != nullptr) XXH3_freeState(static_cast<XXH3_state_t*>(xxh_));
}

void Checksum::Update(absl::string_view bytes) {
  if (word_sum_) {
    size_t k = 0;
    for (; k < bytes.size() && partial_bytes_ > 0; ++k) {  // finish a word an earlier piece began
      partial_ |= static_cast<uint32_t>(static_cast<unsigned char>(bytes[k])) << (8 * partial_bytes_);
      if (++partial_bytes_ == 4) AddWord(partial_), partial_ = 0, partial_bytes_ = 0;
    }
    for (; k + 4 <= bytes.size(); k += 4) {
      const auto* p = reinterpret_cast<const unsigned char*>(bytes.data() + k);
      AddWord(static_cast<uint32_t>(p[0]) | static_cast<uint32_t>(p[1]) << 8 | static_cast<uint32_t>(p[2]) << 16 |
              static_cast<uint32_t>(p[3]) << 24);
    }
    for (; k < bytes.size(); ++k) {
      partial_ |= static_cast<uint32_t>(static_cast<unsigned char>(bytes[k])) << (8 * partial_bytes_++);
    }
  } else if (xxh_ != nullptr) {
    XXH3_128bits_update(static_cast<XXH3_state_t*>(xxh_), bytes.data(), bytes.size());
  } else {
    EVP_DigestUpdate(sha_, bytes.data(), bytes.size());
  }
}

std::string Checksum::HexDigest() {
  if (word_sum_) {
    if (partial_bytes_ > 0) AddWord(partial_), partial_ = 0, partial_bytes_ = 0;  // zero-padded
    return Hex64(sum_a_) + Hex64(sum_b_);
  }
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (xxh_ != nullptr) {
    XXH128_canonical_t canonical;  // big-endian, as xxhsum prints it
    XXH128_canonicalFromHash(&canonical, XXH3_128bits_digest(static_cast<XXH3_state_t*>(xxh_)));
    len = sizeof(canonical.digest);
    std::copy(canonical.digest, canonical.digest + len, digest);
  } else {
    EVP_DigestFinal_ex(sha_, digest, &len);
  }
  static constexpr char kHex[] = "0123456789abcdef";
  std::string hex;
  for (unsigned int i = 0; i < len; ++i) {
    hex.push_back(kHex[digest[i] >> 4]);
    hex.push_back(kHex[digest[i] & 15]);
  }
  return hex;
}

std::string BucketsChecksum(const std::vector<std::string>& buckets, absl::string_view algorithm) {
  Checksum sum(algorithm);
  for (const std::string& b : buckets) sum.Update(b);
  return sum.HexDigest();
}

namespace {
NamedTensors ParametersOf(CausalLMImpl& model) {
  NamedTensors params;
  for (const auto& p : model.named_parameters()) params.emplace(p.key(), p.value());
  return params;
}
}  // namespace

absl::Status CheckManifestAgainstModel(const alignd::v1::WeightManifest& manifest, CausalLMImpl& model) {
  return CheckManifestAgainst(manifest, ParametersOf(model));
}

void CopyInto(const alignd::v1::WeightManifest& manifest, const std::vector<std::string>& buckets,
              const NamedTensors& targets) {
  torch::NoGradGuard no_grad;
  for (const alignd::v1::TensorEntry& t : manifest.tensors()) {
    torch::ScalarType type = FloatType(t.dtype()).value();
    const std::string& bucket = buckets[t.bucket()];
    // from_blob does not copy; copy_ converts and copies into the target's storage.
    torch::Tensor src =
        torch::from_blob(const_cast<char*>(bucket.data() + t.offset()), Shape(t), torch::TensorOptions().dtype(type));
    targets.at(t.name()).copy_(src);
  }
}

void CopyIntoModel(const alignd::v1::WeightManifest& manifest, const std::vector<std::string>& buckets,
                   CausalLMImpl& model) {
  CopyInto(manifest, buckets, ParametersOf(model));
}

namespace {

// The checks every update passes before anything is applied: the manifest, the adapter it names (nullptr for the
// model's own parameters), a version above the engine's, and buckets of the manifest's number and sizes.
absl::StatusOr<const NamedTensors*> CheckUpdate(const Engine& engine, const alignd::v1::WeightManifest& manifest,
                                                const std::vector<uint64_t>& bucket_sizes,
                                                const AdapterTargets* adapters) {
  RETURN_IF_ERROR(ValidateManifest(manifest));
  const NamedTensors* adapter = nullptr;
  if (!manifest.adapter().empty()) {
    auto it = adapters ? adapters->find(manifest.adapter()) : AdapterTargets::const_iterator();
    if (adapters == nullptr || it == adapters->end()) {
      return absl::NotFoundError(
          absl::StrCat("manifest: adapter \"", manifest.adapter(), "\" is not loaded on this rollout worker"));
    }
    adapter = &it->second;
  }
  if (manifest.version() <= engine.weight_version()) {
    return absl::FailedPreconditionError(absl::StrCat("manifest: version ", manifest.version(),
                                                      " is not above the current version ", engine.weight_version()));
  }
  if (static_cast<int>(bucket_sizes.size()) != manifest.bucket_bytes_size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("weights: ", bucket_sizes.size(), " buckets, the manifest names ", manifest.bucket_bytes_size()));
  }
  for (size_t i = 0; i < bucket_sizes.size(); ++i) {
    if (bucket_sizes[i] != manifest.bucket_bytes(static_cast<int>(i))) {
      return absl::InvalidArgumentError(absl::StrCat("weights: bucket ", i, " has ", bucket_sizes[i],
                                                     " bytes, the manifest says ", manifest.bucket_bytes(i)));
    }
  }
  return adapter;
}

absl::Status CheckSum(const alignd::v1::WeightManifest& manifest, const std::string& sum) {
  if (sum == absl::AsciiStrToLower(manifest.checksum())) return absl::OkStatus();
  return absl::DataLossError(
      absl::StrCat("weights: ", manifest.checksum_algorithm().empty() ? kChecksumSha256 : manifest.checksum_algorithm(),
                   " checksum ", sum, " differs from the manifest's ", manifest.checksum()));
}

// Swaps the weights in between Generate calls: `copy` fills the adapter's tensors or the model's parameters.
absl::Status Swap(Engine& engine, const alignd::v1::WeightManifest& manifest, const NamedTensors* adapter,
                  const std::function<void(const NamedTensors&)>& copy) {
  return engine.UpdateWeights(manifest.version(), [&](CausalLMImpl& model) -> absl::Status {
    const NamedTensors targets = adapter ? *adapter : ParametersOf(model);
    RETURN_IF_ERROR(CheckManifestAgainst(manifest, targets));
    try {
      copy(targets);
    } catch (const c10::Error& e) {
      return absl::InternalError(absl::StrCat("weights: copy failed: ", e.what_without_backtrace()));
    }
    return absl::OkStatus();
  });
}

}  // namespace

absl::Status CheckAnnouncedUpdate(const Engine& engine, const alignd::v1::WeightManifest& manifest,
                                  const AdapterTargets* adapters) {
  const std::vector<uint64_t> sizes(manifest.bucket_bytes().begin(), manifest.bucket_bytes().end());
  return CheckUpdate(engine, manifest, sizes, adapters).status();
}

absl::Status ApplyWeightUpdate(Engine& engine, const alignd::v1::WeightManifest& manifest,
                               const std::vector<std::string>& buckets, const AdapterTargets* adapters,
                               absl::string_view buckets_checksum) {
  std::vector<uint64_t> sizes;
  for (const std::string& b : buckets) sizes.push_back(b.size());
  ASSIGN_OR_RETURN(const NamedTensors* adapter, CheckUpdate(engine, manifest, sizes, adapters));
  RETURN_IF_ERROR(CheckSum(manifest, buckets_checksum.empty() ? BucketsChecksum(buckets, manifest.checksum_algorithm())
                                                              : absl::AsciiStrToLower(buckets_checksum)));
  return Swap(engine, manifest, adapter, [&](const NamedTensors& targets) { CopyInto(manifest, buckets, targets); });
}

absl::Status ApplyWeightUpdate(Engine& engine, const PackedWeights& weights, const AdapterTargets* adapters) {
  if (weights.device_buckets.empty()) {
    return ApplyWeightUpdate(engine, weights.manifest, weights.buckets, adapters, weights.buckets_checksum);
  }
  const alignd::v1::WeightManifest& manifest = weights.manifest;
  std::vector<uint64_t> sizes;
  for (const at::Tensor& b : weights.device_buckets) {
    if (b.scalar_type() != torch::kUInt8 || b.dim() != 1) {
      return absl::InvalidArgumentError("weights: a device bucket is not a 1-D uint8 tensor");
    }
    sizes.push_back(static_cast<uint64_t>(b.numel()));
  }
  ASSIGN_OR_RETURN(const NamedTensors* adapter, CheckUpdate(engine, manifest, sizes, adapters));
  std::string sum;
  try {
    if (manifest.checksum_algorithm() == kChecksumWordSum) {
      sum = DeviceBucketsChecksum(weights.device_buckets);
    } else {  // a hash that runs on the host only: the bytes come over for it
      Checksum host(manifest.checksum_algorithm());
      for (const at::Tensor& b : weights.device_buckets) {
        at::Tensor h = b.to(torch::kCPU).contiguous();
        host.Update(absl::string_view(static_cast<const char*>(h.data_ptr()), static_cast<size_t>(h.numel())));
      }
      sum = host.HexDigest();
    }
  } catch (const c10::Error& e) {
    return absl::InternalError(absl::StrCat("weights: checksum failed: ", e.what_without_backtrace()));
  }
  RETURN_IF_ERROR(CheckSum(manifest, sum));
  return Swap(engine, manifest, adapter, [&](const NamedTensors& targets) {
    torch::NoGradGuard no_grad;
    for (const alignd::v1::TensorEntry& t : manifest.tensors()) {
      const torch::ScalarType type = FloatType(t.dtype()).value();
      at::Tensor bytes = weights.device_buckets[t.bucket()].narrow(0, static_cast<int64_t>(t.offset()),
                                                                   static_cast<int64_t>(t.nbytes()));
      // A typed view needs an offset that is a multiple of the element size (PackWeightsOnDevice's are).
      if (t.offset() % TypeSize(type) != 0) bytes = bytes.clone();
      targets.at(t.name()).copy_(bytes.view(type).view(Shape(t)));
    }
  });
}

}  // namespace alignd::rollout
