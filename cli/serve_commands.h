// `alignd rollout` and `alignd reward`: serve alignd.v1.Rollout / alignd.v1.Reward on one port until SIGINT/SIGTERM.
// Split like cli/coordinator_command.h so tests can run them in-process: Serve* starts the server, calls
// `ready(port)` once it listens, and returns after `stop` is notified and the server has shut down.
#ifndef ALIGND_CLI_SERVE_COMMANDS_H_
#define ALIGND_CLI_SERVE_COMMANDS_H_

#include <functional>
#include <ostream>

#include "absl/synchronization/notification.h"
#include "cli/commands.h"

namespace alignd::cli {

// Parse the flags, load what the server needs, serve, call `ready(port)` once listening, and return 0 after `stop` is
// notified and the server has shut down (0 at once for --help); 2 for bad flags (or, for reward, an INVALID_ARGUMENT
// from making the scorers), 1 when loading or listening fails. `stop` is not owned and must outlive the call.
int ServeRollout(const Args& args, std::ostream& out, std::ostream& err, const std::function<void(int)>& ready,
                 absl::Notification* stop);
int ServeReward(const Args& args, std::ostream& out, std::ostream& err, const std::function<void(int)>& ready,
                absl::Notification* stop);

// `alignd rollout --model DIR [--listen HOST:PORT] [...]` and `alignd reward [--listen HOST:PORT] [scorer flags]`:
// Serve* under a SIGINT/SIGTERM handler. Exit codes: 0 after a signal, 1 when the server cannot start, 2 for bad flags.
int RunRolloutServer(const Args& args, std::ostream& out, std::ostream& err);
int RunRewardServer(const Args& args, std::ostream& out, std::ostream& err);

}  // namespace alignd::cli

#endif  // ALIGND_CLI_SERVE_COMMANDS_H_
