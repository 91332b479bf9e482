#include "common/model/compute_threads.h"

#include <ATen/Parallel.h>

#include "common/base/cpu.h"

namespace alignd {

void SetComputeThreads(int threads) {
  at::set_num_threads(threads);
  SetBlasThreads(threads);
}

ScopedComputeThreads::ScopedComputeThreads(int threads) {
  if (threads <= 0) return;
  previous_ = at::get_num_threads();  // also settles this thread's own count before it is changed
  if (previous_ != threads) {
    at::set_num_threads(threads);
  } else {
    previous_ = 0;
  }
}

ScopedComputeThreads::~ScopedComputeThreads() {
  if (previous_ > 0) at::set_num_threads(previous_);
}

}  // namespace alignd
