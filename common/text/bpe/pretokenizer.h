// Pre-tokenization for byte-level BPE: the regex splits of a tokenizer.json `pre_tokenizer`, then the byte-level
// spelling of each piece. Patterns run on PCRE2 in UTF + UCP mode, with \s read as Unicode White_Space (see
// BpeRegex::Create). All methods are const and thread-safe.
#ifndef ALIGND_COMMON_TEXT_BPE_PRETOKENIZER_H_
#define ALIGND_COMMON_TEXT_BPE_PRETOKENIZER_H_

#include <cstddef>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace alignd {
namespace bpe {

// The pattern of GPT-2's encoder, which HF's ByteLevel pre-tokenizer applies when `use_regex` is true.
inline constexpr absl::string_view kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

class BpeRegex {
 public:
  // Compiles `pattern`. PCRE2's \s also matches U+180E, which Python's `regex` (GPT-2's reference), Rust's regex and
  // Oniguruma (HF tokenizers) do not match, so \s and \S are rewritten to \p{White_Space} and \P{White_Space}.
  // INVALID_ARGUMENT with PCRE2's message and the offset when the pattern does not compile.
  static absl::StatusOr<std::unique_ptr<BpeRegex>> Create(absl::string_view pattern);
  ~BpeRegex();

  // Non-overlapping matches scanning left to right, as [begin, end) byte offsets. Bytes that are not valid UTF-8
  // never match anything. A match error (PCRE2's match limit) ends the scan early.
  std::vector<std::pair<size_t, size_t>> FindAll(absl::string_view text) const;
  // Whether the whole of `text` matches.
  bool FullMatch(absl::string_view text) const;

 private:
  struct Impl;
  explicit BpeRegex(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// HF's SplitDelimiterBehavior: what becomes of a match (a "delimiter") when a piece is split.
enum class SplitBehavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };

struct PreTokenizerStep {
  enum class Kind { kSplit, kByteLevel };
  Kind kind = Kind::kByteLevel;
  // kSplit: the regex (a "String" pattern from tokenizer.json arrives here already escaped), what to do with
  // matches, and whether to split on the non-matching parts instead.
  std::string pattern;
  SplitBehavior behavior = SplitBehavior::kIsolated;
  bool invert = false;
  // kByteLevel: prepend a space to each piece that does not start with one; split with kGpt2Pattern first.
  bool add_prefix_space = false;
  bool use_regex = true;
};

class PreTokenizer {
 public:
  // `steps` run in order, each on every piece the previous one produced. The last step must be the only kByteLevel
  // one (INVALID_ARGUMENT otherwise, or when a pattern does not compile; messages are relative to `pre_tokenizer`).
  static absl::StatusOr<std::unique_ptr<PreTokenizer>> Create(std::vector<PreTokenizerStep> steps);

  // Splits `text` into pre-tokens, each in byte-level spelling. Empty pieces are dropped.
  std::vector<std::string> Split(absl::string_view text) const;

 private:
  struct CompiledStep {
    PreTokenizerStep step;
    std::unique_ptr<BpeRegex> regex;
  };
  PreTokenizer() = default;

  std::vector<CompiledStep> steps_;
};

// Splits `text` at the matches of `regex` and applies `behavior` as HF's NormalizedString::split does; returns the
// pieces as [begin, end) offsets, empty ones dropped. Exposed for tests.
std::vector<std::pair<size_t, size_t>> SplitWithBehavior(const BpeRegex& regex, absl::string_view text,
                                                         SplitBehavior behavior, bool invert);

// `literal` as a PCRE2 pattern that matches exactly it.
std::string EscapeRegex(absl::string_view literal);

}  // namespace bpe
}  // namespace alignd

#endif  // ALIGND_COMMON_TEXT_BPE_PRETOKENIZER_H_
