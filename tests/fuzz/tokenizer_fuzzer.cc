// A tokenizer.json (and optionally a tokenizer_config.json after a line "----") for TokenizerFromJson
// (common/text/tokenizer.h). It loads or fails with INVALID_ARGUMENT; a tokenizer it loads encodes a few fixed strings
// (ASCII, Unicode to normalise, special-token look-alikes) and the config text into ids below vocab_size() that
// decode without error.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "common/text/tokenizer.h"
#include "tests/fuzz/fuzz_check.h"

namespace alignd {
namespace {

constexpr absl::string_view kSeparator = "\n----\n";

void Run(const uint8_t* data, size_t size) {
  absl::string_view input(reinterpret_cast<const char*>(data), size);
  absl::string_view json = input, config;
  if (size_t at = input.find(kSeparator); at != absl::string_view::npos) {
    json = input.substr(0, at);
    config = input.substr(at + kSeparator.size());
  }
  absl::StatusOr<std::unique_ptr<Tokenizer>> tokenizer = TokenizerFromJson(json, config);
  if (!tokenizer.ok()) {
    FUZZ_CHECK(fuzz::IsErrorOf(tokenizer.status(), {absl::StatusCode::kInvalidArgument}), tokenizer.status());
    return;
  }
  const Tokenizer& t = **tokenizer;
  const std::string texts[] = {"Hello, world! It's 2026: 3 + 4 = 7.",
                               "caf\xc3\xa9 cafe\xcc\x81 \xe4\xb8\xad\xe6\x96\x87",
                               "<|im_start|>user\n  hi<|im_end|>\n", std::string(config)};
  for (const std::string& text : texts) {
    for (bool add_special : {false, true}) {
      std::vector<int32_t> ids = t.Encode(text, add_special);
      for (int32_t id : ids) FUZZ_CHECK(id >= 0 && id < t.vocab_size(), "id " << id << " of " << t.vocab_size());
      t.Decode(ids, /*skip_special_tokens=*/add_special);
    }
  }
  for (std::optional<int32_t> id : {t.bos_id(), t.eos_id(), t.pad_id()}) {
    if (id) FUZZ_CHECK(t.IdToToken(*id).has_value(), "special id " << *id << " has no token");
  }
}

}  // namespace
}  // namespace alignd

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  alignd::Run(data, size);
  return 0;
}
