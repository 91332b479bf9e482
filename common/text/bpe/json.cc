#include "common/text/bpe/json.h"

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/base/json_depth.h"
#include "common/base/status.h"
#include "nlohmann/json.hpp"

namespace alignd {
namespace bpe {
namespace {

using Json = nlohmann::json;

constexpr absl::string_view kTokenizerFile = "tokenizer.json";
constexpr absl::string_view kConfigFile = "tokenizer_config.json";

absl::Status Invalid(absl::string_view field, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(kTokenizerFile, ": ", field, ": ", what));
}

// A value as JSON text for a message, clipped: it may be anything the file holds.
std::string Quoted(const Json& value) {
  constexpr size_t kMax = 100;
  std::string text = value.dump();
  if (text.size() > kMax) text = absl::StrCat(text.substr(0, kMax), "...");
  return text;
}

absl::StatusOr<Json> ParseJson(absl::string_view file, absl::string_view text) {
  // Deeper nesting would overflow the stack in Quoted's dump or in the readers of nested Sequences below.
  if (absl::Status depth = CheckJsonDepth(text); !depth.ok()) return Annotate(depth, file);
  try {
    Json root = Json::parse(text.begin(), text.end());
    if (!root.is_object()) return absl::InvalidArgumentError(absl::StrCat(file, ": expected a JSON object"));
    return root;
  } catch (const Json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(file, ": not valid JSON: ", e.what()));
  }
}

// `obj[key]` when present and not null, else nullptr.
const Json* Find(const Json& obj, const char* key) {
  auto it = obj.find(key);
  return it == obj.end() || it->is_null() ? nullptr : &*it;
}

// A boolean field, `fallback` when absent or null.
absl::StatusOr<bool> GetBool(const Json& obj, const char* key, const std::string& path, bool fallback) {
  const Json* v = Find(obj, key);
  if (v == nullptr) return fallback;
  if (!v->is_boolean()) return Invalid(absl::StrCat(path, ".", key), "expected true or false");
  return v->get<bool>();
}

absl::StatusOr<std::string> GetType(const Json& obj, const std::string& path) {
  if (!obj.is_object()) return Invalid(path, "expected an object");
  const Json* type = Find(obj, "type");
  if (type == nullptr || !type->is_string()) return Invalid(absl::StrCat(path, ".type"), "missing");
  return type->get<std::string>();
}

absl::Status ParseModel(const Json& root, TokenizerSpec* spec) {
  const Json* model = Find(root, "model");
  if (model == nullptr || !model->is_object()) return Invalid("model", "missing");
  if (const Json* type = Find(*model, "type"); type != nullptr && *type != "BPE") {
    return Invalid("model.type", absl::StrCat(Quoted(*type), " is not supported (only \"BPE\")"));
  }
  const Json* vocab = Find(*model, "vocab");
  if (vocab == nullptr) return Invalid("model.vocab", "missing");
  if (!vocab->is_object()) return Invalid("model.vocab", "expected an object of token -> id");
  spec->vocab.reserve(vocab->size());
  for (const auto& [token, id] : vocab->items()) {
    if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() > kMaxTokenId) {
      return Invalid("model.vocab", absl::StrCat("id of \"", token, "\" is ", Quoted(id),
                                                 ", expected an integer in [0, ", kMaxTokenId, "]"));
    }
    spec->vocab.emplace(token, id.get<int32_t>());
  }
  const Json* merges = Find(*model, "merges");
  if (merges == nullptr) return Invalid("model.merges", "missing");
  if (!merges->is_array()) return Invalid("model.merges", "expected an array");
  spec->merges.reserve(merges->size());
  for (size_t i = 0; i < merges->size(); ++i) {
    const Json& m = (*merges)[i];
    if (m.is_string()) {
      const std::string& s = m.get_ref<const std::string&>();
      size_t space = s.find(' ');
      if (space == std::string::npos || space == 0 || space + 1 == s.size() || s.find(' ', space + 1) != s.npos) {
        return Invalid(absl::StrCat("model.merges[", i, "]"), absl::StrCat(Quoted(m), " is not \"left right\""));
      }
      spec->merges.emplace_back(s.substr(0, space), s.substr(space + 1));
    } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
      spec->merges.emplace_back(m[0].get<std::string>(), m[1].get<std::string>());
    } else {
      return Invalid(absl::StrCat("model.merges[", i, "]"), "expected \"left right\" or [left, right]");
    }
  }
  if (const Json* dropout = Find(*model, "dropout"); dropout != nullptr && *dropout != 0) {
    return Invalid("model.dropout", "BPE dropout is not supported (encoding must be deterministic)");
  }
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    if (const Json* v = Find(*model, key); v != nullptr && *v != "") {
      return Invalid(absl::StrCat("model.", key), "is not supported by byte-level BPE");
    }
  }
  ASSIGN_OR_RETURN(bool byte_fallback, GetBool(*model, "byte_fallback", "model", false));
  if (byte_fallback) return Invalid("model.byte_fallback", "is not supported by byte-level BPE");
  ASSIGN_OR_RETURN(spec->model_options.fuse_unk, GetBool(*model, "fuse_unk", "model", false));
  ASSIGN_OR_RETURN(spec->model_options.ignore_merges, GetBool(*model, "ignore_merges", "model", false));
  if (const Json* unk = Find(*model, "unk_token"); unk != nullptr) {
    if (!unk->is_string()) return Invalid("model.unk_token", "expected a string or null");
    spec->unk_token = unk->get<std::string>();
  }
  return absl::OkStatus();
}

