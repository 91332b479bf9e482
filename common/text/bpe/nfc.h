// Unicode Normalization Form C, for tokenizer.json's "NFC" normalizer (Qwen2 ships one).
#ifndef ALIGND_COMMON_TEXT_BPE_NFC_H_
#define ALIGND_COMMON_TEXT_BPE_NFC_H_

#include <string>

#include "absl/strings/string_view.h"

namespace alignd {
namespace bpe {

// `text` in NFC, per the Unicode version of nfc_data.cc (kNfcUnicodeVersion). Bytes that are not valid UTF-8 are
// kept as they are and act as boundaries: nothing composes across them. Thread-safe.
std::string NormalizeNfc(absl::string_view text);

}  // namespace bpe
}  // namespace alignd

#endif  // ALIGND_COMMON_TEXT_BPE_NFC_H_
