// `alignd version`: alignd's version and what its LibTorch was built with and finds at run time.
#include "cli/commands.h"
#include "common/model/device.h"

namespace alignd::cli {

int RunVersion(const Args& args, std::ostream& out, std::ostream& err) {
  FlagSet flags("alignd version");
  if (std::optional<int> exit = ParseFlags(flags, args,
                                           "alignd version: alignd's version, LibTorch's, whether CUDA and NCCL are "
                                           "compiled in (and their versions), and the CUDA devices found.",
                                           out, err)) {
    return *exit;
  }
  out << "alignd: " << kAligndVersion << "\n" << FormatRuntime(ProbeRuntime());
  return 0;
}

}  // namespace alignd::cli
