// How many threads tensor math should use by default.
#ifndef ALIGND_COMMON_THREADS_H_
#define ALIGND_COMMON_THREADS_H_

namespace alignd {

// The number of CPUs this process may run on (sched_getaffinity), at least 1. Every binary's --threads defaults to it.
int AvailableCores();

}  // namespace alignd

#endif  // ALIGND_COMMON_THREADS_H_
