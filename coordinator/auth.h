// Bearer-token authentication. A tokens file has one `TOKEN NAME ROLE` per line (role: admin, user or worker);
// `#` starts a comment, blank lines are ignored. Admins see every job; users see and cancel only their own; worker
// tokens may only use WorkerService.
#ifndef ALIGND_COORDINATOR_AUTH_H_
#define ALIGND_COORDINATOR_AUTH_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace alignd::coordinator {

enum class Role { kAdmin, kUser, kWorker };
absl::string_view RoleName(Role role);

// Who is calling. Core classes take one and check ownership; the RPC layer checks roles.
struct Principal {
  std::string name;
  Role role = Role::kUser;
  bool is_admin() const { return role == Role::kAdmin; }
};

// Immutable after construction, so thread-safe.
class TokenAuthenticator {
 public:
  // An authenticator that accepts every caller, with or without a token, as the admin "anonymous": the coordinator
  // without --auth-tokens (meant for loopback and tests).
  static TokenAuthenticator AllowAll();
  // Parses a tokens file's text; `source` names it in errors (INVALID_ARGUMENT with `source:line`): a line without
  // three fields, an unknown role, a duplicate token, or a token shorter than 16 characters.
  static absl::StatusOr<TokenAuthenticator> Parse(absl::string_view text, absl::string_view source);
  static absl::StatusOr<TokenAuthenticator> FromFile(const std::string& path);

  // `authorization` is the request's "authorization" metadata value (empty when absent). UNAUTHENTICATED when it is
  // missing, is not "Bearer <token>", or names no known token.
  absl::StatusOr<Principal> Authenticate(absl::string_view authorization) const;

  bool allow_all() const { return allow_all_; }

 private:
  struct Entry {
    std::string token;
    Principal principal;
  };
  TokenAuthenticator() = default;

  bool allow_all_ = false;
  std::vector<Entry> entries_;
};

}  // namespace alignd::coordinator

#endif  // ALIGND_COORDINATOR_AUTH_H_
