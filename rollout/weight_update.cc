#include "rollout/weight_update.h"

#include <openssl/evp.h>
#include <torch/torch.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include <algorithm>
#include <map>
#include <set>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/safetensors.h"
#include "common/status.h"

namespace alignd::rollout {
namespace {

using safetensors::Dtype;

absl::StatusOr<torch::ScalarType> FloatType(const std::string& name) {
  absl::StatusOr<Dtype> d = safetensors::ParseDtype(name);
  if (d.ok()) {
    switch (*d) {
      case Dtype::kF32: return torch::kFloat;
      case Dtype::kF16: return torch::kHalf;
      case Dtype::kBF16: return torch::kBFloat16;
      case Dtype::kF64: return torch::kDouble;
      default: break;
    }
  }
  return absl::InvalidArgumentError(absl::StrCat("dtype \"", name, "\" is not one of F32, F16, BF16, F64"));
}

size_t TypeSize(torch::ScalarType t) { return c10::elementSize(t); }

std::string ShapeString(const std::vector<int64_t>& shape) { return absl::StrCat("[", absl::StrJoin(shape, ", "), "]"); }

std::vector<int64_t> Shape(const alignd::v1::TensorEntry& t) { return {t.shape().begin(), t.shape().end()}; }

absl::StatusOr<std::string> DtypeOf(torch::ScalarType t) {
  switch (t) {
    case torch::kFloat: return std::string("F32");
    case torch::kHalf: return std::string("F16");
    case torch::kBFloat16: return std::string("BF16");
    case torch::kDouble: return std::string("F64");
    default: return absl::InvalidArgumentError(absl::StrCat("dtype ", c10::toString(t), " cannot travel"));
  }
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
    alignd::v1::TensorEntry* e = out.manifest.add_tensors();
    e->set_name(name);
    e->set_dtype(dtype);
    for (int64_t d : t.sizes()) e->add_shape(d);
    e->set_offset(bucket.size());
    e->set_nbytes(nbytes);
    e->set_bucket(static_cast<uint32_t>(out.buckets.size() - 1));
    bucket.append(static_cast<const char*>(t.data_ptr()), nbytes);
  }
  for (const std::string& b : out.buckets) out.manifest.add_bucket_bytes(b.size());
  out.manifest.set_checksum_algorithm(kDefaultChecksum);
  out.manifest.set_checksum(BucketsChecksum(out.buckets, kDefaultChecksum));
  return out;
}

Checksum::Checksum(absl::string_view algorithm) {
  if (algorithm == kChecksumXxh3) {
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
  if (xxh_ != nullptr) {
    XXH3_128bits_update(static_cast<XXH3_state_t*>(xxh_), bytes.data(), bytes.size());
  } else {
    EVP_DigestUpdate(sha_, bytes.data(), bytes.size());
  }
}

std::string Checksum::HexDigest() {
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

absl::Status ValidateManifest(const alignd::v1::WeightManifest& manifest) {
  if (manifest.version() < 1) return absl::InvalidArgumentError("manifest: version must be >= 1");
  if (manifest.tensors_size() == 0) return absl::InvalidArgumentError("manifest: no tensors");
  const std::string& algorithm = manifest.checksum_algorithm();
  if (!algorithm.empty() && algorithm != kChecksumSha256 && algorithm != kChecksumXxh3) {
    return absl::InvalidArgumentError(absl::StrCat("manifest: checksum_algorithm \"", algorithm, "\" is not one of \"",
                                                   kChecksumXxh3, "\", \"", kChecksumSha256, "\""));
  }
  const size_t digits = algorithm == kChecksumXxh3 ? 32 : 64;
  if (manifest.checksum().size() != digits ||
      !std::all_of(manifest.checksum().begin(), manifest.checksum().end(), [](char c) { return absl::ascii_isxdigit(c); })) {
    return absl::InvalidArgumentError(absl::StrCat("manifest: checksum must be ", digits, " hex digits (",
                                                   algorithm.empty() ? kChecksumSha256 : algorithm, ")"));
  }
  std::set<std::string> names;
  std::map<uint32_t, std::vector<std::pair<uint64_t, uint64_t>>> ranges;  // bucket -> [begin, end)
  for (const alignd::v1::TensorEntry& t : manifest.tensors()) {
    std::string where = absl::StrCat("manifest: tensor \"", t.name(), "\"");
    if (t.name().empty()) return absl::InvalidArgumentError("manifest: a tensor has no name");
    if (!names.insert(t.name()).second) return absl::InvalidArgumentError(absl::StrCat(where, " repeats"));
    absl::StatusOr<torch::ScalarType> type = FloatType(t.dtype());
    if (!type.ok()) return Annotate(type.status(), where);
    uint64_t numel = 1;
    for (int64_t d : t.shape()) {
      if (d < 0) return absl::InvalidArgumentError(absl::StrCat(where, ": negative dimension"));
      numel *= static_cast<uint64_t>(d);
    }
    if (numel * TypeSize(*type) != t.nbytes()) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": nbytes ", t.nbytes(), " != shape ",
                                                     ShapeString(Shape(t)), " x ", t.dtype()));
    }
    if (t.bucket() >= static_cast<uint32_t>(manifest.bucket_bytes_size())) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": bucket ", t.bucket(), " does not exist (",
                                                     manifest.bucket_bytes_size(), " buckets)"));
    }
    uint64_t size = manifest.bucket_bytes(static_cast<int>(t.bucket()));
    if (t.offset() > size || t.nbytes() > size - t.offset()) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": bytes [", t.offset(), ", ", t.offset() + t.nbytes(),
                                                     ") lie outside bucket ", t.bucket(), " of ", size, " bytes"));
    }
    ranges[t.bucket()].push_back({t.offset(), t.offset() + t.nbytes()});
  }
  for (auto& [bucket, r] : ranges) {
    std::sort(r.begin(), r.end());
    for (size_t i = 1; i < r.size(); ++i) {
      if (r[i].first < r[i - 1].second) {
        return absl::InvalidArgumentError(absl::StrCat("manifest: tensors overlap in bucket ", bucket, " at byte ",
                                                       r[i].first));
      }
    }
  }
  return absl::OkStatus();
}

