#include "coordinator/auth.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace alignd::coordinator {
namespace {

using ::testing::HasSubstr;

constexpr char kTokens[] = R"(# token                 name   role
admin-token-0123456789   root   admin
alice-token-0123456789   alice  user    # trailing comment

worker-token-012345678   w1     worker
)";

TEST(TokenAuthenticatorTest, BearerTokensMapToNameAndRole) {
  auto auth = TokenAuthenticator::Parse(kTokens, "tokens");
  ASSERT_TRUE(auth.ok()) << auth.status();
  auto alice = auth->Authenticate("Bearer alice-token-0123456789");
  ASSERT_TRUE(alice.ok()) << alice.status();
  EXPECT_EQ(alice->name, "alice");
  EXPECT_EQ(alice->role, Role::kUser);
  EXPECT_EQ(auth->Authenticate("Bearer admin-token-0123456789")->role, Role::kAdmin);
  EXPECT_EQ(auth->Authenticate("Bearer worker-token-012345678")->role, Role::kWorker);
}

TEST(TokenAuthenticatorTest, AllowAllMakesEveryoneAnonymousAdmin) {
  auto p = TokenAuthenticator::AllowAll().Authenticate("");
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->name, "anonymous");
  EXPECT_TRUE(p->is_admin());
}

// Error paths.

TEST(TokenAuthenticatorTest, MissingMalformedOrUnknownTokenIsUnauthenticated) {
  auto auth = TokenAuthenticator::Parse(kTokens, "tokens");
  ASSERT_TRUE(auth.ok());
  EXPECT_EQ(auth->Authenticate("").status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(auth->Authenticate("alice-token-0123456789").status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(auth->Authenticate("Basic alice-token-0123456789").status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(auth->Authenticate("Bearer alice-token-012345678").status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(auth->Authenticate("Bearer ").status().code(), absl::StatusCode::kUnauthenticated);
}

TEST(TokenAuthenticatorTest, BadLinesNameFileAndLine) {
  auto expect_error = [](const char* text, const char* what) {
    auto auth = TokenAuthenticator::Parse(text, "tokens");
    EXPECT_EQ(auth.status().code(), absl::StatusCode::kInvalidArgument) << text;
    EXPECT_THAT(auth.status().message(), HasSubstr(what)) << text;
  };
  expect_error("# c\nadmin-token-0123456789 root\n", "tokens:2: expected `TOKEN NAME ROLE`");
  expect_error("admin-token-0123456789 root superuser\n", "tokens:1: role must be admin, user or worker");
  expect_error("short root admin\n", "tokens:1: token is shorter than 16");
  expect_error("admin-token-0123456789 a admin\nadmin-token-0123456789 b user\n", "tokens:2: duplicate token");
}

TEST(TokenAuthenticatorTest, MissingFileIsNotFound) {
  EXPECT_EQ(TokenAuthenticator::FromFile(::testing::TempDir() + "/no-such-tokens").status().code(),
            absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace alignd::coordinator
