#include "absl/status/status.h"
#include "cli/commands.h"
#include "common/threads.h"

namespace alignd::cli {

int ReportError(const absl::Status& status, std::ostream& err) {
  err << "error: " << absl::StatusCodeToString(status.code()) << ": " << status.message() << "\n";
  return 1;
}

int AvailableCores() { return alignd::AvailableCores(); }

}  // namespace alignd::cli