namespace {
NamedTensors ParametersOf(CausalLMImpl& model) {
  NamedTensors params;
  for (const auto& p : model.named_parameters()) params.emplace(p.key(), p.value());
  return params;
}
}  // namespace

absl::Status CheckManifestAgainst(const alignd::v1::WeightManifest& manifest, const NamedTensors& targets) {
  for (const alignd::v1::TensorEntry& t : manifest.tensors()) {
    auto it = targets.find(t.name());
    if (it == targets.end()) {
      return absl::InvalidArgumentError(absl::StrCat("manifest: unknown tensor \"", t.name(), "\""));
    }
    if (it->second.sizes().vec() != Shape(t)) {
      return absl::InvalidArgumentError(absl::StrCat("manifest: tensor \"", t.name(), "\" has shape ",
                                                     ShapeString(Shape(t)), ", the model's is ",
                                                     ShapeString(it->second.sizes().vec())));
    }
  }
  return absl::OkStatus();
}

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
    torch::Tensor src = torch::from_blob(const_cast<char*>(bucket.data() + t.offset()), Shape(t),
                                         torch::TensorOptions().dtype(type));
    targets.at(t.name()).copy_(src);
  }
}

void CopyIntoModel(const alignd::v1::WeightManifest& manifest, const std::vector<std::string>& buckets,
                   CausalLMImpl& model) {
  CopyInto(manifest, buckets, ParametersOf(model));
}

