// `alignd coordinator`, split so that tests can run it in-process: ServeCoordinator starts the server, reports the
// bound port, and serves until `stop` is notified.
#ifndef ALIGND_CLI_COORDINATOR_COMMAND_H_
#define ALIGND_CLI_COORDINATOR_COMMAND_H_

#include <functional>
#include <memory>
#include <ostream>
#include <string>

#include "absl/status/statusor.h"
#include "absl/synchronization/notification.h"
#include "cli/commands.h"
#include "common/metrics/http_server.h"
#include "coordinator/web_ui.h"

namespace alignd::cli {

// Parses the `alignd coordinator` flags, starts the server, calls `ready(port)` once it listens, and returns after
// `stop` is notified and the server has shut down. Exit codes as RunCoordinator.
int ServeCoordinator(const Args& args, std::ostream& out, std::ostream& err, const std::function<void(int)>& ready,
                     absl::Notification* stop);

// `--http-listen`: serves `web` (the coordinator's page) on `listen` and prints "page on http://HOST:PORT/" to `out`;
// nullptr for an empty `listen`. The server must be destroyed before `web`.
absl::StatusOr<std::unique_ptr<HttpServer>> StartPage(coordinator::WebUi* web, const std::string& listen,
                                                      std::ostream& out);

}  // namespace alignd::cli

#endif  // ALIGND_CLI_COORDINATOR_COMMAND_H_
