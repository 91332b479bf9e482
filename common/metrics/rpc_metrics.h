// A gRPC server interceptor that records every call's handling time in the Prometheus histogram
// alignd_rpc_server_handling_seconds{method, code} (common/metrics/prometheus.h).
#ifndef ALIGND_COMMON_METRICS_RPC_METRICS_H_
#define ALIGND_COMMON_METRICS_RPC_METRICS_H_

#include <grpcpp/server_builder.h>

namespace alignd {

// Adds the interceptor to `builder` (before BuildAndStart).
void AddRpcMetrics(grpc::ServerBuilder& builder);

}  // namespace alignd

#endif  // ALIGND_COMMON_METRICS_RPC_METRICS_H_
