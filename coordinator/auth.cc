#include "coordinator/auth.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/base/file_util.h"
#include "common/base/status.h"

namespace alignd::coordinator {
namespace {

constexpr size_t kMinTokenLength = 16;

// Compares without an early exit, so that the time taken does not reveal how much of a token matched.
bool ConstantTimeEquals(absl::string_view a, absl::string_view b) {
  if (a.size() != b.size()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

}  // namespace

absl::string_view RoleName(Role role) {
  switch (role) {
    case Role::kAdmin:
      return "admin";
    case Role::kUser:
      return "user";
    case Role::kWorker:
      return "worker";
  }
  return "unknown";
}

TokenAuthenticator TokenAuthenticator::AllowAll() {
  TokenAuthenticator auth;
  auth.allow_all_ = true;
  return auth;
}

absl::StatusOr<TokenAuthenticator> TokenAuthenticator::Parse(absl::string_view text, absl::string_view source) {
  TokenAuthenticator auth;
  int line_no = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_no;
    line = line.substr(0, line.find('#'));
    std::vector<absl::string_view> fields = absl::StrSplit(line, absl::ByAnyChar(" \t\r"), absl::SkipEmpty());
    if (fields.empty()) continue;
    auto error = [&](absl::string_view what) {
      return absl::InvalidArgumentError(absl::StrCat(source, ":", line_no, ": ", what));
    };
    if (fields.size() != 3) return error(absl::StrCat("expected `TOKEN NAME ROLE`, got ", fields.size(), " fields"));
    if (fields[0].size() < kMinTokenLength) {
      return error(absl::StrCat("token is shorter than ", kMinTokenLength, " characters"));
    }
    Entry entry{std::string(fields[0]), Principal{std::string(fields[1]), Role::kUser}};
    if (fields[2] == "admin") {
      entry.principal.role = Role::kAdmin;
    } else if (fields[2] == "user") {
      entry.principal.role = Role::kUser;
    } else if (fields[2] == "worker") {
      entry.principal.role = Role::kWorker;
    } else {
      return error(absl::StrCat("role must be admin, user or worker, got \"", fields[2], "\""));
    }
    for (const Entry& e : auth.entries_) {
      if (e.token == entry.token) return error("duplicate token");
    }
    auth.entries_.push_back(std::move(entry));
  }
  return auth;
}

absl::StatusOr<TokenAuthenticator> TokenAuthenticator::FromFile(const std::string& path) {
  ASSIGN_OR_RETURN(std::string text, ReadFile(path));
  return Parse(text, path);
}

absl::StatusOr<Principal> TokenAuthenticator::Authenticate(absl::string_view authorization) const {
  if (allow_all_) return Principal{"anonymous", Role::kAdmin};
  if (authorization.empty()) return absl::UnauthenticatedError("missing bearer token (authorization metadata)");
  absl::string_view token = authorization;
  if (!absl::ConsumePrefix(&token, "Bearer ") && !absl::ConsumePrefix(&token, "bearer ")) {
    return absl::UnauthenticatedError("authorization metadata is not \"Bearer <token>\"");
  }
  const Principal* found = nullptr;
  for (const Entry& e : entries_) {
    if (ConstantTimeEquals(e.token, token)) found = &e.principal;
  }
  if (found == nullptr) return absl::UnauthenticatedError("unknown bearer token");
  return *found;
}

}  // namespace alignd::coordinator
