// Parsing of Hugging Face `tokenizer.json` (byte-level BPE only) and `tokenizer_config.json` into plain structs.
// Every error is INVALID_ARGUMENT and names the file and the field, e.g.
// `tokenizer.json: model.type: "Unigram" is not supported (only "BPE")`.
#ifndef ALIGND_COMMON_TEXT_BPE_JSON_H_
#define ALIGND_COMMON_TEXT_BPE_JSON_H_

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/text/bpe/added_tokens.h"
#include "common/text/bpe/model.h"
#include "common/text/bpe/pretokenizer.h"

namespace alignd {
namespace bpe {

struct TokenizerSpec {
  absl::flat_hash_map<std::string, int32_t> vocab;
  std::vector<std::pair<std::string, std::string>> merges;
  std::optional<std::string> unk_token;  // model.unk_token; resolved to an id by the caller
  BpeModel::Options model_options;       // all but unk_id
  std::vector<AddedToken> added_tokens;
  bool nfc = false;  // normalizer is NFC (or a Sequence of NFC only)
  std::vector<PreTokenizerStep> pre_tokenizer;
  // post_processor TemplateProcessing's `single` template around the sequence "A", as token ids. Unset when the
  // post-processor adds nothing (null, ByteLevel, or a Sequence of those).
  struct Template {
    std::vector<int32_t> prefix;
    std::vector<int32_t> suffix;
  };
  std::optional<Template> single_template;
};

// The parts of tokenizer.json alignd uses. INVALID_ARGUMENT (as above) for malformed or unsupported text, or JSON that
// nests deeper than kMaxJsonDepth.
absl::StatusOr<TokenizerSpec> ParseTokenizerJson(absl::string_view json);

struct TokenizerConfigSpec {
  // Token strings; a {"content": ...} object is reduced to its content. Unset when absent or null.
  std::optional<std::string> bos_token, eos_token, pad_token;
  std::optional<bool> add_bos_token, add_eos_token;
};

// An empty string gives an empty spec. INVALID_ARGUMENT naming the field for malformed text.
absl::StatusOr<TokenizerConfigSpec> ParseTokenizerConfigJson(absl::string_view json);

}  // namespace bpe
}  // namespace alignd

#endif  // ALIGND_COMMON_TEXT_BPE_JSON_H_
