#include "coordinator/job_store.h"

#include "absl/strings/str_format.h"

namespace alignd::coordinator {

std::string JobIdForSeq(int64_t seq) { return absl::StrFormat("job-%06d", seq); }

}  // namespace alignd::coordinator
