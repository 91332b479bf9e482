// Text that is valid UTF-8, whatever bytes a model generated.
#ifndef ALIGND_COMMON_TEXT_UTF8_H_
#define ALIGND_COMMON_TEXT_UTF8_H_

#include <string>

#include "absl/strings/string_view.h"

namespace alignd {

// `text` with every byte that is not part of a valid UTF-8 sequence (a character cut short, an overlong form, a
// surrogate, a code point past U+10FFFF) replaced by U+FFFD; valid text comes back unchanged. A byte-level model can
// generate any byte; what reads its text (a reward, a proto3 string, a JSON file) gets this.
std::string ValidUtf8(absl::string_view text);

}  // namespace alignd

#endif  // ALIGND_COMMON_TEXT_UTF8_H_
