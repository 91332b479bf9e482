// FUZZ_CHECK for fuzz targets: a broken contract aborts, which libFuzzer reports as a crash (saving the input) and the
// replay test as a failure. Messages go to stderr with the condition and what was found.
#ifndef ALIGND_TESTS_FUZZ_FUZZ_CHECK_H_
#define ALIGND_TESTS_FUZZ_FUZZ_CHECK_H_

#include <cstdio>
#include <cstdlib>
#include <initializer_list>
#include <sstream>
#include <string>

#include "absl/status/status.h"

#define FUZZ_CHECK(cond, what)                                                              \
  do {                                                                                      \
    if (!(cond)) {                                                                          \
      std::ostringstream fuzz_check_message;                                                \
      fuzz_check_message << what;                                                           \
      std::fprintf(stderr, "%s:%d: FUZZ_CHECK(%s) failed: %s\n", __FILE__, __LINE__, #cond, \
                   fuzz_check_message.str().c_str());                                       \
      std::abort();                                                                         \
    }                                                                                       \
  } while (0)

namespace alignd::fuzz {

// Whether `status` is an error with one of `codes` and a message that says something.
inline bool IsErrorOf(const absl::Status& status, std::initializer_list<absl::StatusCode> codes) {
  if (status.ok() || status.message().empty()) return false;
  for (absl::StatusCode code : codes) {
    if (status.code() == code) return true;
  }
  return false;
}

}  // namespace alignd::fuzz

#endif  // ALIGND_TESTS_FUZZ_FUZZ_CHECK_H_
