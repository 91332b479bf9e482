// LOG for alignd's own code is glog's. LibTorch's <c10/util/Logging.h> (reached through almost any torch header)
// defines a LOG of its own, c10's logger, which drops INFO by default; whichever header comes last owns the name, so
// a .cc that includes glog before a torch header loses its INFO lines without a word (a GPU check found the workers'
// "registered", "assignment" and "weights arrive over" lines missing). Include this header after every other one:
// it includes both, then gives LOG back to glog.
#ifndef ALIGND_COMMON_BASE_LOGGING_H_
#define ALIGND_COMMON_BASE_LOGGING_H_

#include <c10/util/Logging.h>
#include <glog/logging.h>

#undef LOG
#define LOG(severity) COMPACT_GOOGLE_LOG_##severity.stream()

#endif  // ALIGND_COMMON_BASE_LOGGING_H_
