#include "common/text/bpe/nfc.h"

#include <algorithm>
#include <cstdint>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "common/text/bpe/bytes.h"
#include "common/text/bpe/nfc_data.h"

namespace alignd {
namespace bpe {
namespace {

// Hangul syllables decompose and compose algorithmically (Unicode §3.12).
constexpr char32_t kSBase = 0xAC00, kLBase = 0x1100, kVBase = 0x1161, kTBase = 0x11A7;
constexpr char32_t kLCount = 19, kVCount = 21, kTCount = 28, kNCount = kVCount * kTCount, kSCount = kLCount * kNCount;

// UTF-8 lead bytes of code points below U+0300. No such character changes under NFC, and none composes with what
// precedes it, so text made only of them is already in NFC.
constexpr uint8_t kFirstLeadThatMayChange = 0xCC;

struct Tables {
  absl::flat_hash_map<char32_t, const Decomposition*> decompositions;
  absl::flat_hash_map<uint64_t, char32_t> compositions;  // first << 21 | second -> composite
};

const Tables& GetTables() {
  static const Tables* const tables = [] {
    auto* t = new Tables();
    t->decompositions.reserve(kDecompositionCount);
    for (size_t i = 0; i < kDecompositionCount; ++i)
      t->decompositions[kDecompositions[i].code_point] = &kDecompositions[i];
    t->compositions.reserve(kCompositionCount);
    for (size_t i = 0; i < kCompositionCount; ++i) {
      const Composition& c = kCompositions[i];
      t->compositions[(static_cast<uint64_t>(c.first) << 21) | c.second] = c.composite;
    }
    return t;
  }();
  return *tables;
}

int CombiningClass(char32_t cp) {
  if (cp < 0x300) return 0;
  const CccRange* end = kCccRanges + kCccRangeCount;
  const CccRange* it = std::upper_bound(kCccRanges, end, cp, [](char32_t c, const CccRange& r) { return c < r.first; });
  if (it == kCccRanges) return 0;
  --it;
  return cp <= it->last ? it->ccc : 0;
}

void Decompose(char32_t cp, const Tables& tables, std::vector<char32_t>* out) {
  if (cp >= kSBase && cp < kSBase + kSCount) {
    char32_t s = cp - kSBase;
    out->push_back(kLBase + s / kNCount);
    out->push_back(kVBase + (s % kNCount) / kTCount);
    if (s % kTCount != 0) out->push_back(kTBase + s % kTCount);
    return;
  }
  auto it = tables.decompositions.find(cp);
  if (it == tables.decompositions.end()) {
    out->push_back(cp);
    return;
  }
  for (char32_t c : it->second->chars) {
    if (c != 0) out->push_back(c);
  }
}

// The primary composite of `first` + `second`, or 0.
char32_t Compose(char32_t first, char32_t second, const Tables& tables) {
  if (first >= kLBase && first < kLBase + kLCount && second >= kVBase && second < kVBase + kVCount) {
    return kSBase + ((first - kLBase) * kVCount + (second - kVBase)) * kTCount;
  }
  if (first >= kSBase && first < kSBase + kSCount && (first - kSBase) % kTCount == 0 && second > kTBase &&
      second < kTBase + kTCount) {
    return first + (second - kTBase);
  }
  auto it = tables.compositions.find((static_cast<uint64_t>(first) << 21) | second);
  return it == tables.compositions.end() ? 0 : it->second;
}

// Appends the NFC form of `chars` (valid code points) to `out`.
void NormalizeRun(const std::vector<char32_t>& chars, const Tables& tables, std::string* out) {
  std::vector<char32_t> d;
  d.reserve(chars.size() + 8);
  for (char32_t cp : chars) Decompose(cp, tables, &d);
  std::vector<int> ccc(d.size());
  for (size_t i = 0; i < d.size(); ++i) ccc[i] = CombiningClass(d[i]);
  // Canonical ordering: a stable sort of each run of non-starters by combining class.
  for (size_t i = 1; i < d.size(); ++i) {
    for (size_t j = i; j > 0 && ccc[j] != 0 && ccc[j - 1] > ccc[j]; --j) {
      std::swap(d[j], d[j - 1]);
      std::swap(ccc[j], ccc[j - 1]);
    }
  }
  // Canonical composition (UAX #15): each character composes with the last starter unless blocked.
  size_t kept = 0;
  size_t starter = 0;
  bool have_starter = false;
  int last_class = -1;  // class of the last kept character after the starter; -1: none
  for (size_t i = 0; i < d.size(); ++i) {
    if (have_starter && (last_class == -1 || last_class < ccc[i])) {
      if (char32_t composite = Compose(d[starter], d[i], tables); composite != 0) {
        d[starter] = composite;
        continue;
      }
    }
    if (ccc[i] == 0) {
      starter = kept;
      have_starter = true;
      last_class = -1;
    } else {
      last_class = ccc[i];
    }
    d[kept++] = d[i];
  }
  for (size_t i = 0; i < kept; ++i) AppendUtf8(d[i], out);
}

}  // namespace

std::string NormalizeNfc(absl::string_view text) {
  if (std::none_of(text.begin(), text.end(),
                   [](char c) { return static_cast<uint8_t>(c) >= kFirstLeadThatMayChange; })) {
    return std::string(text);
  }
  const Tables& tables = GetTables();
  std::string out;
  out.reserve(text.size());
  std::vector<char32_t> run;
  for (size_t pos = 0; pos < text.size();) {
    size_t start = pos;
    char32_t cp = DecodeUtf8(text, &pos);
    if (cp != kInvalidCodePoint) {
      run.push_back(cp);
      continue;
    }
    NormalizeRun(run, tables, &out);
    run.clear();
    out.append(text.data() + start, pos - start);
  }
  NormalizeRun(run, tables, &out);
  return out;
}

}  // namespace bpe
}  // namespace alignd
