// A byte tokenizer for tests of data code: id = byte value for every byte, then special tokens from 256 in the order
// pad, bos, eos, <|im_start|>, <|im_end|> (as the built-in byte tokenizer), recognised literally in the text.
// Ids are easy to write by hand: 'a' is 97, bos is 257, <|im_end|> is 260.
#ifndef ALIGND_TESTS_COMMON_TEXT_FAKE_TOKENIZER_H_
#define ALIGND_TESTS_COMMON_TEXT_FAKE_TOKENIZER_H_

#include <string>
#include <vector>

#include "common/text/tokenizer.h"

namespace alignd {

class FakeByteTokenizer : public Tokenizer {
 public:
  static constexpr int32_t kPad = 256, kBos = 257, kEos = 258, kImStart = 259, kImEnd = 260;

  explicit FakeByteTokenizer(bool with_bos = true) {
    pad_id_ = kPad;
    if (with_bos) bos_id_ = kBos;
    eos_id_ = kEos;
  }

  std::vector<int32_t> Encode(absl::string_view text, bool add_special_tokens = false) const override {
    std::vector<int32_t> ids;
    if (add_special_tokens && bos_id_) ids.push_back(*bos_id_);
    size_t i = 0;
    while (i < text.size()) {
      bool matched = false;
      for (int32_t s = 0; s < kNumSpecial; ++s) {
        absl::string_view special = Special(s);
        if (text.substr(i, special.size()) == special) {
          ids.push_back(256 + s);
          i += special.size();
          matched = true;
          break;
        }
      }
      if (!matched) ids.push_back(static_cast<unsigned char>(text[i++]));
    }
    return ids;
  }

  std::string Decode(const std::vector<int32_t>& ids, bool skip_special_tokens = false) const override {
    std::string out;
    for (int32_t id : ids) {
      if (id >= 0 && id < 256) {
        out += static_cast<char>(id);
      } else if (id >= 256 && id < 256 + kNumSpecial && !skip_special_tokens) {
        out += std::string(Special(id - 256));
      }
    }
    return out;
  }

  int32_t vocab_size() const override { return 256 + kNumSpecial; }

  std::optional<int32_t> TokenToId(absl::string_view token) const override {
    for (int32_t s = 0; s < kNumSpecial; ++s) {
      if (Special(s) == token) return 256 + s;
    }
    if (token.size() == 1) return static_cast<unsigned char>(token[0]);
    return std::nullopt;
  }

  std::optional<std::string> IdToToken(int32_t id) const override {
    if (id >= 0 && id < 256) return std::string(1, static_cast<char>(id));
    if (id >= 256 && id < 256 + kNumSpecial) return std::string(Special(id - 256));
    return std::nullopt;
  }

  absl::Status Save(const std::string& dir) const override { return absl::UnimplementedError("fake tokenizer"); }

 private:
  static constexpr int32_t kNumSpecial = 5;
  static absl::string_view Special(int32_t s) {
    constexpr absl::string_view kSpecial[kNumSpecial] = {kBytePad, kByteBos, kByteEos, kByteImStart, kByteImEnd};
    return kSpecial[s];
  }
};

}  // namespace alignd

#endif  // ALIGND_TESTS_COMMON_TEXT_FAKE_TOKENIZER_H_
