#include "absl/status/status.h"
#include "cli/commands.h"
#include "common/threads.h"

namespace alignd::cli {

int ReportError(const absl::Status& status, std::ostream& err) {
  err << "error: " << absl::StatusCodeToString(status.code()) << ": " << status.message() << "\n";
  return 1;
}

std::optional<int> ParseFlags(FlagSet& flags, const Args& args, absl::string_view description, std::ostream& out,
                              std::ostream& err) {
  absl::Status parsed = flags.Parse(args);
  if (!parsed.ok()) {
    err << "error: " << parsed.message() << "\n" << flags.Usage();
    return 2;
  }
  if (flags.help_requested()) {
    if (!description.empty()) out << description << "\n";
    out << flags.Usage();
    return 0;
  }
  if (!flags.positional().empty()) {
    err << "error: unexpected argument \"" << flags.positional()[0] << "\"\n" << flags.Usage();
    return 2;
  }
  return std::nullopt;
}

int AvailableCores() { return alignd::AvailableCores(); }

}  // namespace alignd::cli
