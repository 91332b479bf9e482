// gRPC target addresses.
#ifndef ALIGND_COORDINATOR_ADDRESS_H_
#define ALIGND_COORDINATOR_ADDRESS_H_

#include "absl/strings/string_view.h"

namespace alignd::coordinator {

// Whether `target` ("host:port", "[v6]:port", "ipv4:...", "unix:...") names this machine only: localhost, 127.0.0.0/8,
// ::1 or a Unix socket. Anything else (including 0.0.0.0 and names that would need DNS) is not loopback.
bool IsLoopbackAddress(absl::string_view target);

}  // namespace alignd::coordinator

#endif  // ALIGND_COORDINATOR_ADDRESS_H_
