// The threads tensor math runs on, set in one call.
#ifndef ALIGND_COMMON_COMPUTE_THREADS_H_
#define ALIGND_COMMON_COMPUTE_THREADS_H_

namespace alignd {

// Sets LibTorch's intra-op thread count (at::set_num_threads) and OpenBLAS's own pool (SetBlasThreads,
// common/threads.h), which the first leaves at every core. Every binary, benchmark and job that takes a thread count
// sets it through this. `threads` >= 1.
void SetComputeThreads(int threads);

// LibTorch's intra-op thread count for the calling thread while in scope, restored on destruction. LibTorch's CPU
// backend here runs on OpenMP, whose thread count is a per-thread setting (and at::set_num_threads sets MKL's count
// thread-locally too), so roles that share a process (`alignd local`) each keep their own: one role's guard leaves
// the counts of threads that already ran tensor math as they are. Two caveats, both process-wide: a thread's first
// tensor math takes the count most recently set by any thread, and an OpenBLAS pool (a LibTorch built against the
// system BLAS; not the wheel's) has one count for the process, which this leaves to SetComputeThreads. Construct and
// destroy on the same thread. `threads` >= 1; 0 or less leaves the count as it is.
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

#endif  // ALIGND_COMMON_COMPUTE_THREADS_H_
