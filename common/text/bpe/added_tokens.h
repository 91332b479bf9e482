// Added tokens (tokenizer.json `added_tokens`) and the matcher that splits them out of text before pre-tokenization,
// as HF tokenizers' AddedVocabulary does: leftmost-longest matches, then single_word / lstrip / rstrip.
#ifndef ALIGND_COMMON_TEXT_BPE_ADDED_TOKENS_H_
#define ALIGND_COMMON_TEXT_BPE_ADDED_TOKENS_H_

#include <bitset>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/text/bpe/pretokenizer.h"

namespace alignd {
namespace bpe {

// One entry of `added_tokens`, with HF's defaults for absent fields (normalized defaults to !special).
struct AddedToken {
  int32_t id = 0;
  std::string content;
  bool single_word = false;  // only match where neither neighbour is a word character
  bool lstrip = false;       // the match takes the whitespace on its left
  bool rstrip = false;       // the match takes the whitespace on its right
  bool normalized = false;   // matched against the normalized text rather than the raw text
  bool special = false;      // skipped by Decode(skip_special_tokens)
};

class AddedTokenMatcher {
 public:
  // Matches each token's `content` (the caller passes normalized content for normalized tokens). Tokens with empty
  // content are ignored; when two share a content the first wins. Fails only if the word-character regex does not
  // compile (INTERNAL).
  static absl::StatusOr<std::unique_ptr<AddedTokenMatcher>> Create(std::vector<AddedToken> tokens);

  struct Segment {
    absl::string_view text;
    int32_t id;  // -1: plain text, to be pre-tokenized
  };
  // Covers `text` with segments in order: added tokens (with any stripped whitespace) and the plain text between.
  // Thread-safe.
  std::vector<Segment> Split(absl::string_view text) const;

  // Whether no token has content, so Split would return `text` as one plain segment.
  bool empty() const { return tokens_.empty(); }

 private:
  AddedTokenMatcher() = default;
  // The longest token starting at `pos`, as an index into tokens_, or -1.
  int LongestMatchAt(absl::string_view text, size_t pos, size_t* length) const;
  bool IsWordCharBefore(absl::string_view text, size_t pos) const;
  bool IsWordCharAt(absl::string_view text, size_t pos) const;

  std::vector<AddedToken> tokens_;
  // Byte trie over the contents: node * 256 + byte -> child node; node 0 is the root.
  absl::flat_hash_map<uint64_t, int32_t> edges_;
  std::vector<int32_t> terminal_;  // per node: index into tokens_, or -1
  std::bitset<256> first_bytes_;
  std::unique_ptr<BpeRegex> word_char_;  // set when some token is single_word
};

}  // namespace bpe
}  // namespace alignd

#endif  // ALIGND_COMMON_TEXT_BPE_ADDED_TOKENS_H_
