// The threads tensor math runs on, set in one call.
#ifndef ALIGND_COMMON_MODEL_COMPUTE_THREADS_H_
#define ALIGND_COMMON_MODEL_COMPUTE_THREADS_H_

namespace alignd {

// Sets LibTorch's intra-op thread count (at::set_num_threads) and OpenBLAS's own pool (SetBlasThreads,
// common/base/cpu.h), which the first leaves at every core. Every binary, benchmark and job that takes a thread count
// sets it through this. `threads` >= 1.
void SetComputeThreads(int threads);

}  // namespace alignd

#endif  // ALIGND_COMMON_MODEL_COMPUTE_THREADS_H_
