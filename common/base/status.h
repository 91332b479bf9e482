// Status helpers shared by every alignd module. The installed Abseil (20220623) has no status macros,
// so they are defined once here.
#ifndef ALIGND_COMMON_BASE_STATUS_H_
#define ALIGND_COMMON_BASE_STATUS_H_

#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define ALIGND_STATUS_CONCAT_INNER_(a, b) a##b
#define ALIGND_STATUS_CONCAT_(a, b) ALIGND_STATUS_CONCAT_INNER_(a, b)

// Evaluates `expr` (an absl::Status) and returns it from the enclosing function when it is not OK.
#define RETURN_IF_ERROR(expr)                        \
  do {                                               \
    ::absl::Status alignd_status_ = (expr);          \
    if (!alignd_status_.ok()) return alignd_status_; \
  } while (0)

// `ASSIGN_OR_RETURN(auto x, MakeX());` assigns the value of an absl::StatusOr or returns its error.
#define ASSIGN_OR_RETURN(lhs, rexpr) \
  ASSIGN_OR_RETURN_IMPL_(ALIGND_STATUS_CONCAT_(alignd_statusor_, __LINE__), lhs, rexpr)
#define ASSIGN_OR_RETURN_IMPL_(statusor, lhs, rexpr) \
  auto statusor = (rexpr);                           \
  if (!statusor.ok()) return statusor.status();      \
  lhs = std::move(statusor).value()

namespace alignd {

// Returns `status` with `prefix: ` in front of its message, keeping the code. OK stays OK.
absl::Status Annotate(const absl::Status& status, absl::string_view prefix);

}  // namespace alignd

#endif  // ALIGND_COMMON_BASE_STATUS_H_
