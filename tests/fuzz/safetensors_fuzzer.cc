// Any bytes as a safetensors file (common/model/safetensors.h). File::Parse accepts them or says why, with INVALID_ARGUMENT
// or DATA_LOSS; a file it accepts has views that lie inside its buffer and match shape x dtype, and Serialize writes
// those tensors back into bytes that parse to the same tensors.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "common/model/safetensors.h"
#include "tests/fuzz/fuzz_check.h"

namespace alignd::safetensors {
namespace {

// Reads every byte of the view (ASan reports a view outside the buffer) and returns them.
std::string Bytes(const TensorView& view) { return std::string(reinterpret_cast<const char*>(view.data), view.nbytes); }

void Run(const uint8_t* data, size_t size) {
  absl::StatusOr<File> file = File::Parse(std::string(reinterpret_cast<const char*>(data), size), "fuzz");
  if (!file.ok()) {
    FUZZ_CHECK(fuzz::IsErrorOf(file.status(), {absl::StatusCode::kInvalidArgument, absl::StatusCode::kDataLoss}),
               file.status());
    return;
  }
  std::vector<std::string> payloads;
  std::vector<TensorToWrite> tensors;
  const std::vector<std::string> names = file->names();
  payloads.reserve(names.size());
  for (const std::string& name : names) {
    absl::StatusOr<TensorView> view = file->Get(name);
    FUZZ_CHECK(view.ok(), view.status());
    FUZZ_CHECK(static_cast<uint64_t>(view->numel()) * DtypeSize(view->dtype) == view->nbytes, name);
    payloads.push_back(Bytes(*view));
    tensors.push_back({name, view->dtype, view->shape, payloads.back().data(), payloads.back().size()});
  }
  absl::StatusOr<std::string> again = Serialize(tensors, file->metadata());
  FUZZ_CHECK(again.ok(), again.status());
  absl::StatusOr<File> reparsed = File::Parse(*again, "reserialized");
  FUZZ_CHECK(reparsed.ok(), reparsed.status());
  FUZZ_CHECK(reparsed->names() == names, "names changed");
  FUZZ_CHECK(reparsed->metadata() == file->metadata(), "metadata changed");
  for (size_t i = 0; i < names.size(); ++i) {
    absl::StatusOr<TensorView> view = reparsed->Get(names[i]);
    FUZZ_CHECK(
        view.ok() && view->dtype == tensors[i].dtype && view->shape == tensors[i].shape && Bytes(*view) == payloads[i],
        names[i]);
  }
}

}  // namespace
}  // namespace alignd::safetensors

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  alignd::safetensors::Run(data, size);
  return 0;
}
