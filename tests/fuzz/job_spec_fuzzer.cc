// A job spec (YAML or JSON) for ParseJobSpec and ValidateJobSpec (with path roots, so that the
// path checks run). Each accepts it or says why with INVALID_ARGUMENT; nothing throws. A spec the coordinator accepts
// has a name and resources within their documented ranges.
#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"
#include "spec/job_spec.h"
#include "spec/job_validation.h"
#include "tests/fuzz/fuzz_check.h"

namespace alignd {
namespace {

void Run(const uint8_t* data, size_t size) {
  absl::string_view text(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<JobSpec> spec = ParseJobSpec(text, "fuzz.yaml");
  if (!spec.ok()) {
    FUZZ_CHECK(fuzz::IsErrorOf(spec.status(), {absl::StatusCode::kInvalidArgument}), spec.status());
  } else {
    FUZZ_CHECK(!spec->name.empty() && !spec->data.train.empty(), "accepted without name or data.train");
  }
  absl::StatusOr<ValidatedSpec> validated = ValidateJobSpec(text, "fuzz.yaml", {"/srv/alignd", "/data"});
  if (!validated.ok()) {
    FUZZ_CHECK(fuzz::IsErrorOf(validated.status(), {absl::StatusCode::kInvalidArgument}), validated.status());
    return;
  }
  const v1::Resources& r = validated->resources;
  FUZZ_CHECK(!validated->name.empty() && validated->name == validated->spec.name, validated->name);
  FUZZ_CHECK(r.learners() >= 1 && r.learners() <= 1024 && r.rollout_workers() <= 1024 && r.reward_servers() <= 1024,
             r.ShortDebugString());
  FUZZ_CHECK(validated->max_restarts <= 100, validated->max_restarts);
}

}  // namespace
}  // namespace alignd

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  alignd::Run(data, size);
  return 0;
}