absl::Status ApplyWeightUpdate(Engine& engine, const alignd::v1::WeightManifest& manifest,
                               const std::vector<std::string>& buckets, const AdapterTargets* adapters,
                               absl::string_view buckets_checksum) {
  RETURN_IF_ERROR(ValidateManifest(manifest));
  const NamedTensors* adapter = nullptr;
  if (!manifest.adapter().empty()) {
    auto it = adapters ? adapters->find(manifest.adapter()) : AdapterTargets::const_iterator();
    if (adapters == nullptr || it == adapters->end()) {
      return absl::NotFoundError(absl::StrCat("manifest: adapter \"", manifest.adapter(),
                                              "\" is not loaded on this rollout worker"));
    }
    adapter = &it->second;
  }
  if (manifest.version() <= engine.weight_version()) {
    return absl::FailedPreconditionError(absl::StrCat("manifest: version ", manifest.version(),
                                                      " is not above the current version ", engine.weight_version()));
  }
  if (static_cast<int>(buckets.size()) != manifest.bucket_bytes_size()) {
    return absl::InvalidArgumentError(absl::StrCat("weights: ", buckets.size(), " buckets, the manifest names ",
                                                   manifest.bucket_bytes_size()));
  }
  for (size_t i = 0; i < buckets.size(); ++i) {
    if (buckets[i].size() != manifest.bucket_bytes(static_cast<int>(i))) {
      return absl::InvalidArgumentError(absl::StrCat("weights: bucket ", i, " has ", buckets[i].size(),
                                                     " bytes, the manifest says ", manifest.bucket_bytes(i)));
    }
  }
  std::string sum = buckets_checksum.empty() ? BucketsChecksum(buckets, manifest.checksum_algorithm())
                                              : absl::AsciiStrToLower(buckets_checksum);
  if (sum != absl::AsciiStrToLower(manifest.checksum())) {
    return absl::DataLossError(absl::StrCat("weights: ",
                                            manifest.checksum_algorithm().empty() ? kChecksumSha256
                                                                                  : manifest.checksum_algorithm(),
                                            " checksum ", sum, " differs from the manifest's ", manifest.checksum()));
  }
  return engine.UpdateWeights(manifest.version(), [&](CausalLMImpl& model) -> absl::Status {
    const NamedTensors targets = adapter ? *adapter : ParametersOf(model);
    RETURN_IF_ERROR(CheckManifestAgainst(manifest, targets));
    try {
      CopyInto(manifest, buckets, targets);
    } catch (const c10::Error& e) {
      return absl::InternalError(absl::StrCat("weights: copy failed: ", e.what_without_backtrace()));
    }
    return absl::OkStatus();
  });
}

absl::StatusOr<WeightAssembler> WeightAssembler::Start(alignd::v1::WeightManifest manifest, uint64_t max_total_bytes) {
  RETURN_IF_ERROR(ValidateManifest(manifest));
  uint64_t total = 0;
  for (uint64_t b : manifest.bucket_bytes()) total += b;
  if (total > max_total_bytes) {
    return absl::ResourceExhaustedError(absl::StrCat("weights: ", total, " bytes exceed the limit of ",
                                                     max_total_bytes));
  }
  WeightAssembler a;
  a.manifest_ = std::move(manifest);
  a.buckets_.resize(a.manifest_.bucket_bytes_size());
  for (int i = 0; i < a.manifest_.bucket_bytes_size(); ++i) a.buckets_[i].reserve(a.manifest_.bucket_bytes(i));
  return a;
}

absl::Status WeightAssembler::Add(uint32_t bucket, uint64_t offset, absl::string_view data) {
  if (bucket >= buckets_.size()) {
    return absl::InvalidArgumentError(absl::StrCat("weights: chunk for bucket ", bucket, " of ", buckets_.size()));
  }
  std::string& b = buckets_[bucket];
  if (offset != b.size()) {
    return absl::InvalidArgumentError(absl::StrCat("weights: chunk for bucket ", bucket, " starts at ", offset,
                                                   ", expected ", b.size()));
  }
  if (data.size() > manifest_.bucket_bytes(static_cast<int>(bucket)) - b.size()) {
    return absl::InvalidArgumentError(absl::StrCat("weights: chunk runs past the end of bucket ", bucket, " (",
                                                   manifest_.bucket_bytes(static_cast<int>(bucket)), " bytes)"));
  }
  b.append(data.data(), data.size());
  return absl::OkStatus();
}

absl::StatusOr<std::vector<std::string>> WeightAssembler::Finish() {
  for (size_t i = 0; i < buckets_.size(); ++i) {
    if (buckets_[i].size() != manifest_.bucket_bytes(static_cast<int>(i))) {
      return absl::DataLossError(absl::StrCat("weights: bucket ", i, " ended after ", buckets_[i].size(), " of ",
                                              manifest_.bucket_bytes(static_cast<int>(i)), " bytes"));
    }
  }
  return std::move(buckets_);
}

}  // namespace alignd::rollout