absl::Status ParseAddedTokens(const Json& root, TokenizerSpec* spec) {
  const Json* added = Find(root, "added_tokens");
  if (added == nullptr) return absl::OkStatus();
  if (!added->is_array()) return Invalid("added_tokens", "expected an array");
  for (size_t i = 0; i < added->size(); ++i) {
    const Json& t = (*added)[i];
    std::string path = absl::StrCat("added_tokens[", i, "]");
    if (!t.is_object()) return Invalid(path, "expected an object");
    const Json* id = Find(t, "id");
    if (id == nullptr || !id->is_number_integer() || id->get<int64_t>() < 0 || id->get<int64_t>() > kMaxTokenId) {
      return Invalid(path + ".id", "expected an integer id");
    }
    const Json* content = Find(t, "content");
    if (content == nullptr || !content->is_string()) return Invalid(path + ".content", "expected a string");
    AddedToken token;
    token.id = id->get<int32_t>();
    token.content = content->get<std::string>();
    ASSIGN_OR_RETURN(token.special, GetBool(t, "special", path, false));
    ASSIGN_OR_RETURN(token.single_word, GetBool(t, "single_word", path, false));
    ASSIGN_OR_RETURN(token.lstrip, GetBool(t, "lstrip", path, false));
    ASSIGN_OR_RETURN(token.rstrip, GetBool(t, "rstrip", path, false));
    ASSIGN_OR_RETURN(token.normalized, GetBool(t, "normalized", path, !token.special));
    spec->added_tokens.push_back(std::move(token));
  }
  return absl::OkStatus();
}

// Accepts null, NFC, and Sequences of those.
absl::Status ParseNormalizer(const Json& normalizer, const std::string& path, TokenizerSpec* spec) {
  if (normalizer.is_null()) return absl::OkStatus();
  ASSIGN_OR_RETURN(std::string type, GetType(normalizer, path));
  if (type == "NFC") {
    spec->nfc = true;
    return absl::OkStatus();
  }
  if (type == "Sequence") {
    const Json* list = Find(normalizer, "normalizers");
    if (list == nullptr || !list->is_array()) return Invalid(path + ".normalizers", "expected an array");
    for (size_t i = 0; i < list->size(); ++i) {
      RETURN_IF_ERROR(ParseNormalizer((*list)[i], absl::StrCat(path, ".normalizers[", i, "]"), spec));
    }
    return absl::OkStatus();
  }
  return Invalid(path + ".type", absl::StrCat("\"", type, "\" is not supported (only null, NFC or a Sequence of NFC)"));
}

absl::StatusOr<SplitBehavior> ParseBehavior(const Json& split, const std::string& path) {
  const Json* b = Find(split, "behavior");
  if (b == nullptr) return Invalid(path + ".behavior", "missing");
  if (*b == "Removed") return SplitBehavior::kRemoved;
  if (*b == "Isolated") return SplitBehavior::kIsolated;
  if (*b == "MergedWithPrevious") return SplitBehavior::kMergedWithPrevious;
  if (*b == "MergedWithNext") return SplitBehavior::kMergedWithNext;
  if (*b == "Contiguous") return SplitBehavior::kContiguous;
  return Invalid(path + ".behavior", absl::StrCat(Quoted(*b), " is not a split behavior"));
}

