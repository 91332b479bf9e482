#include "common/rpc/job_credential.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <stdexcept>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

namespace alignd {
namespace {

constexpr absl::string_view kPrefix = "ajc1.";

std::string Mac(absl::string_view key, absl::string_view job_id, uint32_t attempt) {
  // The message separates its fields unambiguously: "alignd-job-credential\0<attempt>\0<job id>".
  const std::string message =
      absl::StrCat("alignd-job-credential", absl::string_view("\0", 1), attempt, absl::string_view("\0", 1), job_id);
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  if (HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
           reinterpret_cast<const unsigned char*>(message.data()), message.size(), digest, &length) == nullptr) {
    throw std::runtime_error("HMAC-SHA256 failed");
  }
  return absl::BytesToHexString(absl::string_view(reinterpret_cast<const char*>(digest), length));
}

}  // namespace

std::string NewCredentialKey() {
  std::string key(32, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(key.data()), static_cast<int>(key.size())) != 1) {
    throw std::runtime_error("RAND_bytes failed: no randomness for the job credential key");
  }
  return key;
}

std::string MintJobCredential(absl::string_view key, absl::string_view job_id, uint32_t attempt) {
  return absl::StrCat(kPrefix, attempt, ".", job_id, ".", Mac(key, job_id, attempt));
}

absl::StatusOr<JobIdentity> VerifyJobCredential(absl::string_view key, absl::string_view credential) {
  auto malformed = [] { return absl::UnauthenticatedError("not a job credential (ajc1.<attempt>.<job>.<mac>)"); };
  if (key.empty()) return absl::UnauthenticatedError("no credential key yet (this worker is not registered)");
  if (!absl::ConsumePrefix(&credential, kPrefix)) return malformed();
  const size_t first = credential.find('.');
  const size_t last = credential.rfind('.');
  if (first == absl::string_view::npos || last == first) return malformed();
  JobIdentity id;
  if (!absl::SimpleAtoi(credential.substr(0, first), &id.attempt)) return malformed();
  id.job_id = std::string(credential.substr(first + 1, last - first - 1));
  if (id.job_id.empty()) return malformed();
  if (!SecretsEqual(credential.substr(last + 1), Mac(key, id.job_id, id.attempt))) {
    return absl::UnauthenticatedError("the job credential does not verify (forged, or from another coordinator run)");
  }
  return id;
}

absl::string_view BearerToken(absl::string_view authorization) {
  return absl::ConsumePrefix(&authorization, "Bearer ") ? authorization : absl::string_view();
}

bool SecretsEqual(absl::string_view a, absl::string_view b) {
  return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

}  // namespace alignd
