#include "common/text/bpe/bytes.h"

#include <array>

namespace alignd {
namespace bpe {
namespace {

// Highest code point used by the byte-level spelling: U+0100 + 68 bytes - 1.
constexpr char32_t kMaxByteLevelCodePoint = 0x143;

bool IsPrintableLatin1(int b) { return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF); }

struct ByteTables {
  std::array<char32_t, 256> code_point;
  std::array<std::string, 256> spelling;                 // UTF-8 of code_point[b]
  std::array<int16_t, kMaxByteLevelCodePoint + 1> byte;  // -1: not a byte-level character
};

const ByteTables& Tables() {
  static const ByteTables* const tables = [] {
    auto* t = new ByteTables();
    t->byte.fill(-1);
    char32_t next = 0x100;
    for (int b = 0; b < 256; ++b) {
      char32_t cp = IsPrintableLatin1(b) ? static_cast<char32_t>(b) : next++;
      t->code_point[b] = cp;
      AppendUtf8(cp, &t->spelling[b]);
      t->byte[cp] = static_cast<int16_t>(b);
    }
    return t;
  }();
  return *tables;
}

}  // namespace

char32_t ByteToCodePoint(uint8_t b) { return Tables().code_point[b]; }

void AppendByteLevel(absl::string_view bytes, std::string* out) {
  const ByteTables& t = Tables();
  for (char c : bytes) out->append(t.spelling[static_cast<uint8_t>(c)]);
}

bool AppendBytesOfByteLevel(absl::string_view token, std::string* out) {
  const ByteTables& t = Tables();
  size_t old_size = out->size();
  size_t pos = 0;
  while (pos < token.size()) {
    char32_t cp = DecodeUtf8(token, &pos);
    if (cp > kMaxByteLevelCodePoint || t.byte[cp] < 0) {
      out->resize(old_size);
      return false;
    }
    out->push_back(static_cast<char>(t.byte[cp]));
  }
  return true;
}

void AppendUtf8(char32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

char32_t DecodeUtf8(absl::string_view text, size_t* pos) {
  const size_t start = *pos;
  const auto byte_at = [&](size_t i) { return static_cast<uint8_t>(text[i]); };
  const uint8_t lead = byte_at(start);
  ++*pos;
  if (lead < 0x80) return lead;
  int extra;
  char32_t cp;
  char32_t min;
  if (lead >= 0xC2 && lead <= 0xDF) {
    extra = 1, cp = lead & 0x1F, min = 0x80;
  } else if (lead >= 0xE0 && lead <= 0xEF) {
    extra = 2, cp = lead & 0x0F, min = 0x800;
  } else if (lead >= 0xF0 && lead <= 0xF4) {
    extra = 3, cp = lead & 0x07, min = 0x10000;
  } else {
    return kInvalidCodePoint;
  }
  if (start + extra >= text.size()) return kInvalidCodePoint;  // truncated
  for (int i = 1; i <= extra; ++i) {
    uint8_t b = byte_at(start + i);
    if ((b & 0xC0) != 0x80) return kInvalidCodePoint;
    cp = (cp << 6) | (b & 0x3F);
  }
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return kInvalidCodePoint;
  *pos = start + extra + 1;
  return cp;
}

bool IsWhiteSpace(char32_t cp) {
  switch (cp) {
    case 0x09:
    case 0x0A:
    case 0x0B:
    case 0x0C:
    case 0x0D:
    case 0x20:
    case 0x85:
    case 0xA0:
    case 0x1680:
    case 0x2028:
    case 0x2029:
    case 0x202F:
    case 0x205F:
    case 0x3000:
      return true;
    default:
      return cp >= 0x2000 && cp <= 0x200A;
  }
}

}  // namespace bpe
}  // namespace alignd
