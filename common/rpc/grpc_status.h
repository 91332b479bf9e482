// The one place where absl::Status and grpc::Status are converted, both ways. Codes map one to one (the canonical
// codes are the same numbers); messages are kept.
#ifndef ALIGND_COMMON_RPC_GRPC_STATUS_H_
#define ALIGND_COMMON_RPC_GRPC_STATUS_H_

#include <grpcpp/support/status.h>

#include "absl/status/status.h"

namespace alignd {

grpc::Status ToGrpcStatus(const absl::Status& status);
absl::Status FromGrpcStatus(const grpc::Status& status);

}  // namespace alignd

#endif  // ALIGND_COMMON_RPC_GRPC_STATUS_H_
