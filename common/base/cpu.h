// How many threads tensor math should use by default.
#ifndef ALIGND_COMMON_BASE_CPU_H_
#define ALIGND_COMMON_BASE_CPU_H_

namespace alignd {

// The number of CPUs this process may run on (sched_getaffinity), at least 1. Every binary's --threads defaults to it.
int AvailableCores();

// LibTorch here runs its intra-op threads on GNU OpenMP, whose idle threads spin-wait by default, while Debian's
// OpenBLAS runs matrix products on pthreads of its own: the two fight over the cores, and a 20M-parameter training
// step ran 2.4x slower that way (bench/learner_bench on 2 cores: 348 against 825 tokens/s). libgomp reads
// OMP_WAIT_POLICY once, when it is loaded, before main; so a binary that does tensor math calls this first thing in
// main. When OMP_WAIT_POLICY is unset it sets it to PASSIVE and re-executes the binary (same pid, same arguments);
// a value the user set is kept. If the re-execution fails the process carries on as it is.
void PreferPassiveOpenMpWait(char** argv);

// The BLAS that runs LibTorch's float32 matrix products must stay on the cores a role was given. The PyPI wheel's
// LibTorch carries MKL, whose count at::set_num_threads sets itself; an OpenBLAS in the process (a LibTorch built
// against the system BLAS) keeps a pool of its own that at::set_num_threads does not size, so this sets it. Both are
// looked up at run time. SetComputeThreads (common/model/compute_threads.h) calls at::set_num_threads and this with the
// same count. `threads` 0 only reads. Returns the count the BLAS reports afterwards, or 0 when neither is loaded.
int SetBlasThreads(int threads);

// Whether this CPU has bf16 matrix instructions (AVX512-BF16 or AMX-BF16, from /proc/cpuinfo), with which LibTorch's
// bf16 products (oneDNN) outrun float32 ones; without them bf16 autocast may be slower than float32.
bool CpuHasBf16Matmul();

}  // namespace alignd

#endif  // ALIGND_COMMON_BASE_CPU_H_
