// `alignd coordinator`, split so that tests can run it in-process: ServeCoordinator starts the server, reports the
// bound port, and serves until `stop` is notified.
#ifndef ALIGND_CLI_COORDINATOR_COMMAND_H_
#define ALIGND_CLI_COORDINATOR_COMMAND_H_

#include <functional>
#include <ostream>

#include "absl/synchronization/notification.h"
#include "cli/commands.h"

namespace alignd::cli {

// Parses the `alignd coordinator` flags, starts the server, calls `ready(port)` once it listens, and returns after
// `stop` is notified and the server has shut down. Exit codes as RunCoordinator.
int ServeCoordinator(const Args& args, std::ostream& out, std::ostream& err, const std::function<void(int)>& ready,
                     absl::Notification* stop);

}  // namespace alignd::cli

#endif  // ALIGND_CLI_COORDINATOR_COMMAND_H_
