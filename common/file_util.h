// Small file helpers with Status errors that name the path.
#ifndef ALIGND_COMMON_FILE_UTIL_H_
#define ALIGND_COMMON_FILE_UTIL_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace alignd {

// Whole file as bytes. NOT_FOUND when it does not exist, PERMISSION_DENIED / INTERNAL on other failures.
absl::StatusOr<std::string> ReadFile(const std::string& path);

// Writes `contents` to a temporary file next to `path`, flushes it, then renames it over `path`: readers see the old
// file or the new one, never a partial one.
absl::Status WriteFileAtomic(const std::string& path, absl::string_view contents);

// Creates `path` and its parents (like mkdir -p). OK when it already exists as a directory.
absl::Status MakeDirs(const std::string& path);

bool PathExists(const std::string& path);

// `a/b` with exactly one separator.
std::string JoinPath(absl::string_view a, absl::string_view b);

}  // namespace alignd

#endif  // ALIGND_COMMON_FILE_UTIL_H_
