// Small file helpers with Status errors that name the path.
#ifndef ALIGND_COMMON_BASE_FILE_UTIL_H_
#define ALIGND_COMMON_BASE_FILE_UTIL_H_

#include <functional>
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

// Whether `path` names anything stat() can reach (file, directory, or a link's target); false on any error.
bool PathExists(const std::string& path);

// Writes the folder `dir` as a whole: `write` fills a fresh staging folder beside it (`DIR.partial-PID`, its parents
// made); when `write` succeeds the staging folder is renamed to `dir`, and a previous `dir` is moved aside first and
// removed only after that rename succeeded (it is put back when the rename fails). When `write` fails, the staging
// folder is removed, `dir` is untouched, and its error is returned. So a reader finds the previous folder or the new
// one, never a partial one (between the two renames, none). INTERNAL naming `dir` when a rename fails.
absl::Status WriteDirAtomically(const std::string& dir,
                                const std::function<absl::Status(const std::string& staging)>& write);

// `a/b` with exactly one separator between them (one slash of two is dropped); an empty side yields the other.
std::string JoinPath(absl::string_view a, absl::string_view b);

}  // namespace alignd

#endif  // ALIGND_COMMON_BASE_FILE_UTIL_H_
