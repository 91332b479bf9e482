// The pipeline follows HF tokenizers: added tokens matched on the raw text, NFC, added tokens matched on the normalized
// text, pre-tokenizer (regex splits, then the byte-level spelling), BPE per pre-token, then the post-processor's
// template. Parsing lives in bpe_json.cc, the pieces in bpe_*.cc. Known differences from HF:
//  - Decode writes an added token's content as it is; HF runs it through the ByteLevel decoder, which differs only
//    for added tokens whose characters all are byte-level characters spelling something other than themselves.
//  - Only the `single` template is used (Encode takes one sequence); offsets and trim_offsets do not exist here.
//  - Regexes run on PCRE2 (Unicode 14 properties with 10.42) and NFC uses Unicode 14 tables; HF's Oniguruma and
//    Rust may know newer characters. Oniguruma-only syntax in a Split pattern (such as \h) is read PCRE2's way.
#include "common/text/tokenizer.h"

#include <algorithm>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "common/base/file_util.h"
#include "common/base/status.h"
#include "common/text/bpe/added_tokens.h"
#include "common/text/bpe/bytes.h"
#include "common/text/bpe/json.h"
#include "common/text/bpe/model.h"
#include "common/text/bpe/nfc.h"
#include "common/text/bpe/pretokenizer.h"
#include "glog/logging.h"
#include "nlohmann/json.hpp"

namespace alignd {
namespace {

constexpr absl::string_view kTokenizerFile = "tokenizer.json";
constexpr absl::string_view kConfigFile = "tokenizer_config.json";
// transformers' VERY_LARGE_INTEGER (int(1e30)): "no limit".
constexpr double kNoMaxLength = 1e30;

class BpeTokenizer final : public Tokenizer {
 public:
  static absl::StatusOr<std::unique_ptr<BpeTokenizer>> Create(absl::string_view tokenizer_json,
                                                              absl::string_view config_json);

  std::vector<int32_t> Encode(absl::string_view text, bool add_special_tokens) const override;
  std::string Decode(const std::vector<int32_t>& ids, bool skip_special_tokens) const override;
  int32_t vocab_size() const override { return vocab_size_; }
  std::optional<int32_t> TokenToId(absl::string_view token) const override;
  std::optional<std::string> IdToToken(int32_t id) const override;
  absl::Status Save(const std::string& dir) const override;

 private:
  BpeTokenizer() = default;
  absl::Status SetAddedTokens(std::vector<bpe::AddedToken> tokens, bool nfc);
  absl::Status SetSpecialIds(const bpe::TokenizerConfigSpec& config,
                             const std::optional<bpe::TokenizerSpec::Template>& single_template);
  absl::StatusOr<std::optional<int32_t>> ConfigTokenId(const std::optional<std::string>& token,
                                                       absl::string_view field) const;
  // Ids of text without raw (non-normalized) added tokens.
  void EncodePlain(absl::string_view text, std::vector<int32_t>* ids) const;
  std::string ConfigJsonForSave() const;

  std::unique_ptr<bpe::BpeModel> model_;
  std::unique_ptr<bpe::PreTokenizer> pre_tokenizer_;
  bool nfc_ = false;
  // Added tokens matched on the raw text, then on the normalized text (HF's two tries).
  std::unique_ptr<bpe::AddedTokenMatcher> raw_matcher_, normalized_matcher_;
  absl::flat_hash_map<std::string, int32_t> added_ids_;
  absl::flat_hash_map<int32_t, bpe::AddedToken> added_by_id_;
  // Ids around the text when add_special_tokens is set.
  std::vector<int32_t> prefix_ids_, suffix_ids_;
  int32_t vocab_size_ = 0;
  // The files this tokenizer came from, written back by Save (config may be empty).
  std::string tokenizer_json_, config_json_;
};

absl::StatusOr<std::unique_ptr<BpeTokenizer>> BpeTokenizer::Create(absl::string_view tokenizer_json,
                                                                   absl::string_view config_json) {
  ASSIGN_OR_RETURN(bpe::TokenizerSpec spec, bpe::ParseTokenizerJson(tokenizer_json));
  ASSIGN_OR_RETURN(bpe::TokenizerConfigSpec config, bpe::ParseTokenizerConfigJson(config_json));
  std::unique_ptr<BpeTokenizer> t(new BpeTokenizer());
  t->tokenizer_json_ = std::string(tokenizer_json);
  t->config_json_ = std::string(config_json);

  bpe::BpeModel::Options options = spec.model_options;
  if (spec.unk_token) {
    auto it = spec.vocab.find(*spec.unk_token);
    if (it == spec.vocab.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat(kTokenizerFile, ": model.unk_token: \"", *spec.unk_token, "\" is not in the vocab"));
    }
    options.unk_id = it->second;
  }
  auto model = bpe::BpeModel::Create(std::move(spec.vocab), spec.merges, options);
  if (!model.ok()) return Annotate(model.status(), absl::StrCat(kTokenizerFile, ": model"));
  t->model_ = std::move(model).value();

