// --threads must size OpenBLAS's own pool as well as LibTorch's (common/threads.h).
#include "common/threads.h"

#include <ATen/Parallel.h>
#include <torch/nn.h>

#include <fstream>
#include <iterator>
#include <string>

#include "gtest/gtest.h"

namespace alignd {
namespace {

TEST(SetBlasThreads, SizesOpenBlasPoolAndProductsStillWork) {
  // Linked against LibTorch, so the process has the BLAS that scripts/bootstrap installs: OpenBLAS.
  ASSERT_EQ(SetBlasThreads(1), 1) << "no OpenBLAS in this process (is libopenblas0-pthread installed?)";
  torch::Tensor a = torch::randn({64, 64}), b = torch::randn({64, 64});
  torch::Tensor one = torch::mm(a, b);
  const int cores = AvailableCores();
  EXPECT_EQ(SetBlasThreads(cores), cores);
  EXPECT_TRUE(torch::allclose(torch::mm(a, b), one, 1e-5, 1e-5));
  EXPECT_EQ(SetBlasThreads(0), cores);  // 0 only reads the count
}

TEST(CpuHasBf16Matmul, AgreesWithProcCpuinfo) {
  std::ifstream in("/proc/cpuinfo");
  std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const bool listed = all.find(" avx512_bf16") != std::string::npos || all.find(" amx_bf16") != std::string::npos;
  EXPECT_EQ(CpuHasBf16Matmul(), listed);
}

}  // namespace
}  // namespace alignd
