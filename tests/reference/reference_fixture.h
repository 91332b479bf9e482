// A GoogleTest fixture over the folders that tests/reference/hf_reference.py writes: the Python reference runs once
// per test process, with ALIGND_PYTHON (scripts/bootstrap's prefix: transformers, tokenizers), into that process's
// TEST_TMPDIR (see tests/test_main.cc); tests read `dir()` and `expected()`. Parameterised by the variant name (see
// kReferenceVariants). A missing interpreter or a failed reference fails every test of the fixture with the reason;
// nothing is skipped.
#ifndef ALIGND_TESTS_REFERENCE_REFERENCE_FIXTURE_H_
#define ALIGND_TESTS_REFERENCE_REFERENCE_FIXTURE_H_

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>

#include "common/base/file_util.h"
#include "gtest/gtest.h"

namespace alignd::testing {

inline const std::string kReferenceVariants[] = {"llama_gqa_f32", "qwen2_bias_bf16_sharded", "mistral_f16", "gpt2_f32"};

class ReferenceFixture : public ::testing::TestWithParam<std::string> {
 protected:
  static void SetUpTestSuite() {
    if (expected_ != nullptr || !error_.empty()) return;
    // No ASSERT here: a failure in SetUpTestSuite would mark the tests skipped. Tests fail on a non-empty error_.
    if (::access(ALIGND_PYTHON, X_OK) != 0) {
      error_ = std::string("ALIGND_PYTHON (") + ALIGND_PYTHON + ") is not an executable: run scripts/bootstrap";
      return;
    }
    dir_ = new std::string(::testing::TempDir() + "/hf_reference");
    std::filesystem::create_directories(*dir_);
    std::string cmd = std::string("'") + ALIGND_PYTHON + "' '" + ALIGND_SOURCE_DIR +
                      "/tests/reference/hf_reference.py' '" + *dir_ + "'";
    if (int rc = std::system(cmd.c_str()); rc != 0) {
      error_ = cmd + " failed (status " + std::to_string(rc) + "; its output is above)";
      return;
    }
    auto text = ReadFile(*dir_ + "/expected.json");
    if (!text.ok()) {
      error_ = text.status().ToString();
      return;
    }
    expected_ = new nlohmann::json(nlohmann::json::parse(*text));
  }
  void SetUp() override { ASSERT_NE(expected_, nullptr) << error_; }
  static const std::string& dir() { return *dir_; }
  static const nlohmann::json& expected() { return *expected_; }
  std::string variant_dir() const { return *dir_ + "/" + GetParam(); }

 private:
  static inline const std::string* dir_ = nullptr;
  static inline std::string error_;
  static inline nlohmann::json* expected_ = nullptr;
};

}  // namespace alignd::testing

#endif  // ALIGND_TESTS_REFERENCE_REFERENCE_FIXTURE_H_
