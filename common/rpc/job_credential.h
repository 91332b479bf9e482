// Job credentials: the secret a job's members show each other's servers (Rollout, Reward, Rendezvous) on every call.
//
// The coordinator mints one per job attempt with a key of its own (a fresh random key each start) and hands it out in
// the gang's assignments; every worker gets the key when it registers, so it can check any credential without a
// round trip: "ajc1.<attempt>.<job id>.<HMAC-SHA256(key, job id, attempt) in hex>". A credential therefore names the
// job and attempt it was issued for, and cannot be forged or moved to another job without the key. What a worker does
// with a verified credential that is not for its current job (PERMISSION_DENIED) is the worker's rule (node/routers.h).
#ifndef ALIGND_COMMON_RPC_JOB_CREDENTIAL_H_
#define ALIGND_COMMON_RPC_JOB_CREDENTIAL_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace alignd {

// 32 random bytes from OpenSSL's RAND_bytes (seeded by the OS). Throws std::runtime_error when it fails (no Status).
std::string NewCredentialKey();

// The credential of `job_id`'s attempt `attempt` under `key`.
std::string MintJobCredential(absl::string_view key, absl::string_view job_id, uint32_t attempt);

struct JobIdentity {
  std::string job_id;
  uint32_t attempt = 0;
  bool operator==(const JobIdentity& o) const { return job_id == o.job_id && attempt == o.attempt; }
};

// The job and attempt `credential` was minted for under `key`. UNAUTHENTICATED when it is malformed or its MAC does
// not match (a forgery, or one minted by another coordinator run); the comparison takes constant time.
absl::StatusOr<JobIdentity> VerifyJobCredential(absl::string_view key, absl::string_view credential);

// "Bearer <token>" -> token; "" when `authorization` has another form.
absl::string_view BearerToken(absl::string_view authorization);

// Constant-time equality of two secrets (lengths are not secret).
bool SecretsEqual(absl::string_view a, absl::string_view b);

}  // namespace alignd

#endif  // ALIGND_COMMON_RPC_JOB_CREDENTIAL_H_
