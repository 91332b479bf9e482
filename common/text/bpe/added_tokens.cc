#include "common/text/bpe/added_tokens.h"

#include <algorithm>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/text/bpe/bytes.h"

namespace alignd {
namespace bpe {
namespace {

// Rust regex's \w (Unicode "perl word"), which HF uses for single_word.
constexpr absl::string_view kWordChar = R"([\p{Alphabetic}\p{M}\p{Nd}\p{Pc}\p{Join_Control}])";

// Start of the UTF-8 character that ends just before `pos` (pos > 0).
size_t PreviousCharStart(absl::string_view text, size_t pos) {
  size_t start = pos - 1;
  while (start > 0 && pos - start < 4 && (static_cast<uint8_t>(text[start]) & 0xC0) == 0x80) --start;
  return start;
}

}  // namespace

absl::StatusOr<std::unique_ptr<AddedTokenMatcher>> AddedTokenMatcher::Create(std::vector<AddedToken> tokens) {
  std::unique_ptr<AddedTokenMatcher> m(new AddedTokenMatcher());
  m->terminal_.push_back(-1);
  bool any_single_word = false;
  for (AddedToken& token : tokens) {
    if (token.content.empty()) continue;
    int32_t node = 0;
    for (char c : token.content) {
      uint64_t key = static_cast<uint64_t>(node) * 256 + static_cast<uint8_t>(c);
      auto [it, inserted] = m->edges_.try_emplace(key, static_cast<int32_t>(m->terminal_.size()));
      if (inserted) m->terminal_.push_back(-1);
      node = it->second;
    }
    if (m->terminal_[node] >= 0) continue;
    m->terminal_[node] = static_cast<int32_t>(m->tokens_.size());
    m->first_bytes_.set(static_cast<uint8_t>(token.content[0]));
    any_single_word |= token.single_word;
    m->tokens_.push_back(std::move(token));
  }
  if (any_single_word) {
    auto regex = BpeRegex::Create(kWordChar);
    if (!regex.ok()) return absl::InternalError(absl::StrCat("word-character regex: ", regex.status().message()));
    m->word_char_ = std::move(regex).value();
  }
  return m;
}

int AddedTokenMatcher::LongestMatchAt(absl::string_view text, size_t pos, size_t* length) const {
  int best = -1;
  int32_t node = 0;
  for (size_t i = pos; i < text.size(); ++i) {
    auto it = edges_.find(static_cast<uint64_t>(node) * 256 + static_cast<uint8_t>(text[i]));
    if (it == edges_.end()) break;
    node = it->second;
    if (terminal_[node] >= 0) {
      best = terminal_[node];
      *length = i + 1 - pos;
    }
  }
  return best;
}

bool AddedTokenMatcher::IsWordCharBefore(absl::string_view text, size_t pos) const {
  if (pos == 0) return false;
  size_t start = PreviousCharStart(text, pos);
  return word_char_->FullMatch(text.substr(start, pos - start));
}

bool AddedTokenMatcher::IsWordCharAt(absl::string_view text, size_t pos) const {
  if (pos >= text.size()) return false;
  size_t end = pos;
  DecodeUtf8(text, &end);
  return word_char_->FullMatch(text.substr(pos, end - pos));
}

std::vector<AddedTokenMatcher::Segment> AddedTokenMatcher::Split(absl::string_view text) const {
  std::vector<Segment> segments;
  size_t done = 0;  // end of the last segment emitted
  size_t pos = 0;
  while (pos < text.size()) {
    size_t length = 0;
    int index = first_bytes_.test(static_cast<uint8_t>(text[pos])) ? LongestMatchAt(text, pos, &length) : -1;
    if (index < 0) {
      ++pos;
      continue;
    }
    const AddedToken& token = tokens_[index];
    size_t start = pos;
    size_t stop = pos + length;
    // Like a leftmost-longest automaton, the scan resumes after this match even when single_word discards it.
    pos = stop;
    if (token.single_word && (IsWordCharBefore(text, start) || IsWordCharAt(text, stop))) continue;
    if (token.lstrip) {
      while (start > done) {
        size_t prev = PreviousCharStart(text, start);
        size_t cursor = prev;
        if (!IsWhiteSpace(DecodeUtf8(text, &cursor)) || cursor != start) break;
        start = prev;
      }
    }
    if (token.rstrip) {
      while (stop < text.size()) {
        size_t cursor = stop;
        if (!IsWhiteSpace(DecodeUtf8(text, &cursor))) break;
        stop = cursor;
      }
      pos = stop;
    }
    if (done < start) segments.push_back({text.substr(done, start - done), -1});
    segments.push_back({text.substr(start, stop - start), token.id});
    done = stop;
  }
  if (done < text.size()) segments.push_back({text.substr(done), -1});
  return segments;
}

}  // namespace bpe
}  // namespace alignd
