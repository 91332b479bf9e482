// Devices as a job or a worker names them, and LibTorch's errors as statuses (common/model/device.h).
#include "common/model/device.h"

#include <c10/util/Exception.h>

#include <stdexcept>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace alignd {
namespace {

using ::testing::HasSubstr;

TEST(ResolveDevice, CpuAndItsSpellings) {
  for (const char* spec : {"cpu", "CPU", " cpu "}) {
    absl::StatusOr<torch::Device> d = ResolveDevice(spec, "resources.device");
    ASSERT_TRUE(d.ok()) << spec << ": " << d.status();
    EXPECT_TRUE(d->is_cpu());
  }
}

TEST(ResolveDevice, OtherTextIsInvalidArgumentNamingTheField) {
  for (const char* spec : {"gpu", "cuda:", "cuda:-1", "cuda:x", ""}) {
    absl::Status s = ResolveDevice(spec, "--device").status();
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << spec;
    EXPECT_THAT(s.message(), HasSubstr("--device"));
  }
}

TEST(ResolveDevice, CudaNeedsAGpuOfThatIndex) {
  const RuntimeInfo info = ProbeRuntime();
  const int gpus = static_cast<int>(info.cuda_devices.size());
  absl::StatusOr<torch::Device> first = ResolveDevice("cuda", "resources.device");
  if (gpus == 0) {
    EXPECT_EQ(first.status().code(), absl::StatusCode::kFailedPrecondition);
    EXPECT_THAT(first.status().message(), HasSubstr(info.cuda_unavailable_reason));
    EXPECT_FALSE(info.cuda_unavailable_reason.empty());
  } else {
    ASSERT_TRUE(first.ok()) << first.status();
    EXPECT_EQ(first->index(), 0);
  }
  absl::Status beyond = ResolveDevice("cuda:" + std::to_string(gpus), "--device").status();
  EXPECT_EQ(beyond.code(), absl::StatusCode::kFailedPrecondition);
}

TEST(ProbeRuntime, CudaAndNcclAreCompiledIn) {
  const RuntimeInfo info = ProbeRuntime();
  EXPECT_FALSE(info.torch_version.empty());
  EXPECT_TRUE(info.cuda_compiled);
  EXPECT_THAT(info.cuda_version, ::testing::StartsWith("13."));
  EXPECT_TRUE(info.nccl_compiled);
  EXPECT_THAT(info.nccl_version, ::testing::MatchesRegex("2\\.[0-9]+\\.[0-9]+"));
  const std::string text = FormatRuntime(info);
  EXPECT_THAT(text, HasSubstr("libtorch: " + info.torch_version));
  EXPECT_THAT(text, HasSubstr("nccl: " + info.nccl_version));
}

TEST(TorchErrorStatus, OutOfMemoryIsResourceExhaustedNamingTheStage) {
  c10::OutOfMemoryError oom({__func__, __FILE__, __LINE__},
                            "CUDA out of memory. Tried to allocate 20.00 GiB. GPU 0 has a total capacity of 139.8 GiB");
  EXPECT_TRUE(IsOutOfMemory(oom));
  absl::Status s = TorchErrorStatus(oom, "sft step 3 on cuda:0");
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(s.message(), HasSubstr("sft step 3 on cuda:0: out of memory"));
  EXPECT_THAT(s.message(), HasSubstr("Tried to allocate 20.00 GiB"));
}

TEST(TorchErrorStatus, AFailedCpuAllocationIsOutOfMemoryToo) {
  c10::Error e({__func__, __FILE__, __LINE__},
               "[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate memory: you tried "
               "to allocate 274877906944 bytes. Error code 12 (Cannot allocate memory)");
  EXPECT_TRUE(IsOutOfMemory(e));
  EXPECT_EQ(TorchErrorStatus(e, "x").code(), absl::StatusCode::kResourceExhausted);
}

TEST(TorchErrorStatus, OtherErrorsAreInternalNamingTheStage) {
  c10::Error e({__func__, __FILE__, __LINE__}, "shapes do not match");
  EXPECT_FALSE(IsOutOfMemory(e));
  absl::Status s = TorchErrorStatus(e, "generation");
  EXPECT_EQ(s.code(), absl::StatusCode::kInternal);
  EXPECT_THAT(s.message(), HasSubstr("generation: shapes do not match"));
  EXPECT_EQ(TorchErrorStatus(std::runtime_error("boom"), "x").code(), absl::StatusCode::kInternal);
}

}  // namespace
}  // namespace alignd
