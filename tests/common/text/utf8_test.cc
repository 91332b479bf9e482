#include "common/text/utf8.h"

#include "gtest/gtest.h"

namespace alignd {
namespace {

TEST(ValidUtf8Test, KeepsValidTextAndReplacesEachBadByte) {
  EXPECT_EQ(ValidUtf8(""), "");
  EXPECT_EQ(ValidUtf8("plain \xC3\xA9t\xC3\xA9 \xF0\x9F\x99\x82"), "plain \xC3\xA9t\xC3\xA9 \xF0\x9F\x99\x82");
  EXPECT_EQ(ValidUtf8("cut \xE2\x82"), "cut \xEF\xBF\xBD\xEF\xBF\xBD");          // a character cut short
  EXPECT_EQ(ValidUtf8("\xC0\xAF"), "\xEF\xBF\xBD\xEF\xBF\xBD");                  // overlong '/'
  EXPECT_EQ(ValidUtf8("\xED\xA0\x80"), "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");  // a surrogate
  EXPECT_EQ(ValidUtf8("\xF4\x90\x80\x80"), "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");  // past U+10FFFF
  EXPECT_EQ(ValidUtf8("\x82rissh \xFF"), "\xEF\xBF\xBDrissh \xEF\xBF\xBD");  // stray bytes; the text after is kept
  const std::string replaced = ValidUtf8("a\x80z");
  EXPECT_EQ(ValidUtf8(replaced), replaced);  // idempotent
}

}  // namespace
}  // namespace alignd
