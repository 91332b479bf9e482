#include "common/threads.h"

#include <sched.h>
#include <stdlib.h>
#include <unistd.h>

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

}  // namespace alignd
