#include "common/text/bpe/pretokenizer.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <algorithm>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/text/bpe/bytes.h"

namespace alignd {
namespace bpe {
namespace {

// Rewrites \s and \S (outside \Q...\E) to the White_Space property; everything else is copied as is.
std::string RewriteWhiteSpaceClasses(absl::string_view pattern) {
  std::string out;
  out.reserve(pattern.size() + 32);
  bool quoted = false;  // inside \Q...\E
  for (size_t i = 0; i < pattern.size(); ++i) {
    char c = pattern[i];
    if (c != '\\' || i + 1 == pattern.size()) {
      out.push_back(c);
      continue;
    }
    char next = pattern[++i];
    if (quoted) {
      if (next == 'E') quoted = false;
      out.push_back(c);
      out.push_back(next);
    } else if (next == 's') {
      out.append("\\p{White_Space}");
    } else if (next == 'S') {
      out.append("\\P{White_Space}");
    } else {
      if (next == 'Q') quoted = true;
      out.push_back(c);
      out.push_back(next);
    }
  }
  return out;
}

// The first UTF-8 lead position after `pos` (or the end).
size_t NextCharBoundary(absl::string_view text, size_t pos) {
  ++pos;
  while (pos < text.size() && (static_cast<uint8_t>(text[pos]) & 0xC0) == 0x80) ++pos;
  return pos;
}

}  // namespace

struct BpeRegex::Impl {
  pcre2_code* code = nullptr;
  ~Impl() { pcre2_code_free(code); }

