// gRPC target addresses.
#ifndef ALIGND_COORDINATOR_ADDRESS_H_
#define ALIGND_COORDINATOR_ADDRESS_H_

#include <string>

#include "absl/strings/string_view.h"

namespace alignd::coordinator {

// Whether `target` ("host:port", "[v6]:port", "ipv4:...", "unix:...") names this machine only: localhost, 127.0.0.0/8,
// ::1 or a Unix socket. Anything else (including 0.0.0.0 and names that would need DNS) is not loopback.
bool IsLoopbackAddress(absl::string_view target);

// The host part of "host:port" or "[v6]:port" (without brackets); the whole string when there is no port.
std::string HostOf(absl::string_view address);

}  // namespace alignd::coordinator

#endif  // ALIGND_COORDINATOR_ADDRESS_H_