  auto pre_tokenizer = bpe::PreTokenizer::Create(std::move(spec.pre_tokenizer));
  if (!pre_tokenizer.ok()) return Annotate(pre_tokenizer.status(), absl::StrCat(kTokenizerFile, ": pre_tokenizer"));
  t->pre_tokenizer_ = std::move(pre_tokenizer).value();

  t->vocab_size_ = t->model_->id_limit();
  RETURN_IF_ERROR(t->SetAddedTokens(std::move(spec.added_tokens), spec.nfc));
  RETURN_IF_ERROR(t->SetSpecialIds(config, spec.single_template));
  return t;
}

absl::Status BpeTokenizer::SetAddedTokens(std::vector<bpe::AddedToken> tokens, bool nfc) {
  nfc_ = nfc;
  std::vector<bpe::AddedToken> raw, normalized;
  for (bpe::AddedToken& token : tokens) {
    vocab_size_ = std::max(vocab_size_, token.id + 1);
    added_ids_.try_emplace(token.content, token.id);
    if (token.normalized) {
      normalized.push_back(token);
      if (nfc_) normalized.back().content = bpe::NormalizeNfc(token.content);
    } else {
      raw.push_back(token);
    }
    added_by_id_.try_emplace(token.id, std::move(token));
  }
  ASSIGN_OR_RETURN(raw_matcher_, bpe::AddedTokenMatcher::Create(std::move(raw)));
  ASSIGN_OR_RETURN(normalized_matcher_, bpe::AddedTokenMatcher::Create(std::move(normalized)));
  return absl::OkStatus();
}

absl::StatusOr<std::optional<int32_t>> BpeTokenizer::ConfigTokenId(const std::optional<std::string>& token,
                                                                   absl::string_view field) const {
  if (!token) return std::optional<int32_t>();
  std::optional<int32_t> id = TokenToId(*token);
  if (!id) {
    return absl::InvalidArgumentError(
        absl::StrCat(kConfigFile, ": ", field, ": \"", *token, "\" is not in the vocabulary"));
  }
  return id;
}

absl::Status BpeTokenizer::SetSpecialIds(const bpe::TokenizerConfigSpec& config,
                                         const std::optional<bpe::TokenizerSpec::Template>& single_template) {
  ASSIGN_OR_RETURN(bos_id_, ConfigTokenId(config.bos_token, "bos_token"));
  ASSIGN_OR_RETURN(eos_id_, ConfigTokenId(config.eos_token, "eos_token"));
  ASSIGN_OR_RETURN(pad_id_, ConfigTokenId(config.pad_token, "pad_token"));
  if (single_template) {
    // An id the model does not know would index past the embedding table when encoded.
    for (const std::vector<int32_t>* ids : {&single_template->prefix, &single_template->suffix}) {
      for (int32_t id : *ids) {
        if (!IdToToken(id)) {
          return absl::InvalidArgumentError(absl::StrCat(kTokenizerFile, ": post_processor: special token id ", id,
                                                         " is neither in model.vocab nor in added_tokens"));
        }
      }
    }
    prefix_ids_ = single_template->prefix;
    suffix_ids_ = single_template->suffix;
    // Without a tokenizer_config.json, the token the template starts with is the BOS token (Llama-3).
    if (!config.bos_token && !prefix_ids_.empty()) bos_id_ = prefix_ids_.front();
  }
  // add_bos_token / add_eos_token, when given, override the template the way transformers' Llama tokenizer does.
  auto apply = [](std::optional<bool> add, std::optional<int32_t> id, bool at_front, std::vector<int32_t>* ids) {
    if (!add || !id) return;
    if (!*add) {
      ids->erase(std::remove(ids->begin(), ids->end(), *id), ids->end());
    } else if (ids->empty() || (at_front ? ids->front() : ids->back()) != *id) {
      ids->insert(at_front ? ids->begin() : ids->end(), *id);
    }
  };
  apply(config.add_bos_token, bos_id_, /*at_front=*/true, &prefix_ids_);
  apply(config.add_eos_token, eos_id_, /*at_front=*/false, &suffix_ids_);
  return absl::OkStatus();
}

std::vector<int32_t> BpeTokenizer::Encode(absl::string_view text, bool add_special_tokens) const {
  std::vector<int32_t> ids;
  if (add_special_tokens) ids = prefix_ids_;
  for (const auto& segment : raw_matcher_->Split(text)) {
    if (segment.id >= 0) {
      ids.push_back(segment.id);
    } else {
      EncodePlain(segment.text, &ids);
    }
  }
  if (add_special_tokens) ids.insert(ids.end(), suffix_ids_.begin(), suffix_ids_.end());
  return ids;
}

void BpeTokenizer::EncodePlain(absl::string_view text, std::vector<int32_t>* ids) const {
  std::string normalized;
  if (nfc_) {
    normalized = bpe::NormalizeNfc(text);
    text = normalized;
  }
  for (const auto& segment : normalized_matcher_->Split(text)) {
    if (segment.id >= 0) {
      ids->push_back(segment.id);
      continue;
    }
    for (const std::string& word : pre_tokenizer_->Split(segment.text)) model_->Tokenize(word, ids);
  }
}

std::string BpeTokenizer::Decode(const std::vector<int32_t>& ids, bool skip_special_tokens) const {
  std::string out;
  for (int32_t id : ids) {
    if (auto it = added_by_id_.find(id); it != added_by_id_.end()) {
      if (!(skip_special_tokens && it->second.special)) out.append(it->second.content);
      continue;
    }
    const std::string* token = model_->IdToToken(id);
    if (token == nullptr) continue;
    // As HF's ByteLevel decoder: a token that is not all byte-level characters stands for its own UTF-8.
    if (!bpe::AppendBytesOfByteLevel(*token, &out)) out.append(*token);
  }
  return out;
}

std::optional<int32_t> BpeTokenizer::TokenToId(absl::string_view token) const {
  if (auto it = added_ids_.find(token); it != added_ids_.end()) return it->second;
  return model_->TokenToId(token);
}

std::optional<std::string> BpeTokenizer::IdToToken(int32_t id) const {
  if (auto it = added_by_id_.find(id); it != added_by_id_.end()) return it->second.content;
  if (const std::string* token = model_->IdToToken(id); token != nullptr) return *token;
  return std::nullopt;
}

std::string BpeTokenizer::ConfigJsonForSave() const {
  if (!config_json_.empty()) return config_json_;
  nlohmann::ordered_json config = nlohmann::ordered_json::object();
  const std::pair<const char*, std::optional<int32_t>> specials[] = {
      {"bos_token", bos_id_}, {"eos_token", eos_id_}, {"pad_token", pad_id_}};
  for (const auto& [key, id] : specials) {
    if (id) config[key] = *IdToToken(*id);
  }
  config["model_max_length"] = kNoMaxLength;
  config["tokenizer_class"] = "PreTrainedTokenizerFast";
  return config.dump(2);
}

absl::Status BpeTokenizer::Save(const std::string& dir) const {
  RETURN_IF_ERROR(MakeDirs(dir));
  RETURN_IF_ERROR(WriteFileAtomic(JoinPath(dir, kTokenizerFile), tokenizer_json_));
  return WriteFileAtomic(JoinPath(dir, kConfigFile), ConfigJsonForSave());
}

// The byte tokenizer's files, in the layout HF tokenizers and transformers write.
std::pair<std::string, std::string> ByteTokenizerFiles() {
  using Json = nlohmann::ordered_json;
  const absl::string_view specials[] = {kBytePad, kByteBos, kByteEos, kByteImStart, kByteImEnd};
  const int32_t bos_id = 257;
  Json vocab = Json::object();
  for (int b = 0; b < 256; ++b) {
    std::string token;
    bpe::AppendByteLevel(std::string(1, static_cast<char>(b)), &token);
    vocab[token] = b;
  }
  Json added = Json::array();
  for (int i = 0; i < 5; ++i) {
    std::string content(specials[i]);
    vocab[content] = 256 + i;
    added.push_back({{"id", 256 + i},
                     {"content", content},
                     {"single_word", false},
                     {"lstrip", false},
                     {"rstrip", false},
                     {"normalized", false},
                     {"special", true}});
  }
  Json byte_level = {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", true}};
  std::string bos(kByteBos);
  Json bos_piece = {{"SpecialToken", {{"id", bos}, {"type_id", 0}}}};
  Json post = {
      {"type", "TemplateProcessing"},
      {"single", {bos_piece, {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}},
      {"pair",
       {bos_piece,
        {{"Sequence", {{"id", "A"}, {"type_id", 0}}}},
        bos_piece,
        {{"Sequence", {{"id", "B"}, {"type_id", 1}}}}}},
      {"special_tokens", {{bos, {{"id", bos}, {"ids", {bos_id}}, {"tokens", {bos}}}}}},
  };
  Json model = {{"type", "BPE"},
                {"dropout", nullptr},
                {"unk_token", nullptr},
                {"continuing_subword_prefix", nullptr},
                {"end_of_word_suffix", nullptr},
                {"fuse_unk", false},
                {"byte_fallback", false},
                {"ignore_merges", false},
                {"vocab", vocab},
                {"merges", Json::array()}};
  Json tokenizer = {{"version", "1.0"},       {"truncation", nullptr}, {"padding", nullptr},
                    {"added_tokens", added},  {"normalizer", nullptr}, {"pre_tokenizer", byte_level},
                    {"post_processor", post}, {"decoder", byte_level}, {"model", model}};
  Json config = {{"add_bos_token", true},
                 {"add_eos_token", false},
                 {"bos_token", std::string(kByteBos)},
                 {"eos_token", std::string(kByteEos)},
                 {"pad_token", std::string(kBytePad)},
                 {"clean_up_tokenization_spaces", false},
                 {"model_max_length", kNoMaxLength},
                 {"tokenizer_class", "PreTrainedTokenizerFast"}};
  return {tokenizer.dump(2), config.dump(2)};
}

}  // namespace

absl::StatusOr<std::unique_ptr<Tokenizer>> TokenizerFromJson(absl::string_view tokenizer_json,
                                                             absl::string_view tokenizer_config_json) {
  ASSIGN_OR_RETURN(std::unique_ptr<BpeTokenizer> tokenizer,
                   BpeTokenizer::Create(tokenizer_json, tokenizer_config_json));
  return std::unique_ptr<Tokenizer>(std::move(tokenizer));
}

absl::StatusOr<std::unique_ptr<Tokenizer>> LoadTokenizer(const std::string& dir) {
  ASSIGN_OR_RETURN(std::string tokenizer_json, ReadFile(JoinPath(dir, kTokenizerFile)));
  std::string config_json;
  if (std::string config_path = JoinPath(dir, kConfigFile); PathExists(config_path)) {
    ASSIGN_OR_RETURN(config_json, ReadFile(config_path));
  }
  auto tokenizer = TokenizerFromJson(tokenizer_json, config_json);
  if (!tokenizer.ok()) return Annotate(tokenizer.status(), dir);
  return tokenizer;
}

std::unique_ptr<Tokenizer> MakeByteTokenizer() {
  auto [tokenizer_json, config_json] = ByteTokenizerFiles();
  auto tokenizer = TokenizerFromJson(tokenizer_json, config_json);
  CHECK(tokenizer.ok()) << "built-in byte tokenizer: " << tokenizer.status();
  return std::move(tokenizer).value();
}

}  // namespace alignd
