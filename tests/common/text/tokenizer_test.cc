#include "common/text/tokenizer.h"

#include <stdlib.h>

#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/base/file_util.h"
#include "common/text/bpe/model.h"
#include "common/text/bpe/nfc.h"
#include "common/text/bpe/pretokenizer.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace alignd {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using Json = nlohmann::json;

constexpr char kLlama3Pattern[] =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

// GPT-2's bytes_to_unicode(), written out again so that expectations do not come from the code under test.
std::string ByteToken(int b) {
  auto printable = [](int x) { return (x >= 33 && x <= 126) || (x >= 161 && x <= 172) || x >= 174; };
  int cp = b;
  if (!printable(b)) {
    cp = 256;
    for (int x = 0; x < b; ++x) cp += printable(x) ? 0 : 1;
  }
  std::string s;
  if (cp < 0x80) {
    s.push_back(static_cast<char>(cp));
  } else {
    s.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    s.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
  return s;
}

std::vector<int32_t> Bytes(const std::string& s) { return std::vector<int32_t>(s.begin(), s.end()); }
std::vector<int32_t> UnsignedBytes(const std::string& s) {
  std::vector<int32_t> ids;
  for (char c : s) ids.push_back(static_cast<uint8_t>(c));
  return ids;
}

// A tokenizer.json with the 256 byte tokens at ids 0..255, no merges, GPT-2's ByteLevel pre-tokenizer.
Json ByteVocabJson() {
  Json vocab = Json::object();
  for (int b = 0; b < 256; ++b) vocab[ByteToken(b)] = b;
  return Json{{"version", "1.0"},
              {"added_tokens", Json::array()},
              {"normalizer", nullptr},
              {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}}},
              {"post_processor", nullptr},
              {"decoder", {{"type", "ByteLevel"}}},
              {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", Json::array()}}}};
}

Json Llama3PreTokenizer() {
  return {{"type", "Sequence"},
          {"pretokenizers",
           {{{"type", "Split"}, {"pattern", {{"Regex", kLlama3Pattern}}}, {"behavior", "Isolated"}, {"invert", false}},
            {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", false}}}}};
}

// A hand-written tokenizer: ids 0..7 are h e l o Ġ w r d, then merges build "hello" and "Ġworld".
Json HelloJson() {
  Json j = ByteVocabJson();
  j["model"]["vocab"] = {{"h", 0},   {"e", 1},   {"l", 2},     {"o", 3},   {"Ġ", 4},      {"w", 5},
                         {"r", 6},   {"d", 7},   {"he", 8},    {"ll", 9},  {"hell", 10},  {"hello", 11},
                         {"Ġw", 12}, {"or", 13}, {"Ġwor", 14}, {"ld", 15}, {"Ġworld", 16}};
  j["model"]["merges"] = {"h e", "l l", "he ll", "hell o", "Ġ w", "o r", "Ġw or", "l d", "Ġwor ld"};
  return j;
}

std::unique_ptr<Tokenizer> Load(const Json& j, const Json& config = nullptr) {
  auto t = TokenizerFromJson(j.dump(), config.is_null() ? "" : config.dump());
  EXPECT_TRUE(t.ok()) << t.status();
  return t.ok() ? std::move(t).value() : nullptr;
}

absl::Status LoadStatus(const Json& j, const Json& config = nullptr) {
  return TokenizerFromJson(j.dump(), config.is_null() ? "" : config.dump()).status();
}

// Splits `text` with `pattern` (Isolated), as plain strings.
std::vector<std::string> Pieces(absl::string_view pattern, absl::string_view text) {
  auto regex = bpe::BpeRegex::Create(pattern);
  EXPECT_TRUE(regex.ok()) << regex.status();
  std::vector<std::string> out;
  for (auto [b, e] : bpe::SplitWithBehavior(**regex, text, bpe::SplitBehavior::kIsolated, false)) {
    out.emplace_back(text.substr(b, e - b));
  }
  return out;
}

std::string TempDir() {
  std::string tmpl = JoinPath(::testing::TempDir(), "tokenizer_test_XXXXXX");
  EXPECT_NE(::mkdtemp(tmpl.data()), nullptr);
  return tmpl;
}

// ---- The built-in byte tokenizer ----

TEST(ByteTokenizer, VocabLayout) {
  auto t = MakeByteTokenizer();
  EXPECT_EQ(t->vocab_size(), 261);
  EXPECT_EQ(t->IdToToken(0), "Ā");
  EXPECT_EQ(t->IdToToken(' '), "Ġ");
  EXPECT_EQ(t->IdToToken('\n'), "Ċ");
  EXPECT_EQ(t->IdToToken('a'), "a");
  EXPECT_EQ(t->IdToToken(255), "ÿ");
  EXPECT_EQ(t->TokenToId(kBytePad), 256);
  EXPECT_EQ(t->TokenToId(kByteBos), 257);
  EXPECT_EQ(t->TokenToId(kByteEos), 258);
  EXPECT_EQ(t->TokenToId(kByteImStart), 259);
  EXPECT_EQ(t->TokenToId(kByteImEnd), 260);
  EXPECT_EQ(t->pad_id(), 256);
  EXPECT_EQ(t->bos_id(), 257);
  EXPECT_EQ(t->eos_id(), 258);
  EXPECT_EQ(t->IdToToken(261), std::nullopt);
  EXPECT_EQ(t->TokenToId("ab"), std::nullopt);
}

TEST(ByteTokenizer, RoundTripsArbitraryBytes) {
  auto t = MakeByteTokenizer();
  std::string all;
  for (int b = 0; b < 256; ++b) all.push_back(static_cast<char>(b));
  for (const std::string& text :
       {all, std::string("\xff\xfe invalid \xc3"), std::string("trunc \xe2\x82"),
        std::string("emoji 👍🏽 and 🇫🇷!"), std::string("  tabs\t\tand\n\nnewlines  "), std::string("", 0),
        std::string("nul\0byte", 8)}) {
    std::vector<int32_t> ids = t->Encode(text);
    EXPECT_EQ(ids, UnsignedBytes(text));
    EXPECT_EQ(t->Decode(ids), text);
  }
}

TEST(ByteTokenizer, SpecialTokensInTextMapToTheirIds) {
  auto t = MakeByteTokenizer();
  std::vector<int32_t> expected = {259};
  for (int32_t id : Bytes("user\nhi")) expected.push_back(id);
  expected.push_back(260);
  EXPECT_EQ(t->Encode("<|im_start|>user\nhi<|im_end|>"), expected);
  // Partial special tokens are plain text.
  EXPECT_EQ(t->Encode("<|im_start"), Bytes("<|im_start"));
  EXPECT_THAT(t->Encode("<|pad|><|end_of_text|>"), ElementsAre(256, 258));
}

TEST(ByteTokenizer, AddSpecialTokensPrependsBos) {
  auto t = MakeByteTokenizer();
  EXPECT_THAT(t->Encode("hi", /*add_special_tokens=*/true), ElementsAre(257, 'h', 'i'));
  EXPECT_THAT(t->Encode("hi"), ElementsAre('h', 'i'));
  EXPECT_THAT(t->Encode("", true), ElementsAre(257));
}

TEST(ByteTokenizer, DecodeSkipsSpecialTokensOnlyWhenAsked) {
  auto t = MakeByteTokenizer();
  std::vector<int32_t> ids = {257, 'h', 'i', 258};
  EXPECT_EQ(t->Decode(ids), "<|begin_of_text|>hi<|end_of_text|>");
  EXPECT_EQ(t->Decode(ids, /*skip_special_tokens=*/true), "hi");
}

TEST(ByteTokenizer, DecodeSkipsUnknownIds) {
  auto t = MakeByteTokenizer();
  EXPECT_EQ(t->Decode({-1, 'a', 261, 1 << 30, 'b'}), "ab");
}

TEST(ByteTokenizer, SaveWritesHuggingFaceLayout) {
  std::string dir = JoinPath(TempDir(), "model/tok");
  ASSERT_TRUE(MakeByteTokenizer()->Save(dir).ok());
  Json tok = Json::parse(*ReadFile(JoinPath(dir, "tokenizer.json")));
  EXPECT_EQ(tok["version"], "1.0");
  EXPECT_TRUE(tok["truncation"].is_null());
  EXPECT_TRUE(tok["padding"].is_null());
  EXPECT_TRUE(tok["normalizer"].is_null());
  EXPECT_EQ(tok["pre_tokenizer"],
            (Json{{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", true}}));
  EXPECT_EQ(tok["decoder"]["type"], "ByteLevel");
  EXPECT_EQ(tok["post_processor"]["type"], "TemplateProcessing");
  EXPECT_EQ(tok["post_processor"]["special_tokens"]["<|begin_of_text|>"]["ids"], Json::array({257}));
  const Json& model = tok["model"];
  EXPECT_EQ(model["type"], "BPE");
  for (const char* key : {"dropout", "unk_token", "continuing_subword_prefix", "end_of_word_suffix"}) {
    EXPECT_TRUE(model[key].is_null()) << key;
  }
  EXPECT_EQ(model["fuse_unk"], false);
  EXPECT_EQ(model["byte_fallback"], false);
  EXPECT_EQ(model["ignore_merges"], false);
  EXPECT_EQ(model["merges"], Json::array());
  EXPECT_EQ(model["vocab"]["Ġ"], 32);
  ASSERT_EQ(tok["added_tokens"].size(), 5u);
  EXPECT_EQ(tok["added_tokens"][1], (Json{{"id", 257},
                                          {"content", "<|begin_of_text|>"},
                                          {"single_word", false},
                                          {"lstrip", false},
                                          {"rstrip", false},
                                          {"normalized", false},
                                          {"special", true}}));
  Json config = Json::parse(*ReadFile(JoinPath(dir, "tokenizer_config.json")));
  EXPECT_EQ(config["bos_token"], "<|begin_of_text|>");
  EXPECT_EQ(config["eos_token"], "<|end_of_text|>");
  EXPECT_EQ(config["pad_token"], "<|pad|>");
  EXPECT_EQ(config["add_bos_token"], true);
  EXPECT_EQ(config["tokenizer_class"], "PreTrainedTokenizerFast");
  EXPECT_TRUE(config["model_max_length"].is_number());
}

TEST(ByteTokenizer, LoadingWhatSaveWroteGivesAnIdenticalTokenizer) {
  auto original = MakeByteTokenizer();
  std::string dir = TempDir();
  ASSERT_TRUE(original->Save(dir).ok());
  auto loaded = LoadTokenizer(dir);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  const Tokenizer& t = **loaded;
  EXPECT_EQ(t.vocab_size(), original->vocab_size());
  EXPECT_EQ(t.bos_id(), original->bos_id());
  EXPECT_EQ(t.eos_id(), original->eos_id());
  EXPECT_EQ(t.pad_id(), original->pad_id());
  for (int32_t id = 0; id < t.vocab_size(); ++id) EXPECT_EQ(t.IdToToken(id), original->IdToToken(id)) << id;
  for (const char* text : {"<|im_start|>user\nHi 👋<|im_end|>", "\xff\xfe", "plain text"}) {
    EXPECT_EQ(t.Encode(text), original->Encode(text));
    EXPECT_EQ(t.Encode(text, true), original->Encode(text, true));
  }
  // Saving the loaded tokenizer writes the same files again.
  std::string dir2 = TempDir();
  ASSERT_TRUE(t.Save(dir2).ok());
  for (const char* file : {"tokenizer.json", "tokenizer_config.json"}) {
    EXPECT_EQ(*ReadFile(JoinPath(dir2, file)), *ReadFile(JoinPath(dir, file))) << file;
  }
}

// ---- A hand-written tokenizer.json ----

TEST(HandWrittenTokenizer, MergesApplyByRank) {
  auto t = Load(HelloJson());
  // "hello" -> h e l l o -> he l l o -> he ll o -> hell o -> hello; " world" -> Ġw o r l d -> ... -> Ġworld.
  EXPECT_THAT(t->Encode("hello world"), ElementsAre(11, 16));
  // "world" lacks the Ġ: w o r l d -> w or l d -> w or ld; (w, or) is no merge.
  EXPECT_THAT(t->Encode("world"), ElementsAre(5, 13, 15));
  // he l d -> he ld; (he, ld) is no merge.
  EXPECT_THAT(t->Encode("held"), ElementsAre(8, 15));
  // Equal ranks merge leftmost first: l l l -> ll l.
  EXPECT_THAT(t->Encode("lll"), ElementsAre(9, 2));
  // Characters outside the vocab are dropped when there is no unk token (as HF does).
  EXPECT_THAT(t->Encode("hex"), ElementsAre(8));
  EXPECT_EQ(t->Decode({11, 16}), "hello world");
  EXPECT_EQ(t->vocab_size(), 17);
}

TEST(HandWrittenTokenizer, MergesAsPairsEqualMergesAsStrings) {
  Json j = HelloJson();
  Json pairs = Json::array();
  for (const Json& m : j["model"]["merges"]) {
    std::string s = m;
    pairs.push_back({s.substr(0, s.find(' ')), s.substr(s.find(' ') + 1)});
  }
  j["model"]["merges"] = pairs;
  auto t = Load(j);
  EXPECT_THAT(t->Encode("hello world"), ElementsAre(11, 16));
  EXPECT_THAT(t->Encode("lll"), ElementsAre(9, 2));
}

TEST(HandWrittenTokenizer, SparseIdsCostOnlyTheirTokens) {
  // The largest id allowed once made a table of 2^24 strings (512 MiB) for a vocab of a few tokens.
  Json j = HelloJson();
  j["model"]["vocab"]["x"] = bpe::kMaxTokenId;
  auto t = Load(j);
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->vocab_size(), bpe::kMaxTokenId + 1);
  EXPECT_EQ(t->IdToToken(bpe::kMaxTokenId), "x");
  EXPECT_EQ(t->IdToToken(bpe::kMaxTokenId - 1), std::nullopt);
  EXPECT_EQ(t->IdToToken(17), std::nullopt);
  EXPECT_THAT(t->Encode("hello x"), ElementsAre(11, 4, bpe::kMaxTokenId));
  EXPECT_EQ(t->Decode({11, 4, 17, bpe::kMaxTokenId}), "hello x");
}

TEST(HandWrittenTokenizer, UnkTokenReplacesUnknownCharacters) {
  Json j = HelloJson();
  j["model"]["vocab"]["<unk>"] = 17;
  j["model"]["unk_token"] = "<unk>";
  EXPECT_THAT(Load(j)->Encode("hexx"), ElementsAre(8, 17, 17));
  j["model"]["fuse_unk"] = true;
  EXPECT_THAT(Load(j)->Encode("hexx"), ElementsAre(8, 17));
}

TEST(HandWrittenTokenizer, AddPrefixSpaceAppliesToEachPiece) {
  Json j = HelloJson();
  j["pre_tokenizer"]["add_prefix_space"] = true;
  j["added_tokens"] = {{{"id", 17}, {"content", "<s>"}, {"special", true}}};
  EXPECT_THAT(Load(j)->Encode("world<s>world"), ElementsAre(16, 17, 16));
}

// ---- Llama-3 / Qwen2 style ----

// Byte vocab plus whole pieces, with ignore_merges: a piece in the vocab becomes one id, so the splits show.
Json Llama3StyleJson() {
  Json j = ByteVocabJson();
  j["pre_tokenizer"] = Llama3PreTokenizer();
  j["model"]["ignore_merges"] = true;
  for (const auto& [token, id] : std::vector<std::pair<std::string, int>>{
           {"123", 256}, {"456", 257}, {"'M", 258}, {"ĠI", 259}, {"Ġhere", 260}, {"ĊĊ", 261}, {"!!ĊĊ", 262}}) {
    j["model"]["vocab"][token] = id;
  }
  j["added_tokens"] = {{{"id", 300}, {"content", "<|begin_of_text|>"}, {"special", true}},
                       {{"id", 301}, {"content", "<|eot_id|>"}, {"special", true}}};
  Json bos = {{"SpecialToken", {{"id", "<|begin_of_text|>"}, {"type_id", 0}}}};
  Json sequence = {{"Sequence", {{"id", "A"}, {"type_id", 0}}}};
  Json specials = {
      {"<|begin_of_text|>", {{"id", "<|begin_of_text|>"}, {"ids", {300}}, {"tokens", {"<|begin_of_text|>"}}}}};
  Json byte_level = {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", false}, {"use_regex", true}};
  Json templ = {{"type", "TemplateProcessing"},
                {"single", {bos, sequence}},
                {"pair", Json::array()},
                {"special_tokens", specials}};
  j["post_processor"] = {{"type", "Sequence"}, {"processors", {byte_level, templ}}};
  return j;
}

TEST(Llama3Style, SplitsNumbersInGroupsOfThree) {
  auto t = Load(Llama3StyleJson());
  EXPECT_THAT(t->Encode("1234567"), ElementsAre(256, 257, '7'));
  // GPT-2's pattern keeps the number whole: seven byte ids.
  EXPECT_EQ(Load(ByteVocabJson())->Encode("1234567"), Bytes("1234567"));
}

TEST(Llama3Style, ContractionsAreCaseInsensitive) {
  auto t = Load(Llama3StyleJson());
  EXPECT_THAT(t->Encode("I'M here"), ElementsAre('I', 258, 260));
  EXPECT_THAT(t->Encode("1234567 I'M here"), ElementsAre(256, 257, '7', 259, 258, 260));
}

TEST(Llama3Style, NewlinesJoinPunctuation) {
  auto t = Load(Llama3StyleJson());
  // Pieces: "Hello", " world", "!!\n\n", " ", " x".
  std::vector<int32_t> expected = Bytes("Hello world");
  expected.insert(expected.end(), {262, ' ', ' ', 'x'});
  EXPECT_EQ(t->Encode("Hello world!!\n\n  x"), expected);
}

TEST(Llama3Style, TemplateProcessingAddsBos) {
  auto t = Load(Llama3StyleJson());
  EXPECT_EQ(t->bos_id(), 300);  // taken from the template when there is no tokenizer_config.json
  EXPECT_THAT(t->Encode("123", true), ElementsAre(300, 256));
  EXPECT_THAT(t->Encode("123<|eot_id|>", false), ElementsAre(256, 301));
  EXPECT_EQ(t->Decode({300, 256, 301}, /*skip_special_tokens=*/true), "123");
}

TEST(Llama3Style, TokenizerConfigSetsSpecialIdsAndAddBos) {
  Json config = {{"bos_token", {{"content", "<|begin_of_text|>"}, {"lstrip", false}}},
                 {"eos_token", "<|eot_id|>"},
                 {"pad_token", nullptr},
                 {"add_bos_token", false}};
  auto t = Load(Llama3StyleJson(), config);
  EXPECT_EQ(t->bos_id(), 300);
  EXPECT_EQ(t->eos_id(), 301);
  EXPECT_EQ(t->pad_id(), std::nullopt);
  EXPECT_THAT(t->Encode("123", true), ElementsAre(256));
  config["add_eos_token"] = true;
  EXPECT_THAT(Load(Llama3StyleJson(), config)->Encode("123", true), ElementsAre(256, 301));
}

TEST(Llama3Style, AddBosTokenWithByteLevelPostProcessor) {
  Json j = Llama3StyleJson();
  j["post_processor"] = {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", false}};
  EXPECT_THAT(Load(j)->Encode("123", true), ElementsAre(256));
  EXPECT_THAT(Load(j, {{"bos_token", "<|begin_of_text|>"}, {"add_bos_token", true}})->Encode("123", true),
              ElementsAre(300, 256));
}

// ---- Added token options ----

TEST(AddedTokens, LongestMatchWins) {
  Json j = ByteVocabJson();
  j["added_tokens"] = {{{"id", 300}, {"content", "<a>"}, {"special", true}},
                       {{"id", 301}, {"content", "<a><b>"}, {"special", true}}};
  EXPECT_THAT(Load(j)->Encode("<a><b><a>"), ElementsAre(301, 300));
}

TEST(AddedTokens, LstripAndRstripTakeWhitespace) {
  Json j = ByteVocabJson();
  j["added_tokens"] = {{{"id", 300}, {"content", "<mask>"}, {"lstrip", true}, {"rstrip", true}, {"special", true}}};
  auto t = Load(j);
  EXPECT_THAT(t->Encode("a  <mask>\t b"), ElementsAre('a', 300, 'b'));
  j["added_tokens"][0]["lstrip"] = false;
  EXPECT_THAT(Load(j)->Encode("a <mask> b"), ElementsAre('a', ' ', 300, 'b'));
}

TEST(AddedTokens, SingleWordOnlyMatchesWholeWords) {
  Json j = ByteVocabJson();
  j["added_tokens"] = {{{"id", 300}, {"content", "ab"}, {"single_word", true}, {"normalized", false}}};
  auto t = Load(j);
  EXPECT_THAT(t->Encode("ab cab abc"), ElementsAre(300, ' ', 'c', 'a', 'b', ' ', 'a', 'b', 'c'));
  EXPECT_EQ(t->Decode({300}), "ab");
}

TEST(AddedTokens, NormalizedTokensMatchNormalizedText) {
  Json j = ByteVocabJson();
  j["normalizer"] = {{"type", "NFC"}};
  j["added_tokens"] = {{{"id", 300}, {"content", "caf\u00e9"}, {"normalized", true}}};
  auto t = Load(j);
  EXPECT_THAT(t->Encode("cafe\u0301!"), ElementsAre(300, '!'));
}

// ---- NFC ----

TEST(Nfc, NormalizerComposesBeforeEncoding) {
  Json j = ByteVocabJson();
  j["model"]["ignore_merges"] = true;
  j["model"]["vocab"]["Ã©"] = 256;  // "é" (C3 A9) in byte-level spelling
  EXPECT_EQ(Load(j)->Encode("e\u0301"), UnsignedBytes("e\u0301"));
  j["normalizer"] = {{"type", "Sequence"}, {"normalizers", {{{"type", "NFC"}}}}};
  EXPECT_THAT(Load(j)->Encode("e\u0301"), ElementsAre(256));
}

TEST(Nfc, KnownCases) {
  EXPECT_EQ(bpe::NormalizeNfc("ascii only"), "ascii only");
  EXPECT_EQ(bpe::NormalizeNfc("e\u0301"), "\u00e9");
  // Canonical reordering: dot below (220) sorts before circumflex (230), then both compose.
  EXPECT_EQ(bpe::NormalizeNfc("a\u0302\u0323"), "\u1ead");
  EXPECT_EQ(bpe::NormalizeNfc("\u1100\u1161\u11a8"), "\uac01");  // Hangul L V T
  EXPECT_EQ(bpe::NormalizeNfc("\u212b"), "\u00c5");              // singleton: Angstrom sign
  EXPECT_EQ(bpe::NormalizeNfc("\u0958"), "\u0915\u093c");        // composition exclusion
  EXPECT_EQ(bpe::NormalizeNfc("\u00e9\u0301"), "\u00e9\u0301");  // already NFC, acute blocked by nothing to join
  // Invalid bytes pass through and block composition.
  EXPECT_EQ(bpe::NormalizeNfc("e\xff\u0301"), "e\xff\u0301");
  EXPECT_EQ(bpe::NormalizeNfc("\u0301e"), "\u0301e");
}

// ---- Pre-tokenizer regexes ----

TEST(PreTokenizer, Gpt2PatternUsesUnicodeWhiteSpace) {
  // Expectations from Python's `regex` module (GPT-2's reference): U+0085 is whitespace, U+180E and U+FEFF are not.
  EXPECT_THAT(Pieces(bpe::kGpt2Pattern, "x\u180e\u180ey"), ElementsAre("x", "\u180e\u180e", "y"));
  EXPECT_THAT(Pieces(bpe::kGpt2Pattern, "x\u0085\u0085y"), ElementsAre("x", "\u0085", "\u0085", "y"));
  EXPECT_THAT(Pieces(bpe::kGpt2Pattern, "a\ufeff\ufeffb"), ElementsAre("a", "\ufeff\ufeff", "b"));
  EXPECT_THAT(Pieces(bpe::kGpt2Pattern, "x\u3000 y"), ElementsAre("x", "\u3000", " y"));
  EXPECT_THAT(Pieces(bpe::kGpt2Pattern, "don't  stop\t\tnow"),
              ElementsAre("don", "'t", " ", " stop", "\t", "\t", "now"));
  EXPECT_THAT(Pieces(kLlama3Pattern, "x \u0085y"), ElementsAre("x", " ", "\u0085y"));
}

TEST(PreTokenizer, InvalidUtf8IsNeverMatchedButKept) {
  EXPECT_THAT(Pieces(bpe::kGpt2Pattern, "ab\xff\xfe cd"), ElementsAre("ab", "\xff\xfe", " cd"));
}

TEST(PreTokenizer, SplitBehaviors) {
  auto dash = bpe::BpeRegex::Create("-");
  ASSERT_TRUE(dash.ok());
  auto split = [&](bpe::SplitBehavior behavior, bool invert = false) {
    std::string text = "the-final--countdown";
    std::vector<std::string> out;
    for (auto [b, e] : bpe::SplitWithBehavior(**dash, text, behavior, invert)) out.push_back(text.substr(b, e - b));
    return out;
  };
  // The examples of HF's SplitDelimiterBehavior documentation.
  EXPECT_THAT(split(bpe::SplitBehavior::kRemoved), ElementsAre("the", "final", "countdown"));
  EXPECT_THAT(split(bpe::SplitBehavior::kIsolated), ElementsAre("the", "-", "final", "-", "-", "countdown"));
  EXPECT_THAT(split(bpe::SplitBehavior::kMergedWithPrevious), ElementsAre("the-", "final-", "-", "countdown"));
  EXPECT_THAT(split(bpe::SplitBehavior::kMergedWithNext), ElementsAre("the", "-final", "-", "-countdown"));
  EXPECT_THAT(split(bpe::SplitBehavior::kContiguous), ElementsAre("the", "-", "final", "--", "countdown"));
  EXPECT_THAT(split(bpe::SplitBehavior::kRemoved, /*invert=*/true), ElementsAre("-", "-", "-"));
}

TEST(PreTokenizer, StringPatternIsLiteral) {
  Json j = ByteVocabJson();
  j["pre_tokenizer"] = {{"type", "Sequence"},
                        {"pretokenizers",
                         {{{"type", "Split"}, {"pattern", {{"String", "."}}}, {"behavior", "Removed"}},
                          {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", false}}}}};
  // As a regex "." would remove everything.
  EXPECT_THAT(Load(j)->Encode("xa.b"), ElementsAre('x', 'a', 'b'));
}

// ---- Malformed files ----

void ExpectInvalid(const absl::Status& status, const std::string& field) {
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
  EXPECT_THAT(std::string(status.message()), HasSubstr(field));
}

TEST(MalformedTokenizerJson, BadJson) {
  absl::Status s = TokenizerFromJson("{\"model\": ").status();
  ExpectInvalid(s, "tokenizer.json: not valid JSON");
  ExpectInvalid(TokenizerFromJson("[1, 2]").status(), "tokenizer.json: expected a JSON object");
}

TEST(MalformedTokenizerJson, DeepNestingIsRefusedBeforeParsing) {
  // A million nested arrays as model.type used to overflow the stack while the message quoted them, and 20000 nested
  // normalizer Sequences while reading them.
  const int levels = 1'000'000;
  std::string deep_type = absl::StrCat(R"({"model": {"type": )", std::string(levels, '['), std::string(levels, ']'),
                                       R"(, "vocab": {}, "merges": []}, "pre_tokenizer": {"type": "ByteLevel"}})");
  ExpectInvalid(TokenizerFromJson(deep_type).status(),
                "tokenizer.json: JSON nests arrays and objects deeper than 64 levels (at byte 81)");
  std::string sequences = R"({"model": {"type": "BPE", "vocab": {}, "merges": []}, "normalizer": )";
  for (int i = 0; i < 20000; ++i) sequences += R"({"type": "Sequence", "normalizers": [)";
  sequences += "null";
  for (int i = 0; i < 20000; ++i) sequences += "]}";
  sequences += R"(, "pre_tokenizer": {"type": "ByteLevel"}})";
  ExpectInvalid(TokenizerFromJson(sequences).status(), "tokenizer.json: JSON nests");
  ExpectInvalid(
      TokenizerFromJson(ByteVocabJson().dump(), absl::StrCat(std::string(65, '['), std::string(65, ']'))).status(),
      "tokenizer_config.json: JSON nests");
}

TEST(MalformedTokenizerJson, MessagesClipTheValuesTheyQuote) {
  Json j = ByteVocabJson();
  j["model"]["type"] = std::string(10000, 'x');
  absl::Status s = LoadStatus(j);
  ExpectInvalid(s, "tokenizer.json: model.type: \"xxxx");
  EXPECT_LT(s.message().size(), 200u) << s;
}

TEST(MalformedTokenizerJson, TemplateIdsMustBeKnownTokens) {
  // Found by fuzzing: a template id that neither the vocab nor added_tokens holds was encoded as it was, past
  // vocab_size(), where it would index past the model's embedding table.
  Json j = Llama3StyleJson();
  j["post_processor"]["processors"][1]["special_tokens"]["<|begin_of_text|>"]["ids"] = {302};
  ExpectInvalid(LoadStatus(j),
                "tokenizer.json: post_processor: special token id 302 is neither in model.vocab nor in added_tokens");
  j["post_processor"]["processors"][1]["special_tokens"]["<|begin_of_text|>"]["ids"] = {262};  // a vocab token
  EXPECT_THAT(Load(j)->Encode("123", true), ElementsAre(262, 256));
}

TEST(MalformedTokenizerJson, UnknownModelType) {
  Json j = ByteVocabJson();
  j["model"]["type"] = "Unigram";
  ExpectInvalid(LoadStatus(j), "tokenizer.json: model.type: \"Unigram\" is not supported");
}

TEST(MalformedTokenizerJson, MergeReferencingUnknownToken) {
  Json j = HelloJson();
  j["model"]["merges"] = {"h e", "q u"};
  ExpectInvalid(LoadStatus(j), "tokenizer.json: model: merges[1]: \"q\" is not in the vocab");
  j["model"]["merges"] = {"h o"};  // both known, "ho" is not
  ExpectInvalid(LoadStatus(j), "merges[0]: \"ho\" is not in the vocab");
  j["model"]["merges"] = {"h e l"};
  ExpectInvalid(LoadStatus(j), "model.merges[0]");
}

TEST(MalformedTokenizerJson, MissingVocabOrMerges) {
  Json j = ByteVocabJson();
  j["model"].erase("vocab");
  ExpectInvalid(LoadStatus(j), "tokenizer.json: model.vocab: missing");
  j = ByteVocabJson();
  j["model"].erase("merges");
  ExpectInvalid(LoadStatus(j), "model.merges: missing");
  j = ByteVocabJson();
  j["model"]["vocab"]["x y"] = "seven";
  ExpectInvalid(LoadStatus(j), "model.vocab: id of \"x y\"");
  j.erase("model");
  ExpectInvalid(LoadStatus(j), "tokenizer.json: model: missing");
}

TEST(MalformedTokenizerJson, UnsupportedModelOptions) {
  Json j = ByteVocabJson();
  j["model"]["dropout"] = 0.1;
  ExpectInvalid(LoadStatus(j), "model.dropout");
  j = ByteVocabJson();
  j["model"]["byte_fallback"] = true;
  ExpectInvalid(LoadStatus(j), "model.byte_fallback");
  j = ByteVocabJson();
  j["model"]["unk_token"] = "<unk>";
  ExpectInvalid(LoadStatus(j), "model.unk_token: \"<unk>\" is not in the vocab");
}

TEST(MalformedTokenizerJson, UnsupportedPipelineParts) {
  Json j = ByteVocabJson();
  j["pre_tokenizer"] = {{"type", "Metaspace"}, {"replacement", "▁"}};
  ExpectInvalid(LoadStatus(j), "tokenizer.json: pre_tokenizer.type: \"Metaspace\" is not supported");
  j["pre_tokenizer"] = nullptr;
  ExpectInvalid(LoadStatus(j), "tokenizer.json: pre_tokenizer: missing");
  j["pre_tokenizer"] = {{"type", "Split"}, {"pattern", {{"Regex", "\\s+"}}}, {"behavior", "Isolated"}};
  ExpectInvalid(LoadStatus(j), "pre_tokenizer: byte-level BPE needs a ByteLevel pre-tokenizer");
  j["pre_tokenizer"] = Llama3PreTokenizer();
  j["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = "(unclosed";
  ExpectInvalid(LoadStatus(j), "pre_tokenizer.pretokenizers[0].pattern");
  j["pre_tokenizer"] = Llama3PreTokenizer();
  std::swap(j["pre_tokenizer"]["pretokenizers"][0], j["pre_tokenizer"]["pretokenizers"][1]);
  ExpectInvalid(LoadStatus(j), "ByteLevel must be the last");
  j = ByteVocabJson();
  j["normalizer"] = {{"type", "Lowercase"}};
  ExpectInvalid(LoadStatus(j), "tokenizer.json: normalizer.type: \"Lowercase\"");
  j = ByteVocabJson();
  j["post_processor"] = {{"type", "RobertaProcessing"}};
  ExpectInvalid(LoadStatus(j), "tokenizer.json: post_processor.type");
  j = ByteVocabJson();
  j["decoder"] = {{"type", "WordPiece"}};
  ExpectInvalid(LoadStatus(j), "tokenizer.json: decoder.type");
  j = ByteVocabJson();
  j["added_tokens"] = {{{"content", "<x>"}}};
  ExpectInvalid(LoadStatus(j), "tokenizer.json: added_tokens[0].id");
}

TEST(MalformedTokenizerConfig, SpecialTokenNotInVocab) {
  ExpectInvalid(LoadStatus(ByteVocabJson(), {{"bos_token", "<s>"}}),
                "tokenizer_config.json: bos_token: \"<s>\" is not in the vocabulary");
  ExpectInvalid(LoadStatus(ByteVocabJson(), {{"eos_token", 7}}), "tokenizer_config.json: eos_token");
  ExpectInvalid(TokenizerFromJson(ByteVocabJson().dump(), "{oops").status(), "tokenizer_config.json: not valid JSON");
}

TEST(LoadTokenizer, MissingDirectoryIsNotFound) {
  EXPECT_EQ(LoadTokenizer(JoinPath(TempDir(), "absent")).status().code(), absl::StatusCode::kNotFound);
}

TEST(LoadTokenizer, ErrorsNameTheDirectoryAndFile) {
  std::string dir = TempDir();
  ASSERT_TRUE(WriteFileAtomic(JoinPath(dir, "tokenizer.json"), "{}").ok());
  absl::Status s = LoadTokenizer(dir).status();
  ExpectInvalid(s, dir + ": tokenizer.json: model: missing");
}

TEST(LoadTokenizer, SaveOfALoadedTokenizerWritesItsFilesBack) {
  std::string dir = TempDir();
  std::string json = Llama3StyleJson().dump(1);
  ASSERT_TRUE(WriteFileAtomic(JoinPath(dir, "tokenizer.json"), json).ok());
  auto t = LoadTokenizer(dir);
  ASSERT_TRUE(t.ok()) << t.status();
  std::string out = TempDir();
  ASSERT_TRUE((*t)->Save(out).ok());
  EXPECT_EQ(*ReadFile(JoinPath(out, "tokenizer.json")), json);
  auto reloaded = LoadTokenizer(out);
  ASSERT_TRUE(reloaded.ok()) << reloaded.status();
  EXPECT_EQ((*reloaded)->bos_id(), 300);
  EXPECT_EQ((*reloaded)->Encode("1234567 I'M", true), (*t)->Encode("1234567 I'M", true));
}

// ---- Threads ----

TEST(ThreadSafety, EncodeFromFourThreadsGivesTheSameIds) {
  auto t = Load(HelloJson());
  std::vector<std::string> texts;
  for (int i = 0; i < 200; ++i) {
    texts.push_back(std::string(i % 7 + 1, 'l') + " hello world held " + std::to_string(i));
  }
  std::vector<std::vector<int32_t>> expected;
  for (const std::string& s : texts) expected.push_back(t->Encode(s));
  std::vector<std::vector<std::vector<int32_t>>> got(4);
  std::vector<std::thread> threads;
  for (int k = 0; k < 4; ++k) {
    threads.emplace_back([&, k] {
      for (int round = 0; round < 20; ++round) {
        for (const std::string& s : texts) got[k].push_back(t->Encode(s));
      }
    });
  }
  for (std::thread& th : threads) th.join();
  for (int k = 0; k < 4; ++k) {
    ASSERT_EQ(got[k].size(), texts.size() * 20);
    for (size_t i = 0; i < got[k].size(); ++i) ASSERT_EQ(got[k][i], expected[i % texts.size()]) << k << " " << i;
  }
}

}  // namespace
}  // namespace alignd
