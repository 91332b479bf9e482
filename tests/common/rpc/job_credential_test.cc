#include "common/rpc/job_credential.h"

#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace alignd {
namespace {

using ::testing::HasSubstr;

TEST(JobCredential, VerifiesWhatWasMintedAndNamesItsJobAndAttempt) {
  const std::string key = NewCredentialKey();
  ASSERT_EQ(key.size(), 32u);
  EXPECT_NE(key, NewCredentialKey());
  // Job ids may contain the separator: the MAC is the last field, the attempt the first.
  for (const std::string& job : std::vector<std::string>{"j-000001", "a.b.c", "x"}) {
    const std::string credential = MintJobCredential(key, job, 3);
    auto id = VerifyJobCredential(key, credential);
    ASSERT_TRUE(id.ok()) << id.status();
    EXPECT_EQ(id->job_id, job);
    EXPECT_EQ(id->attempt, 3u);
  }
}

TEST(JobCredential, RefusesForgeriesAndOtherKeys) {
  const std::string key = NewCredentialKey();
  const std::string good = MintJobCredential(key, "j-000001", 1);
  // Another coordinator run's key.
  EXPECT_EQ(VerifyJobCredential(NewCredentialKey(), good).status().code(), absl::StatusCode::kUnauthenticated);
  // Moved to another job or attempt, keeping the MAC.
  const std::string mac = good.substr(good.rfind('.') + 1);
  EXPECT_EQ(VerifyJobCredential(key, "ajc1.1.j-000002." + mac).status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(VerifyJobCredential(key, "ajc1.2.j-000001." + mac).status().code(), absl::StatusCode::kUnauthenticated);
  // Every single flipped character of the MAC.
  for (size_t i = good.rfind('.') + 1; i < good.size(); ++i) {
    std::string bad = good;
    bad[i] = bad[i] == '0' ? '1' : '0';
    EXPECT_EQ(VerifyJobCredential(key, bad).status().code(), absl::StatusCode::kUnauthenticated) << i;
  }
  for (const std::string& malformed :
       std::vector<std::string>{"", "ajc1.", "ajc1.1", "ajc1.x.j." + mac, "ajc1.1.." + mac, "Bearer " + good,
                                "ajc2" + good.substr(4), good + "0", good.substr(0, good.size() - 1)}) {
    auto id = VerifyJobCredential(key, malformed);
    EXPECT_EQ(id.status().code(), absl::StatusCode::kUnauthenticated) << malformed;
  }
  EXPECT_THAT(std::string(VerifyJobCredential("", good).status().message()), HasSubstr("not registered"));
}

TEST(JobCredential, BearerTokenAndSecretsEqual) {
  EXPECT_EQ(BearerToken("Bearer abc"), "abc");
  EXPECT_EQ(BearerToken("bearer abc"), "");
  EXPECT_EQ(BearerToken("abc"), "");
  EXPECT_TRUE(SecretsEqual("abcdef", "abcdef"));
  EXPECT_FALSE(SecretsEqual("abcdef", "abcdeg"));
  EXPECT_FALSE(SecretsEqual("abcdef", "abcde"));
}

}  // namespace
}  // namespace alignd
