// `alignctl health`: the client of --health-listen, for the image's HEALTHCHECK and for scripts.
#include <iostream>

#include "absl/time/time.h"
#include "cli/commands.h"
#include "common/rpc/health_server.h"

namespace alignd::cli {

int RunHealth(const Args& args, std::ostream& out, std::ostream& err) {
  FlagSet flags("alignctl health [--address=HOST:PORT] [--service=NAME] [--timeout=SECONDS]");
  flags.String("address", "127.0.0.1:8081", "HOST:PORT of the plaintext health server (--health-listen)",
               "ALIGND_HEALTH_ADDRESS");
  flags.String("service", "", "service to ask about (\"\": the process as a whole)");
  flags.Double("timeout", 3, "deadline of the call, in seconds");
  if (auto code = ParseFlags(flags, args,
                             "Asks a plaintext grpc.health.v1 server whether it serves: exit 0 when it answers "
                             "SERVING, 1 otherwise (the answer, or why none came, is printed).",
                             out, err)) {
    return *code;
  }
  if (!(flags.GetDouble("timeout") > 0)) {
    err << "error: --timeout must be > 0\n";
    return 2;
  }
  const std::string address = flags.GetString("address");
  auto status = CheckHealth(address, flags.GetString("service"), absl::Seconds(flags.GetDouble("timeout")));
  if (!status.ok()) return ReportError(status.status(), err);
  static constexpr const char* kNames[] = {"UNKNOWN", "SERVING", "NOT_SERVING", "SERVICE_UNKNOWN"};
  const char* name = *status >= 0 && *status < 4 ? kNames[*status] : "UNRECOGNISED";
  (*status == 1 ? out : err) << address << ": " << name << "\n";
  return *status == 1 ? 0 : 1;
}

}  // namespace alignd::cli
