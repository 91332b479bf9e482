#include "common/model/compute_threads.h"

#include <ATen/Parallel.h>

#include "common/base/cpu.h"

namespace alignd {

void SetComputeThreads(int threads) {
  at::set_num_threads(threads);
  SetBlasThreads(threads);
}

}  // namespace alignd
