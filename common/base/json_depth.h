// A bound on how deeply JSON text nests, checked before it is parsed. nlohmann's parser itself is iterative, but
// copying, comparing and dumping a parsed value recurse once per level, and so do alignd's own readers of nested
// sections (a tokenizer's Sequence of Sequences): text that nests a few hundred thousand levels overflows the stack.
// Every file alignd reads nests a handful of levels, so parsers of untrusted JSON refuse deeper text up front.
#ifndef ALIGND_COMMON_BASE_JSON_DEPTH_H_
#define ALIGND_COMMON_BASE_JSON_DEPTH_H_

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace alignd {

// The depth that the readers of safetensors headers, tokenizer files and JSONL datasets accept.
inline constexpr int kMaxJsonDepth = 64;

// INVALID_ARGUMENT ("JSON nests arrays and objects deeper than N levels (at byte OFFSET)") when `text` opens more
// than `max_depth` arrays and objects inside one another, counting brackets outside strings; OK otherwise. Exact for
// valid JSON; for invalid text, whatever it says, the parser rejects the text anyway. Linear time, no allocation.
absl::Status CheckJsonDepth(absl::string_view text, int max_depth = kMaxJsonDepth);

}  // namespace alignd

#endif  // ALIGND_COMMON_BASE_JSON_DEPTH_H_
