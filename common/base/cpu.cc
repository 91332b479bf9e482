#include "common/base/cpu.h"

#include <dlfcn.h>
#include <sched.h>
#include <stdlib.h>
#include <unistd.h>

#include <fstream>
#include <string>
#include <thread>

namespace alignd {

int AvailableCores() {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    int n = CPU_COUNT(&set);
    if (n > 0) return n;
  }
  unsigned hw = std::thread::hardware_concurrency();
  return hw > 0 ? static_cast<int>(hw) : 1;
}

void PreferPassiveOpenMpWait(char** argv) {
  if (::getenv("OMP_WAIT_POLICY") != nullptr) return;
  ::setenv("OMP_WAIT_POLICY", "PASSIVE", 1);
  ::execv("/proc/self/exe", argv);
  // Only reached when exec failed (no /proc, say): run on with the active policy, as before.
}

int SetBlasThreads(int threads) {
  using SetFn = void (*)(int);
  using GetFn = int (*)();
  auto set = reinterpret_cast<SetFn>(::dlsym(RTLD_DEFAULT, "openblas_set_num_threads"));
  auto get = reinterpret_cast<GetFn>(::dlsym(RTLD_DEFAULT, "openblas_get_num_threads"));
  if (set != nullptr && get != nullptr) {
    if (threads > 0) set(threads);
    return get();
  }
  // MKL (inside the wheel's libtorch_cpu): at::set_num_threads already set it; report what it will use.
  auto mkl_get = reinterpret_cast<GetFn>(::dlsym(RTLD_DEFAULT, "mkl_get_max_threads"));
  return mkl_get != nullptr ? mkl_get() : 0;
}

bool CpuHasBf16Matmul() {
  std::ifstream in("/proc/cpuinfo");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("flags", 0) != 0) continue;
    line += ' ';
    return line.find(" avx512_bf16 ") != std::string::npos || line.find(" amx_bf16 ") != std::string::npos;
  }
  return false;
}

}  // namespace alignd
