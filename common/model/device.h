// Devices: what LibTorch was built with, which devices this process can use, and the one a job or a worker asks
// for. alignd is built against a LibTorch with CUDA and NCCL compiled in; whether a GPU is there is decided at run
// time, so the same binary serves CPU-only machines and GPU nodes.
#ifndef ALIGND_COMMON_MODEL_DEVICE_H_
#define ALIGND_COMMON_MODEL_DEVICE_H_

#include <torch/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace alignd {

struct CudaDevice {
  int index = 0;
  std::string name;
  int64_t total_memory_bytes = 0;
  int compute_capability_major = 0, compute_capability_minor = 0;
};

struct RuntimeInfo {
  std::string torch_version;             // LibTorch's, e.g. "2.11.0"
  bool cuda_compiled = false;            // LibTorch's CUDA library is linked and registered
  std::string cuda_version;              // the CUDA runtime LibTorch was built for, e.g. "13.0"; "" when not compiled
  std::string cudnn_version;             // "" when not compiled
  bool nccl_compiled = false;            // c10d's ProcessGroupNCCL is compiled in (USE_C10D_NCCL)
  std::string nccl_version;              // the loaded libnccl's, e.g. "2.28.9"; "" when none is loaded
  std::vector<CudaDevice> cuda_devices;  // the GPUs this process can use; empty without a driver or a GPU
  std::string cuda_unavailable_reason;   // why cuda_devices is empty ("" when it is not)
};

// Reads what LibTorch reports. Thread-safe; cheap after the first call (CUDA's initialisation is LibTorch's, once).
RuntimeInfo ProbeRuntime();

// Lines of `key: value` for `alignd version`.
std::string FormatRuntime(const RuntimeInfo& info);

// The device a job or a worker asks for: "cpu", "cuda" (device 0) or "cuda:N". INVALID_ARGUMENT naming `field` for any
// other text; FAILED_PRECONDITION, with the reason, when CUDA is asked for and this process has no such GPU.
absl::StatusOr<torch::Device> ResolveDevice(absl::string_view spec, absl::string_view field);

// Whether `error` (a c10::Error's what()) is LibTorch running out of device memory.
bool IsOutOfMemory(const std::exception& error);

// The Status for an exception LibTorch threw during `stage` ("sft step 12: forward", "rollout: generate"):
// RESOURCE_EXHAUSTED ("<stage>: out of memory: ...") naming the stage and the allocator's message (the memory asked for
// and what was free) for an out-of-memory error, INTERNAL with the stage otherwise.
absl::Status TorchErrorStatus(const std::exception& error, absl::string_view stage);

}  // namespace alignd

#endif  // ALIGND_COMMON_MODEL_DEVICE_H_
