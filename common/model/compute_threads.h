// The threads tensor math runs on, set in one call.
#ifndef ALIGND_COMMON_MODEL_COMPUTE_THREADS_H_
#define ALIGND_COMMON_MODEL_COMPUTE_THREADS_H_

namespace alignd {

// Sets LibTorch's intra-op thread count (at::set_num_threads) and OpenBLAS's own pool (SetBlasThreads,
// common/base/cpu.h), which the first leaves at every core. Every binary, benchmark and job that takes a thread count
// sets it through this. `threads` >= 1.
void SetComputeThreads(int threads);

// Sets LibTorch's intra-op thread count for the calling thread alone while the object lives, then restores it; for
// roles that share one process (`alignd local`). LibTorch's CPU backend here runs on OpenMP, whose count is per thread,
// as is the wheel's MKL's (tests/common/model/compute_threads_test.cc); at::set_num_threads also sets the count that threads
// which have not run a parallel region yet start with, so a thread started meanwhile inherits `threads`. An OpenBLAS
// pool (SetBlasThreads) is one per process and is left alone. Scopes nest. Construct and destroy on the same thread.
// `threads` >= 1; 0 or less leaves the count as it is.
class ScopedComputeThreads {
 public:
  explicit ScopedComputeThreads(int threads);
  ~ScopedComputeThreads();
  ScopedComputeThreads(const ScopedComputeThreads&) = delete;
  ScopedComputeThreads& operator=(const ScopedComputeThreads&) = delete;

 private:
  int previous_ = 0;  // 0: nothing to restore
};

}  // namespace alignd

#endif  // ALIGND_COMMON_MODEL_COMPUTE_THREADS_H_