  // pcre2_match, falling back from JIT to the interpreter when the JIT stack runs out.
  int Match(absl::string_view text, size_t start, uint32_t options, pcre2_match_data* md) const {
    auto subject = reinterpret_cast<PCRE2_SPTR>(text.data());
    int rc = pcre2_match(code, subject, text.size(), start, options, md, nullptr);
    if (rc == PCRE2_ERROR_JIT_STACKLIMIT) {
      rc = pcre2_match(code, subject, text.size(), start, options | PCRE2_NO_JIT, md, nullptr);
    }
    return rc;
  }
};

BpeRegex::BpeRegex(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
BpeRegex::~BpeRegex() = default;

absl::StatusOr<std::unique_ptr<BpeRegex>> BpeRegex::Create(absl::string_view pattern) {
  std::string rewritten = RewriteWhiteSpaceClasses(pattern);
  int error = 0;
  PCRE2_SIZE offset = 0;
  auto impl = std::make_unique<Impl>();
  impl->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(rewritten.data()), rewritten.size(),
                             PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &error, &offset, nullptr);
  if (impl->code == nullptr) {
    PCRE2_UCHAR message[256];
    pcre2_get_error_message(error, message, sizeof(message));
    return absl::InvalidArgumentError(absl::StrCat("regex \"", pattern,
                                                   "\" does not compile: ", reinterpret_cast<const char*>(message),
                                                   " (at offset ", offset, " of \"", rewritten, "\")"));
  }
  // JIT is an optimisation only: without it (unsupported platform) the interpreter gives the same matches.
  pcre2_jit_compile(impl->code, PCRE2_JIT_COMPLETE);
  return std::unique_ptr<BpeRegex>(new BpeRegex(std::move(impl)));
}

std::vector<std::pair<size_t, size_t>> BpeRegex::FindAll(absl::string_view text) const {
  std::vector<std::pair<size_t, size_t>> matches;
  pcre2_match_data* md = pcre2_match_data_create_from_pattern(impl_->code, nullptr);
  size_t start = 0;
  uint32_t options = 0;
  while (start <= text.size()) {
    int rc = impl_->Match(text, start, options, md);
    if (rc == PCRE2_ERROR_NOMATCH && options != 0) {
      // No non-empty match where the last empty one was: move on by one character.
      options = 0;
      start = NextCharBoundary(text, start);
      continue;
    }
    if (rc < 0) break;
    const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(md);
    matches.emplace_back(ovector[0], ovector[1]);
    start = ovector[1];
    options = ovector[0] == ovector[1] ? (PCRE2_NOTEMPTY_ATSTART | PCRE2_ANCHORED) : 0;
  }
  pcre2_match_data_free(md);
  return matches;
}

bool BpeRegex::FullMatch(absl::string_view text) const {
  pcre2_match_data* md = pcre2_match_data_create_from_pattern(impl_->code, nullptr);
  int rc = impl_->Match(text, 0, PCRE2_ANCHORED | PCRE2_ENDANCHORED, md);
  pcre2_match_data_free(md);
  return rc >= 0;
}

std::vector<std::pair<size_t, size_t>> SplitWithBehavior(const BpeRegex& regex, absl::string_view text,
                                                         SplitBehavior behavior, bool invert) {
  // Cover `text` with (range, is_match) parts, as HF's Pattern::find_matches does.
  struct Part {
    size_t begin, end;
    bool is_match;
  };
  std::vector<Part> parts;
  size_t prev = 0;
  for (const auto& [begin, end] : regex.FindAll(text)) {
    if (prev != begin) parts.push_back({prev, begin, invert});
    parts.push_back({begin, end, !invert});
    prev = end;
  }
  if (prev != text.size()) parts.push_back({prev, text.size(), invert});

  std::vector<Part> merged;
  bool previous_match = false;
  switch (behavior) {
    case SplitBehavior::kRemoved:
      for (const Part& p : parts) {
        if (!p.is_match) merged.push_back(p);
      }
      break;
    case SplitBehavior::kIsolated:
      merged = parts;
      break;
    case SplitBehavior::kMergedWithPrevious:
      for (const Part& p : parts) {
        if (p.is_match && !previous_match && !merged.empty()) {
          merged.back().end = p.end;
        } else {
          merged.push_back(p);
        }
        previous_match = p.is_match;
      }
      break;
    case SplitBehavior::kMergedWithNext:
      for (auto it = parts.rbegin(); it != parts.rend(); ++it) {
        if (it->is_match && !previous_match && !merged.empty()) {
          merged.back().begin = it->begin;
        } else {
          merged.push_back(*it);
        }
        previous_match = it->is_match;
      }
      std::reverse(merged.begin(), merged.end());
      break;
    case SplitBehavior::kContiguous:
      for (const Part& p : parts) {
        if (p.is_match == previous_match && !merged.empty()) {
          merged.back().end = p.end;
        } else {
          merged.push_back(p);
        }
        previous_match = p.is_match;
      }
      break;
  }
  std::vector<std::pair<size_t, size_t>> pieces;
  for (const Part& p : merged) {
    if (p.begin != p.end) pieces.emplace_back(p.begin, p.end);
  }
  return pieces;
}

std::string EscapeRegex(absl::string_view literal) {
  std::string out;
  for (char c : literal) {
    if (static_cast<uint8_t>(c) < 0x80 && !absl::ascii_isalnum(static_cast<unsigned char>(c))) out.push_back('\\');
    out.push_back(c);
  }
  return out;
}

absl::StatusOr<std::unique_ptr<PreTokenizer>> PreTokenizer::Create(std::vector<PreTokenizerStep> steps) {
  std::unique_ptr<PreTokenizer> pre(new PreTokenizer());
  for (size_t i = 0; i < steps.size(); ++i) {
    PreTokenizerStep& step = steps[i];
    if (step.kind == PreTokenizerStep::Kind::kByteLevel && i + 1 != steps.size()) {
      return absl::InvalidArgumentError(
          absl::StrCat("pretokenizers[", i, "]: ByteLevel must be the last pre-tokenizer step"));
    }
    CompiledStep compiled;
    if (step.kind == PreTokenizerStep::Kind::kSplit || step.use_regex) {
      absl::string_view pattern = step.kind == PreTokenizerStep::Kind::kSplit ? step.pattern : kGpt2Pattern;
      auto regex = BpeRegex::Create(pattern);
      if (!regex.ok()) {
        return absl::InvalidArgumentError(absl::StrCat("pretokenizers[", i, "].pattern: ", regex.status().message()));
      }
      compiled.regex = std::move(regex).value();
    }
    compiled.step = std::move(step);
    pre->steps_.push_back(std::move(compiled));
  }
  if (pre->steps_.empty() || pre->steps_.back().step.kind != PreTokenizerStep::Kind::kByteLevel) {
    return absl::InvalidArgumentError("byte-level BPE needs a ByteLevel pre-tokenizer as the last step");
  }
  return pre;
}

std::vector<std::string> PreTokenizer::Split(absl::string_view text) const {
  std::vector<absl::string_view> pieces;
  if (!text.empty()) pieces.push_back(text);
  for (size_t i = 0; i + 1 < steps_.size(); ++i) {
    const CompiledStep& s = steps_[i];
    std::vector<absl::string_view> next;
    for (absl::string_view piece : pieces) {
      for (const auto& [begin, end] : SplitWithBehavior(*s.regex, piece, s.step.behavior, s.step.invert)) {
        next.push_back(piece.substr(begin, end - begin));
      }
    }
    pieces = std::move(next);
  }

  const CompiledStep& byte_level = steps_.back();
  std::vector<std::string> out;
  std::string prefixed;
  for (absl::string_view piece : pieces) {
    if (byte_level.step.add_prefix_space && piece.front() != ' ') {
      prefixed = absl::StrCat(" ", piece);
      piece = prefixed;
    }
    if (byte_level.regex == nullptr) {
      AppendByteLevel(piece, &out.emplace_back());
      continue;
    }
    for (const auto& [begin, end] : SplitWithBehavior(*byte_level.regex, piece, SplitBehavior::kIsolated, false)) {
      AppendByteLevel(piece.substr(begin, end - begin), &out.emplace_back());
    }
  }
  return out;
}

}  // namespace bpe
}  // namespace alignd
