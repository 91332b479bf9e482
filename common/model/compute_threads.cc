#include "common/model/compute_threads.h"

#include <ATen/Parallel.h>

#include "common/base/cpu.h"

namespace alignd {

void SetComputeThreads(int threads) {
  at::set_num_threads(threads);
  SetBlasThreads(threads);
}

ScopedComputeThreads::ScopedComputeThreads(int threads) : previous_(at::get_num_threads()) {
  at::set_num_threads(threads);
}

ScopedComputeThreads::~ScopedComputeThreads() { at::set_num_threads(previous_); }

}  // namespace alignd
