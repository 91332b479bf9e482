// Validates a submitted job spec: the `alignd train` spec (ParseJobSpec) plus a top-level `resources` section
// that only the coordinator reads:
//
//   resources:
//     learners: 2          # learner ranks, >= 1 (default 1)
//     rollout_workers: 1   # >= 0 (default 0)
//     reward_servers: 0    # >= 0 (default 0)
//     device: cpu          # cpu or cuda (default cpu)
//     priority: 0          # higher is placed first, FIFO within a priority, -1000..1000 (default 0)
//     max_restarts: 3      # restarts after a worker failure before the job fails, 0..100 (default 3)
//
// Errors are INVALID_ARGUMENT naming the source, line and key (`spec:12: resources.learners: must be >= 1, got 0`).
#ifndef ALIGND_SPEC_JOB_VALIDATION_H_
#define ALIGND_SPEC_JOB_VALIDATION_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "proto/alignd.pb.h"
#include "spec/job_spec.h"

namespace alignd {

struct ValidatedSpec {
  std::string name;         // the spec's `name`
  v1::Resources resources;  // with the defaults filled in
  uint32_t max_restarts = 3;
  JobSpec spec;  // the rest of the spec, parsed
};

// Largest accepted spec, in bytes.
inline constexpr size_t kMaxSpecBytes = 1 << 20;

// Parses and checks `spec_yaml` (at most kMaxSpecBytes): the resources above, then the rest as ParseJobSpec does, then
// what a gang can run (rollout workers and reward servers only for ppo/grpo/rloo/online_dpo; train.batch_size
// divisible by the learners). With non-empty `path_roots`, every path in the spec (model.path, data.train, data.mix,
// data.eval, data.ptx, output_dir, and rewards[i].path/token_file/tls_ca/tls_cert/tls_key) must lie, after lexical
// normalisation (symlinks are not resolved), under one of the roots; relative paths are taken relative to the first
// root (the working directory workers run in). Every error is INVALID_ARGUMENT naming `source` and the key.
absl::StatusOr<ValidatedSpec> ValidateJobSpec(absl::string_view spec_yaml, absl::string_view source = "spec",
                                              const std::vector<std::string>& path_roots = {});

}  // namespace alignd

#endif  // ALIGND_SPEC_JOB_VALIDATION_H_
