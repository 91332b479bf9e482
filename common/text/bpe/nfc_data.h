// Unicode tables for NFC, generated into nfc_data.cc by tests/common/text/tokenizer/gen_nfc_data.py. Sorted by code
// point.
#ifndef ALIGND_COMMON_TEXT_BPE_NFC_DATA_H_
#define ALIGND_COMMON_TEXT_BPE_NFC_DATA_H_

#include <cstddef>

namespace alignd {
namespace bpe {

struct CccRange {
  char32_t first, last;  // inclusive
  unsigned char ccc;     // canonical combining class, non-zero
};
struct Decomposition {
  char32_t code_point;
  char32_t chars[4];  // full canonical decomposition, zero-padded
};
struct Composition {
  char32_t first, second, composite;  // primary composites only
};

// The Unicode version the tables were generated from, and each table with its entry count. Immutable.
extern const char kNfcUnicodeVersion[];
extern const CccRange kCccRanges[];
extern const size_t kCccRangeCount;
extern const Decomposition kDecompositions[];
extern const size_t kDecompositionCount;
extern const Composition kCompositions[];
extern const size_t kCompositionCount;

}  // namespace bpe
}  // namespace alignd

#endif  // ALIGND_COMMON_TEXT_BPE_NFC_DATA_H_
