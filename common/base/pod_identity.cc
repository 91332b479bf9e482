#include "common/base/pod_identity.h"

#include <arpa/inet.h>

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "common/base/status.h"

namespace alignd {
namespace {

std::string Get(const FlagSet::EnvLookup& env, const char* name) { return env(name).value_or(""); }

// RFC 1123 label, lower case, as Kubernetes names pods and Services.
bool IsDnsLabel(absl::string_view s) {
  if (s.empty() || s.size() > 63 || s.front() == '-' || s.back() == '-') return false;
  for (char c : s) {
    if (!(absl::ascii_islower(c) || absl::ascii_isdigit(c) || c == '-')) return false;
  }
  return true;
}

bool IsDnsName(absl::string_view s) {
  if (s.empty() || s.size() > 253) return false;
  for (absl::string_view label : absl::StrSplit(s, '.')) {
    if (!IsDnsLabel(label)) return false;
  }
  return true;
}

bool IsIpv4(const std::string& s) {
  in_addr a;
  return inet_pton(AF_INET, s.c_str(), &a) == 1;
}

bool IsIpv6(const std::string& s) {
  in6_addr a;
  return inet_pton(AF_INET6, s.c_str(), &a) == 1;
}

// "<set>-<ordinal>" -> ordinal.
absl::StatusOr<int> OrdinalOf(const std::string& pod_name, const std::string& set) {
  const std::string prefix = absl::StrCat(set, "-");
  const absl::string_view rest = absl::string_view(pod_name).substr(std::min(prefix.size(), pod_name.size()));
  int ordinal = 0;
  if (pod_name.compare(0, prefix.size(), prefix) != 0 || rest.empty() || rest.size() > 10 ||
      (rest.size() > 1 && rest[0] == '0') || !std::all_of(rest.begin(), rest.end(), absl::ascii_isdigit) ||
      !absl::SimpleAtoi(rest, &ordinal)) {
    return absl::InvalidArgumentError(absl::StrCat(kPodNameEnv, " \"", pod_name, "\" is not a pod of StatefulSet \"",
                                                   set, "\" (", kStatefulSetEnv, "): expected ", set, "-<ordinal>"));
  }
  return ordinal;
}

// The advertised host (see the header), from inputs already checked one by one.
absl::StatusOr<std::string> AdvertisedHost(absl::string_view flag, const WorkerIdentity& id, const std::string& pod_ip,
                                           const std::string& domain) {
  std::string host;
  if (!flag.empty()) {
    host = std::string(flag);
  } else if (!domain.empty()) {
    if (id.ordinal.has_value()) {
      host = absl::StrCat(id.pod_name, ".", domain);
    } else if (!pod_ip.empty()) {
      host = absl::StrCat(absl::StrReplaceAll(pod_ip, {{".", "-"}, {":", "-"}}), ".", domain);
    } else {
      return absl::InvalidArgumentError(absl::StrCat(kAdvertiseDomainEnv, " needs a name to put under it: ",
                                                     kStatefulSetEnv, " with ", kPodNameEnv, ", or ", kPodIpEnv));
    }
    if (!IsDnsName(host)) {
      return absl::InvalidArgumentError(absl::StrCat("advertised host \"", host, "\" is not a DNS name"));
    }
  } else {
    host = pod_ip.empty() ? "127.0.0.1" : pod_ip;
  }
  if (host.find(':') != std::string::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("advertised host \"", host, "\" holds a ':' (a port, or an IPv6 address, which workers cannot ",
                     "advertise): give a host name or an IPv4 address, or set ", kAdvertiseDomainEnv));
  }
  return host;
}

}  // namespace

absl::StatusOr<WorkerIdentity> ResolveWorkerIdentity(absl::string_view advertise_host, const FlagSet::EnvLookup& env) {
  WorkerIdentity id;
  id.pod_name = Get(env, kPodNameEnv);
  const std::string pod_ip = Get(env, kPodIpEnv), set = Get(env, kStatefulSetEnv),
                    domain = Get(env, kAdvertiseDomainEnv);
  if (!id.pod_name.empty() && !IsDnsLabel(id.pod_name)) {
    return absl::InvalidArgumentError(
        absl::StrCat(kPodNameEnv, " \"", id.pod_name, "\" is not a pod name (a lower-case DNS label)"));
  }
  if (!set.empty()) {
    if (id.pod_name.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(kStatefulSetEnv, " is \"", set, "\" but ", kPodNameEnv,
                                                     " is not set (set it from the downward API: metadata.name)"));
    }
    ASSIGN_OR_RETURN(id.ordinal, OrdinalOf(id.pod_name, set));
  }
  if (!pod_ip.empty() && !IsIpv4(pod_ip) && !IsIpv6(pod_ip)) {
    return absl::InvalidArgumentError(absl::StrCat(kPodIpEnv, " \"", pod_ip, "\" is not an IP address"));
  }
  if (!domain.empty() && !IsDnsName(domain)) {
    return absl::InvalidArgumentError(
        absl::StrCat(kAdvertiseDomainEnv, " \"", domain, "\" is not a DNS name (lower-case labels joined by dots)"));
  }
  ASSIGN_OR_RETURN(id.advertise_host, AdvertisedHost(advertise_host, id, pod_ip, domain));
  return id;
}

std::string DescribePod(const WorkerIdentity& identity) {
  if (identity.pod_name.empty()) return "";
  std::string out = absl::StrCat("pod ", identity.pod_name);
  if (identity.ordinal.has_value()) absl::StrAppend(&out, ", ordinal ", *identity.ordinal);
  return out;
}

}  // namespace alignd
