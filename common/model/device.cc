#include "common/model/device.h"

#include <ATen/Context.h>
#include <ATen/cuda/CUDAContext.h>
#include <ATen/detail/CUDAHooksInterface.h>
#include <c10/util/Exception.h>
#include <dlfcn.h>
#include <torch/version.h>

#include <mutex>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace alignd {
namespace {

std::string DottedVersion(long code, long major_div, long minor_div) {
  if (code <= 0) return "";
  return absl::StrCat(code / major_div, ".", (code % major_div) / minor_div);
}

// libnccl is loaded with LibTorch's CUDA library; ask it directly (ncclGetVersion is its stable C entry point).
std::string LoadedNcclVersion() {
  using GetVersion = int (*)(int*);
  auto get = reinterpret_cast<GetVersion>(::dlsym(RTLD_DEFAULT, "ncclGetVersion"));
  int code = 0;
  if (get == nullptr || get(&code) != 0 || code <= 0) return "";
  // NCCL >= 2.9 encodes major*10000 + minor*100 + patch.
  return absl::StrCat(code / 10000, ".", (code % 10000) / 100, ".", code % 100);
}

RuntimeInfo Probe() {
  RuntimeInfo info;
  info.torch_version = TORCH_VERSION;
#ifdef USE_C10D_NCCL
  info.nccl_compiled = true;
#endif
  const at::CUDAHooksInterface& hooks = at::detail::getCUDAHooks();
  try {
    info.cuda_version = DottedVersion(hooks.versionCUDART(), 1000, 10);  // 13000 -> 13.0
    info.cuda_compiled = !info.cuda_version.empty();
    info.cudnn_version = hooks.compiledWithCuDNN() ? absl::StrCat(hooks.versionCuDNN()) : "";
  } catch (const c10::Error&) {
    info.cuda_compiled = false;  // the CPU-only hooks throw: no CUDA library registered
  }
  info.nccl_version = LoadedNcclVersion();
  if (!info.cuda_compiled) {
    info.cuda_unavailable_reason = "this LibTorch has no CUDA";
    return info;
  }
  void* driver = ::dlopen("libcuda.so.1", RTLD_LAZY | RTLD_LOCAL);
  if (driver == nullptr) {
    info.cuda_unavailable_reason = "no NVIDIA driver (libcuda.so.1 cannot be loaded)";
    return info;
  }
  ::dlclose(driver);
  try {
    int count = at::globalContext().hasCUDA() ? hooks.getNumGPUs() : 0;
    for (int i = 0; i < count; ++i) {
      const cudaDeviceProp* prop = at::cuda::getDeviceProperties(i);
      info.cuda_devices.push_back(
          {i, prop->name, static_cast<int64_t>(prop->totalGlobalMem), prop->major, prop->minor});
    }
  } catch (const c10::Error& e) {
    info.cuda_unavailable_reason = absl::StrCat("CUDA failed to initialise: ", e.what_without_backtrace());
    info.cuda_devices.clear();
    return info;
  }
  if (info.cuda_devices.empty()) info.cuda_unavailable_reason = "the NVIDIA driver reports no GPU";
  return info;
}

}  // namespace

RuntimeInfo ProbeRuntime() {
  static std::once_flag once;
  static RuntimeInfo* info = nullptr;
  std::call_once(once, [] { info = new RuntimeInfo(Probe()); });
  return *info;
}

std::string FormatRuntime(const RuntimeInfo& info) {
  std::string out = absl::StrCat("libtorch: ", info.torch_version, "\n");
  absl::StrAppend(&out, "cuda compiled in: ", info.cuda_compiled ? absl::StrCat("yes, CUDA ", info.cuda_version) : "no",
                  "\n");
  if (!info.cudnn_version.empty()) absl::StrAppend(&out, "cudnn: ", info.cudnn_version, "\n");
  absl::StrAppend(&out, "nccl compiled in: ", info.nccl_compiled ? "yes" : "no", "\n");
  absl::StrAppend(&out, "nccl: ", info.nccl_version.empty() ? "not loaded" : info.nccl_version, "\n");
  absl::StrAppend(&out, "gloo compiled in: yes\n");
  absl::StrAppend(&out, "cuda devices: ", info.cuda_devices.size());
  if (info.cuda_devices.empty()) absl::StrAppend(&out, " (", info.cuda_unavailable_reason, ")");
  absl::StrAppend(&out, "\n");
  for (const CudaDevice& d : info.cuda_devices) {
    absl::StrAppend(&out, "  cuda:", d.index, ": ", d.name, ", ", d.total_memory_bytes >> 20, " MiB, sm_",
                    d.compute_capability_major, d.compute_capability_minor, "\n");
  }
  return out;
}

absl::StatusOr<torch::Device> ResolveDevice(absl::string_view spec, absl::string_view field) {
  std::string text = absl::AsciiStrToLower(absl::StripAsciiWhitespace(spec));
  if (text == "cpu") return torch::Device(torch::kCPU);
  int index = 0;
  if (text == "cuda") {
    index = 0;
  } else if (absl::StartsWith(text, "cuda:") && absl::SimpleAtoi(text.substr(5), &index) && index >= 0) {
  } else {
    return absl::InvalidArgumentError(absl::StrCat(field, ": \"", spec, "\" is not a device (cpu, cuda or cuda:N)"));
  }
  RuntimeInfo info = ProbeRuntime();
  if (info.cuda_devices.empty()) {
    return absl::FailedPreconditionError(absl::StrCat(
        field, ": ", text, " asked for, but this process has no CUDA device: ", info.cuda_unavailable_reason));
  }
  if (index >= static_cast<int>(info.cuda_devices.size())) {
    return absl::FailedPreconditionError(absl::StrCat(field, ": ", text, " asked for, but this process sees ",
                                                      info.cuda_devices.size(), " CUDA device(s)"));
  }
  return torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(index));
}

bool IsOutOfMemory(const std::exception& error) {
  if (dynamic_cast<const c10::OutOfMemoryError*>(&error) != nullptr) return true;  // CUDA's caching allocator
  // The CPU allocator reports a failed allocation as a plain c10::Error (TORCH_CHECK in alloc_cpu.cpp).
  const auto* c10_error = dynamic_cast<const c10::Error*>(&error);
  return c10_error != nullptr && absl::StrContains(c10_error->msg(), "DefaultCPUAllocator: can't allocate memory");
}

absl::Status TorchErrorStatus(const std::exception& error, absl::string_view stage) {
  const auto* c10_error = dynamic_cast<const c10::Error*>(&error);
  std::string message = c10_error != nullptr ? c10_error->what_without_backtrace() : error.what();
  if (IsOutOfMemory(error)) {
    return absl::ResourceExhaustedError(absl::StrCat(stage, ": out of memory: ", message));
  }
  return absl::InternalError(absl::StrCat(stage, ": ", message));
}

}  // namespace alignd
