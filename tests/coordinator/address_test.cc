#include "coordinator/address.h"

#include "gtest/gtest.h"

namespace alignd::coordinator {
namespace {

TEST(IsLoopbackAddressTest, LoopbackForms) {
  EXPECT_TRUE(IsLoopbackAddress("127.0.0.1:7070"));
  EXPECT_TRUE(IsLoopbackAddress("127.1.2.3:7070"));
  EXPECT_TRUE(IsLoopbackAddress("localhost:7070"));
  EXPECT_TRUE(IsLoopbackAddress("[::1]:7070"));
  EXPECT_TRUE(IsLoopbackAddress("ipv4:127.0.0.1:7070"));
  EXPECT_TRUE(IsLoopbackAddress("dns:///localhost:7070"));
  EXPECT_TRUE(IsLoopbackAddress("unix:/tmp/alignd.sock"));
}

TEST(IsLoopbackAddressTest, EverythingElseIsNot) {
  EXPECT_FALSE(IsLoopbackAddress("0.0.0.0:7070"));
  EXPECT_FALSE(IsLoopbackAddress("10.0.0.1:7070"));
  EXPECT_FALSE(IsLoopbackAddress("coordinator:7070"));
  EXPECT_FALSE(IsLoopbackAddress("localhost.evil.com:7070"));
  EXPECT_FALSE(IsLoopbackAddress("[::]:7070"));
  EXPECT_FALSE(IsLoopbackAddress("127.0.0.1.nip.io:7070"));
}

}  // namespace
}  // namespace alignd::coordinator
