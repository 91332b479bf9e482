// The one place where absl::Status and grpc::Status are converted, both ways. Codes map one to one (the canonical
// codes are the same numbers); messages are kept.
#ifndef ALIGND_COMMON_RPC_GRPC_STATUS_H_
#define ALIGND_COMMON_RPC_GRPC_STATUS_H_

#include <grpcpp/support/status.h>

#include <type_traits>
#include <utility>

#include "absl/status/status.h"

namespace alignd {

grpc::Status ToGrpcStatus(const absl::Status& status);
absl::Status FromGrpcStatus(const grpc::Status& status);

// Runs an RPC handler's body and converts its status once: every service writes its handlers as
//
//   return HandleRpc([&]() -> absl::Status { ...; return absl::OkStatus(); });
//
// so that errors travel as absl::Status (RETURN_IF_ERROR, ASSIGN_OR_RETURN) up to this one conversion. Exceptions
// are not caught: code that may throw (LibTorch's c10::Error) turns them into a Status at its own module's edge, and
// anything that escapes that is a bug gRPC reports as UNKNOWN.
template <typename Body>
grpc::Status HandleRpc(Body&& body) {
  static_assert(std::is_same_v<std::invoke_result_t<Body>, absl::Status>, "an RPC body returns absl::Status");
  return ToGrpcStatus(std::forward<Body>(body)());
}

}  // namespace alignd

#endif  // ALIGND_COMMON_RPC_GRPC_STATUS_H_