// Appends the steps of `pre` (flattening Sequences) to `steps`.
absl::Status ParsePreTokenizer(const Json& pre, const std::string& path, std::vector<PreTokenizerStep>* steps) {
  ASSIGN_OR_RETURN(std::string type, GetType(pre, path));
  PreTokenizerStep step;
  if (type == "Sequence") {
    const Json* list = Find(pre, "pretokenizers");
    if (list == nullptr || !list->is_array()) return Invalid(path + ".pretokenizers", "expected an array");
    for (size_t i = 0; i < list->size(); ++i) {
      RETURN_IF_ERROR(ParsePreTokenizer((*list)[i], absl::StrCat(path, ".pretokenizers[", i, "]"), steps));
    }
    return absl::OkStatus();
  }
  if (type == "ByteLevel") {
    step.kind = PreTokenizerStep::Kind::kByteLevel;
    // HF's ByteLevel::default() has add_prefix_space and use_regex true.
    ASSIGN_OR_RETURN(step.add_prefix_space, GetBool(pre, "add_prefix_space", path, true));
    ASSIGN_OR_RETURN(step.use_regex, GetBool(pre, "use_regex", path, true));
  } else if (type == "Split") {
    step.kind = PreTokenizerStep::Kind::kSplit;
    const Json* pattern = Find(pre, "pattern");
    const Json* regex = pattern != nullptr && pattern->is_object() ? Find(*pattern, "Regex") : nullptr;
    const Json* literal = pattern != nullptr && pattern->is_object() ? Find(*pattern, "String") : nullptr;
    if (regex != nullptr && regex->is_string()) {
      step.pattern = regex->get<std::string>();
    } else if (literal != nullptr && literal->is_string()) {
      step.pattern = EscapeRegex(literal->get<std::string>());
    } else {
      return Invalid(path + ".pattern", "expected {\"Regex\": ...} or {\"String\": ...}");
    }
    ASSIGN_OR_RETURN(step.behavior, ParseBehavior(pre, path));
    ASSIGN_OR_RETURN(step.invert, GetBool(pre, "invert", path, false));
    if (auto compiled = BpeRegex::Create(step.pattern); !compiled.ok()) {
      return Invalid(path + ".pattern", compiled.status().message());
    }
  } else {
    return Invalid(path + ".type",
                   absl::StrCat("\"", type, "\" is not supported (only ByteLevel, Split, or a Sequence of those)"));
  }
  steps->push_back(std::move(step));
  return absl::OkStatus();
}

absl::StatusOr<std::vector<int32_t>> TemplateSpecialIds(const Json& processor, const Json& piece,
                                                        const std::string& path) {
  const Json* id = Find(piece, "id");
  if (id == nullptr || !id->is_string()) return Invalid(path + ".id", "expected a string");
  const Json* specials = Find(processor, "special_tokens");
  const Json* entry =
      specials != nullptr && specials->is_object() ? Find(*specials, id->get<std::string>().c_str()) : nullptr;
  const Json* ids = entry != nullptr && entry->is_object() ? Find(*entry, "ids") : nullptr;
  if (ids == nullptr || !ids->is_array()) {
    return Invalid(path + ".id", absl::StrCat(Quoted(*id), " has no ids in special_tokens"));
  }
  std::vector<int32_t> out;
  for (const Json& v : *ids) {
    if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() > kMaxTokenId) {
      return Invalid(path + ".id", absl::StrCat("special_tokens[", Quoted(*id), "].ids holds ", Quoted(v)));
    }
    out.push_back(v.get<int32_t>());
  }
  return out;
}

absl::Status ParseTemplate(const Json& processor, const std::string& path, TokenizerSpec* spec) {
  if (spec->single_template) return Invalid(path, "more than one TemplateProcessing");
  const Json* single = Find(processor, "single");
  if (single == nullptr || !single->is_array()) return Invalid(path + ".single", "expected an array");
  TokenizerSpec::Template t;
  bool seen_sequence = false;
  for (size_t i = 0; i < single->size(); ++i) {
    const Json& piece = (*single)[i];
    std::string piece_path = absl::StrCat(path, ".single[", i, "]");
    if (const Json* special = piece.is_object() ? Find(piece, "SpecialToken") : nullptr; special != nullptr) {
      ASSIGN_OR_RETURN(std::vector<int32_t> ids, TemplateSpecialIds(processor, *special, piece_path + ".SpecialToken"));
      std::vector<int32_t>& target = seen_sequence ? t.suffix : t.prefix;
      target.insert(target.end(), ids.begin(), ids.end());
    } else if (const Json* seq = piece.is_object() ? Find(piece, "Sequence") : nullptr;
               seq != nullptr && !seen_sequence && seq->is_object() && Find(*seq, "id") != nullptr &&
               *Find(*seq, "id") == "A") {
      seen_sequence = true;
    } else {
      return Invalid(piece_path, "expected {\"SpecialToken\": ...} or the one {\"Sequence\": {\"id\": \"A\"}}");
    }
  }
  if (!seen_sequence) return Invalid(path + ".single", "has no {\"Sequence\": {\"id\": \"A\"}}");
  spec->single_template = std::move(t);
  return absl::OkStatus();
}

