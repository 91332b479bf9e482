#include "common/base/json_depth.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace alignd {
namespace {

using ::testing::HasSubstr;

std::string Nested(int levels, const std::string& inner = "1") {
  std::string out;
  for (int i = 0; i < levels; ++i) out += i % 2 == 0 ? "[" : "{\"k\":";
  out += inner;
  for (int i = levels - 1; i >= 0; --i) out += i % 2 == 0 ? "]" : "}";
  return out;
}

TEST(JsonDepthTest, AcceptsUpToTheLimit) {
  EXPECT_TRUE(CheckJsonDepth("").ok());
  EXPECT_TRUE(CheckJsonDepth("17").ok());
  EXPECT_TRUE(CheckJsonDepth(Nested(kMaxJsonDepth)).ok());
  EXPECT_TRUE(CheckJsonDepth(Nested(3), 3).ok());
  // Siblings do not add up.
  EXPECT_TRUE(CheckJsonDepth("[[1],[2],{\"a\":[3]},[[4]]]", 3).ok());
}

TEST(JsonDepthTest, RejectsOneLevelMoreNamingTheByte) {
  absl::Status status = CheckJsonDepth(Nested(4), 3);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("deeper than 3 levels (at byte 7)"));
  EXPECT_EQ(CheckJsonDepth(Nested(kMaxJsonDepth + 1)).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(CheckJsonDepth(std::string(1'000'000, '[')).code(), absl::StatusCode::kInvalidArgument);
}

TEST(JsonDepthTest, IgnoresBracketsInStrings) {
  EXPECT_TRUE(CheckJsonDepth(R"(["[[[[", "{{{{", "\"[[[[\\"])", 1).ok());
  // An escaped quote does not end the string; an escaped backslash before the quote does.
  EXPECT_TRUE(CheckJsonDepth(R"(["\"[[["])", 1).ok());
  EXPECT_EQ(CheckJsonDepth(R"(["\\", [[]])", 2).code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace alignd
