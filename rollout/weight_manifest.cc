#include "rollout/weight_manifest.h"

#include <algorithm>
#include <limits>
#include <set>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/base/status.h"
#include "common/model/safetensors.h"

namespace alignd::rollout {
namespace {

// The element size of the float dtypes that may travel (as rollout/weight_update.cc's FloatType maps them).
absl::StatusOr<size_t> FloatDtypeSize(const std::string& name) {
  absl::StatusOr<safetensors::Dtype> d = safetensors::ParseDtype(name);
  if (d.ok()) {
    switch (*d) {
      case safetensors::Dtype::kF32:
      case safetensors::Dtype::kF16:
      case safetensors::Dtype::kBF16:
      case safetensors::Dtype::kF64:
        return safetensors::DtypeSize(*d);
      default:
        break;
    }
  }
  return absl::InvalidArgumentError(absl::StrCat("dtype \"", name, "\" is not one of F32, F16, BF16, F64"));
}

std::string ShapeString(const std::vector<int64_t>& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

std::vector<int64_t> Shape(const alignd::v1::TensorEntry& t) { return {t.shape().begin(), t.shape().end()}; }

}  // namespace

absl::Status ValidateManifest(const alignd::v1::WeightManifest& manifest) {
  if (manifest.version() < 1) return absl::InvalidArgumentError("manifest: version must be >= 1");
  if (manifest.tensors_size() == 0) return absl::InvalidArgumentError("manifest: no tensors");
  const std::string& algorithm = manifest.checksum_algorithm();
  if (!algorithm.empty() && algorithm != kChecksumSha256 && algorithm != kChecksumXxh3 &&
      algorithm != kChecksumWordSum) {
    return absl::InvalidArgumentError(absl::StrCat("manifest: checksum_algorithm \"", algorithm, "\" is not one of \"",
                                                   kChecksumXxh3, "\", \"", kChecksumWordSum, "\", \"", kChecksumSha256,
                                                   "\""));
  }
  const size_t digits = algorithm == kChecksumXxh3 || algorithm == kChecksumWordSum ? 32 : 64;
  if (manifest.checksum().size() != digits || !std::all_of(manifest.checksum().begin(), manifest.checksum().end(),
                                                           [](char c) { return absl::ascii_isxdigit(c); })) {
    return absl::InvalidArgumentError(absl::StrCat("manifest: checksum must be ", digits, " hex digits (",
                                                   algorithm.empty() ? kChecksumSha256 : algorithm, ")"));
  }
  std::set<std::string> names;
  std::map<uint32_t, std::vector<std::pair<uint64_t, uint64_t>>> ranges;  // bucket -> [begin, end)
  for (const alignd::v1::TensorEntry& t : manifest.tensors()) {
    std::string where = absl::StrCat("manifest: tensor \"", t.name(), "\"");
    if (t.name().empty()) return absl::InvalidArgumentError("manifest: a tensor has no name");
    if (!names.insert(t.name()).second) return absl::InvalidArgumentError(absl::StrCat(where, " repeats"));
    absl::StatusOr<size_t> type_size = FloatDtypeSize(t.dtype());
    if (!type_size.ok()) return Annotate(type_size.status(), where);
    // Left to right as safetensors does; a product past 64 bits used to wrap, so that a shape of 2^62 x 4 had 0 bytes.
    uint64_t numel = 1;
    for (int64_t d : t.shape()) {
      if (d < 0) return absl::InvalidArgumentError(absl::StrCat(where, ": negative dimension"));
      if (d != 0 && numel > std::numeric_limits<uint64_t>::max() / static_cast<uint64_t>(d)) {
        return absl::InvalidArgumentError(
            absl::StrCat(where, ": shape ", ShapeString(Shape(t)), " x ", t.dtype(), " overflows 64 bits"));
      }
      numel *= static_cast<uint64_t>(d);
    }
    if (numel > std::numeric_limits<uint64_t>::max() / *type_size) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": shape ", ShapeString(Shape(t)), " x ", t.dtype(), " overflows 64 bits"));
    }
    if (numel * *type_size != t.nbytes()) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": nbytes ", t.nbytes(), " != shape ", ShapeString(Shape(t)), " x ", t.dtype()));
    }
    if (t.bucket() >= static_cast<uint32_t>(manifest.bucket_bytes_size())) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": bucket ", t.bucket(), " does not exist (", manifest.bucket_bytes_size(), " buckets)"));
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
        return absl::InvalidArgumentError(
            absl::StrCat("manifest: tensors overlap in bucket ", bucket, " at byte ", r[i].first));
      }
    }
  }
  return absl::OkStatus();
}

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

absl::StatusOr<WeightAssembler> WeightAssembler::Start(alignd::v1::WeightManifest manifest, uint64_t max_total_bytes) {
  RETURN_IF_ERROR(ValidateManifest(manifest));
  // Summed without wrapping: buckets of 2^63 bytes each used to add up to 0 and pass, and reserving them threw.
  uint64_t total = 0;
  for (int i = 0; i < manifest.bucket_bytes_size(); ++i) {
    const uint64_t b = manifest.bucket_bytes(i);
    if (b > max_total_bytes - total) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "weights: bucket ", i, " of ", b, " bytes takes the total past the limit of ", max_total_bytes, " bytes"));
    }
    total += b;
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
    return absl::InvalidArgumentError(
        absl::StrCat("weights: chunk for bucket ", bucket, " starts at ", offset, ", expected ", b.size()));
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
