#include "common/text/utf8.h"

#include "common/text/bpe/bytes.h"

namespace alignd {

std::string ValidUtf8(absl::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (size_t pos = 0; pos < text.size();) {
    const size_t start = pos;
    if (bpe::DecodeUtf8(text, &pos) == bpe::kInvalidCodePoint) {
      out.append("\xEF\xBF\xBD");  // U+FFFD, for the one byte DecodeUtf8 stepped over
    } else {
      out.append(text.data() + start, pos - start);
    }
  }
  return out;
}

}  // namespace alignd
