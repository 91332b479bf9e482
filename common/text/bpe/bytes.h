// Byte-level spelling used by GPT-2 style BPE, and the few UTF-8 helpers the tokenizer needs.
// GPT-2's bytes_to_unicode() spells each byte as one printable code point: the printable Latin-1 bytes ('!'..'~',
// '¡'..'¬', '®'..'ÿ') as themselves, every other byte b as U+0100 + n, n counting those bytes in increasing order
// (so ' ' is 'Ġ' U+0120 and '\n' is 'Ċ' U+010A). All functions are pure and thread-safe.
#ifndef ALIGND_COMMON_TEXT_BPE_BYTES_H_
#define ALIGND_COMMON_TEXT_BPE_BYTES_H_

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"

namespace alignd {
namespace bpe {

// The code point that spells byte `b`.
char32_t ByteToCodePoint(uint8_t b);

// Appends the byte-level spelling of `bytes` (any bytes, valid UTF-8 or not) to `out`, as UTF-8.
void AppendByteLevel(absl::string_view bytes, std::string* out);

// Appends the bytes that the byte-level string `token` spells. Returns false, appending nothing, when `token` holds
// a character that is not a byte-level character (an added token such as "<|im_start|>" is all byte-level characters;
// one with a space or CJK text is not).
bool AppendBytesOfByteLevel(absl::string_view token, std::string* out);

// Appends `cp` to `out` as UTF-8. `cp` must be a Unicode scalar value.
void AppendUtf8(char32_t cp, std::string* out);

// Decodes the UTF-8 character starting at `text[*pos]` and advances `*pos` past it. On an invalid or truncated
// sequence (including overlong forms and surrogates) returns kInvalidCodePoint and advances `*pos` by one byte.
inline constexpr char32_t kInvalidCodePoint = 0xFFFFFFFF;
char32_t DecodeUtf8(absl::string_view text, size_t* pos);

// Whether `cp` has the Unicode White_Space property (what \s means to Python's `regex`, Rust's regex and Oniguruma).
bool IsWhiteSpace(char32_t cp);

}  // namespace bpe
}  // namespace alignd

#endif  // ALIGND_COMMON_TEXT_BPE_BYTES_H_