// Accepts null, ByteLevel (which only adjusts offsets), TemplateProcessing, and Sequences of those.
absl::Status ParsePostProcessor(const Json& processor, const std::string& path, TokenizerSpec* spec) {
  if (processor.is_null()) return absl::OkStatus();
  ASSIGN_OR_RETURN(std::string type, GetType(processor, path));
  if (type == "ByteLevel") return absl::OkStatus();
  if (type == "TemplateProcessing") return ParseTemplate(processor, path, spec);
  if (type == "Sequence") {
    const Json* list = Find(processor, "processors");
    if (list == nullptr || !list->is_array()) return Invalid(path + ".processors", "expected an array");
    for (size_t i = 0; i < list->size(); ++i) {
      RETURN_IF_ERROR(ParsePostProcessor((*list)[i], absl::StrCat(path, ".processors[", i, "]"), spec));
    }
    return absl::OkStatus();
  }
  return Invalid(path + ".type", absl::StrCat("\"", type,
                                              "\" is not supported (only ByteLevel, TemplateProcessing, or a "
                                              "Sequence of those)"));
}

// Decode always maps through the byte-level decoder, so only decoders that do the same are accepted.
absl::Status ParseDecoder(const Json& decoder) {
  if (decoder.is_null()) return absl::OkStatus();
  ASSIGN_OR_RETURN(std::string type, GetType(decoder, "decoder"));
  if (type != "ByteLevel")
    return Invalid("decoder.type", absl::StrCat("\"", type, "\" is not supported (only ByteLevel)"));
  return absl::OkStatus();
}

absl::StatusOr<std::optional<std::string>> GetTokenString(const Json& config, const char* key) {
  const Json* v = Find(config, key);
  if (v == nullptr) return std::optional<std::string>();
  if (v->is_string()) return std::optional<std::string>(v->get<std::string>());
  if (const Json* content = v->is_object() ? Find(*v, "content") : nullptr;
      content != nullptr && content->is_string()) {
    return std::optional<std::string>(content->get<std::string>());
  }
  return absl::InvalidArgumentError(
      absl::StrCat(kConfigFile, ": ", key, ": expected a string, {\"content\": ...} or null"));
}

absl::StatusOr<std::optional<bool>> GetOptionalBool(const Json& config, const char* key) {
  const Json* v = Find(config, key);
  if (v == nullptr) return std::optional<bool>();
  if (!v->is_boolean())
    return absl::InvalidArgumentError(absl::StrCat(kConfigFile, ": ", key, ": expected true or false"));
  return std::optional<bool>(v->get<bool>());
}

}  // namespace

absl::StatusOr<TokenizerSpec> ParseTokenizerJson(absl::string_view json) {
  ASSIGN_OR_RETURN(Json root, ParseJson(kTokenizerFile, json));
  TokenizerSpec spec;
  RETURN_IF_ERROR(ParseModel(root, &spec));
  RETURN_IF_ERROR(ParseAddedTokens(root, &spec));
  if (const Json* normalizer = Find(root, "normalizer"); normalizer != nullptr) {
    RETURN_IF_ERROR(ParseNormalizer(*normalizer, "normalizer", &spec));
  }
  const Json* pre = Find(root, "pre_tokenizer");
  if (pre == nullptr) return Invalid("pre_tokenizer", "missing (byte-level BPE needs ByteLevel)");
  RETURN_IF_ERROR(ParsePreTokenizer(*pre, "pre_tokenizer", &spec.pre_tokenizer));
  if (const Json* post = Find(root, "post_processor"); post != nullptr) {
    RETURN_IF_ERROR(ParsePostProcessor(*post, "post_processor", &spec));
  }
  if (const Json* decoder = Find(root, "decoder"); decoder != nullptr) RETURN_IF_ERROR(ParseDecoder(*decoder));
  return spec;
}

absl::StatusOr<TokenizerConfigSpec> ParseTokenizerConfigJson(absl::string_view json) {
  TokenizerConfigSpec spec;
  if (json.empty()) return spec;
  ASSIGN_OR_RETURN(Json root, ParseJson(kConfigFile, json));
  ASSIGN_OR_RETURN(spec.bos_token, GetTokenString(root, "bos_token"));
  ASSIGN_OR_RETURN(spec.eos_token, GetTokenString(root, "eos_token"));
  ASSIGN_OR_RETURN(spec.pad_token, GetTokenString(root, "pad_token"));
  ASSIGN_OR_RETURN(spec.add_bos_token, GetOptionalBool(root, "add_bos_token"));
  ASSIGN_OR_RETURN(spec.add_eos_token, GetOptionalBool(root, "add_eos_token"));
  return spec;
}

}  // namespace bpe
}  // namespace alignd
