// safetensors reader and writer (https://github.com/huggingface/safetensors format), free of LibTorch.
//
// Layout: 8-byte little-endian header length N, N bytes of UTF-8 JSON, then the data buffer. The JSON maps each tensor
// name to {"dtype", "shape", "data_offsets": [begin, end]} (offsets relative to the data buffer) and may hold a
// "__metadata__" object of string to string.
//
// Parsing is strict: a header whose length, JSON, dtype, shape or offsets are wrong (out of range, overlapping, holes,
// a byte size that does not match shape x dtype) is rejected with INVALID_ARGUMENT (DATA_LOSS for a truncated file)
// and a message that names the tensor and the offending field. Nothing reads outside the buffer.
#ifndef ALIGND_COMMON_MODEL_SAFETENSORS_H_
#define ALIGND_COMMON_MODEL_SAFETENSORS_H_

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace alignd::safetensors {

enum class Dtype { kBool, kU8, kI8, kI16, kU16, kI32, kU32, kI64, kU64, kF16, kBF16, kF32, kF64 };

// "F32", "BF16", ... as written in the header.
absl::string_view DtypeName(Dtype dtype);
// The inverse of DtypeName: INVALID_ARGUMENT for an unknown name. DtypeSize: bytes per element (1 for kBool).
absl::StatusOr<Dtype> ParseDtype(absl::string_view name);
size_t DtypeSize(Dtype dtype);

// A tensor inside a parsed file. `data` points into the File's buffer and lives as long as the File.
struct TensorView {
  Dtype dtype;
  std::vector<int64_t> shape;
  const uint8_t* data = nullptr;
  size_t nbytes = 0;
  // The product of `shape` (1 for a scalar).
  int64_t numel() const;
};

// A parsed safetensors file that owns its bytes. Immutable after Parse/Read; safe to share across threads.
class File {
 public:
  // Validates and indexes `bytes`. `source` (a path, say) is put in front of every error message.
  static absl::StatusOr<File> Parse(std::string bytes, absl::string_view source = "<buffer>");
  // Reads the whole file at `path` and parses it. NOT_FOUND when the file is missing; ReadFile's and Parse's errors
  // otherwise, naming `path`.
  static absl::StatusOr<File> Read(const std::string& path);

  // Tensor names, sorted by name (not in header order).
  std::vector<std::string> names() const;
  // Whether the file holds a tensor `name`.
  bool contains(const std::string& name) const { return tensors_.count(name) > 0; }
  // NOT_FOUND naming the tensor when absent.
  absl::StatusOr<TensorView> Get(const std::string& name) const;
  // The header's "__metadata__" (empty when absent).
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

 private:
  std::shared_ptr<const std::string> bytes_;
  std::map<std::string, TensorView> tensors_;
  std::map<std::string, std::string> metadata_;
};

// A tensor to write: the caller keeps `data` alive until Write returns.
struct TensorToWrite {
  std::string name;
  Dtype dtype;
  std::vector<int64_t> shape;
  const void* data = nullptr;
  size_t nbytes = 0;
};

// Serialises tensors (in the given order, 8-byte aligned header as the reference writer pads it) to a string.
// INVALID_ARGUMENT when a name repeats or nbytes does not match shape x dtype.
absl::StatusOr<std::string> Serialize(const std::vector<TensorToWrite>& tensors,
                                      const std::map<std::string, std::string>& metadata = {});

// Writes Serialize(...) to `path` atomically (temporary file in the same folder, then rename): a failed write leaves
// no half-written file behind. Serialize's errors (naming `path`) and WriteFileAtomic's.
absl::Status Write(const std::string& path, const std::vector<TensorToWrite>& tensors,
                   const std::map<std::string, std::string>& metadata = {});

}  // namespace alignd::safetensors

#endif  // ALIGND_COMMON_MODEL_SAFETENSORS_H_
