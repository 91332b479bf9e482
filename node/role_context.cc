#include "node/role_context.h"

#include "absl/strings/str_cat.h"
#include "common/base/cpu.h"
#include "common/model/device.h"
#include "spec/job_validation.h"

namespace alignd::node {

c10::Device JobDevice(const RoleContext& context, const JobSpec& spec) {
  return spec.device == "cuda" && context.torch_device.is_cuda() ? context.torch_device : c10::Device(c10::kCPU);
}

collective::StoreEndpoint Endpoint(const RoleContext& context, const v1::Assignment& assignment,
                                   const std::string& group) {
  return {assignment.store_address(), group, assignment.job_credential(), context.peer_credentials};
}

absl::Status RunRole(const RoleContext& context, const v1::Assignment& a,
                     absl::FunctionRef<absl::Status(const JobSpec&)> role) {
  auto validated = ValidateJobSpec(a.spec_yaml(), absl::StrCat("job ", a.job_id()));
  if (!validated.ok()) return validated.status();
  JobSpec spec = validated->spec;
  if (spec.threads <= 0) spec.threads = context.threads > 0 ? context.threads : AvailableCores();
  try {
    return role(spec);
  } catch (const std::exception& e) {
    return TorchErrorStatus(e, absl::StrCat(v1::Role_Name(a.role()), " of job ", a.job_id()));
  }
}

}  // namespace alignd::node
