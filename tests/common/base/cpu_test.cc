// --threads must size the BLAS's threads as well as LibTorch's (common/base/cpu.h, common/model/compute_threads.h).
#include "common/base/cpu.h"

#include <ATen/Parallel.h>
#include <torch/nn.h>

#include <fstream>
#include <iterator>
#include <string>

#include "common/model/compute_threads.h"
#include "gtest/gtest.h"

namespace alignd {
namespace {

TEST(SetComputeThreads, SizesTheBlasAndProductsStillWork) {
  // Linked against the wheel's LibTorch, so the process has its BLAS (MKL); an OpenBLAS would be sized the same way.
  SetComputeThreads(1);
  ASSERT_EQ(SetBlasThreads(0), 1) << "no BLAS found in this process, or it ignores the count";
  EXPECT_EQ(at::get_num_threads(), 1);
  torch::Tensor a = torch::randn({64, 64}), b = torch::randn({64, 64});
  torch::Tensor one = torch::mm(a, b);
  const int cores = AvailableCores();
  SetComputeThreads(cores);
  EXPECT_EQ(SetBlasThreads(0), cores);  // 0 only reads the count
  EXPECT_EQ(at::get_num_threads(), cores);
  EXPECT_TRUE(torch::allclose(torch::mm(a, b), one, 1e-5, 1e-5));
}

TEST(CpuHasBf16Matmul, AgreesWithProcCpuinfo) {
  std::ifstream in("/proc/cpuinfo");
  std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const bool listed = all.find(" avx512_bf16") != std::string::npos || all.find(" amx_bf16") != std::string::npos;
  EXPECT_EQ(CpuHasBf16Matmul(), listed);
}

}  // namespace
}  // namespace alignd
