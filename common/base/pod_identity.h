// Who an `alignd worker` is inside a Kubernetes pod: the host it advertises to the coordinator and to its peers, and
// its pod name and StatefulSet ordinal. deploy/k8s sets these environment variables through the downward API:
//   POD_NAME                 metadata.name
//   POD_IP                   status.podIP
//   ALIGND_STATEFULSET       the StatefulSet the pod belongs to (its pods are named <set>-<ordinal>); unset for the
//                            pods of a Deployment, whose names carry no ordinal
//   ALIGND_ADVERTISE_DOMAIN  the domain of the headless Service the pod has a DNS name under
//                            (alignd-learner.alignd.svc.cluster.local)
//
// The advertised host is the first of:
//   1. --advertise-host, or $ALIGND_ADVERTISE_HOST (the flag's variable);
//   2. with ALIGND_ADVERTISE_DOMAIN: <POD_NAME>.<domain> for a StatefulSet's pod (stable across restarts), else
//      <POD_IP, dots or colons as dashes>.<domain> (the name a headless Service gives an endpoint without a hostname);
//   3. POD_IP;
//   4. 127.0.0.1.
// DNS names are what make TLS between workers work in a cluster: a peer checks that the certificate names the host
// it dialled, and one wildcard certificate (*.alignd-learner.alignd.svc.cluster.local) covers every pod of a Service,
// which no certificate can do for pod IPs.
//
// The pod name is not sent as the worker id: the coordinator gives ids, and a restarted process always registers as
// a new worker (node/control_channel.h), since re-registering under an id whose lease is still live would keep the dead
// process's assignment (coordinator/worker_registry.h).
#ifndef ALIGND_COMMON_BASE_POD_IDENTITY_H_
#define ALIGND_COMMON_BASE_POD_IDENTITY_H_

#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/base/flags.h"

namespace alignd {

inline constexpr char kPodNameEnv[] = "POD_NAME";
inline constexpr char kPodIpEnv[] = "POD_IP";
inline constexpr char kStatefulSetEnv[] = "ALIGND_STATEFULSET";
inline constexpr char kAdvertiseDomainEnv[] = "ALIGND_ADVERTISE_DOMAIN";

struct WorkerIdentity {
  std::string advertise_host;  // never empty
  std::string pod_name;        // "" outside a pod
  std::optional<int> ordinal;  // set for a StatefulSet's pod
};

// Resolves the identity from `advertise_host` (--advertise-host or $ALIGND_ADVERTISE_HOST; "" when neither is given)
// and the variables above, read through `env`. Pure: `env` is its only input besides the flag. INVALID_ARGUMENT naming
// the variable for: ALIGND_STATEFULSET without POD_NAME, a POD_NAME that is not "<set>-<ordinal>" (ordinal in decimal,
// no leading zeros, below 2^31), a pod name that is not a DNS label, a POD_IP that is not an IP address, a domain that
// is not a DNS name, a domain with neither a StatefulSet pod name nor POD_IP to put under it, and an advertised IPv6
// address (workers join "host:port" without brackets: advertise a DNS name instead).
absl::StatusOr<WorkerIdentity> ResolveWorkerIdentity(absl::string_view advertise_host, const FlagSet::EnvLookup& env);

// "pod alignd-learner-3, ordinal 3", "pod alignd-rollout-5d4f-x2x4q", or "" outside a pod: for the startup line.
std::string DescribePod(const WorkerIdentity& identity);

}  // namespace alignd

#endif  // ALIGND_COMMON_BASE_POD_IDENTITY_H_
