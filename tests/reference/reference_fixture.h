// A GoogleTest fixture over the folders that tests/reference/hf_reference.py writes: the Python reference runs once
// per test process (into that process's TEST_TMPDIR) and tests read `dir()` and `expected()`. Parameterised by the
// variant name (see kReferenceVariants).
#ifndef ALIGND_TESTS_REFERENCE_REFERENCE_FIXTURE_H_
#define ALIGND_TESTS_REFERENCE_REFERENCE_FIXTURE_H_

#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>

#include "common/file_util.h"
#include "gtest/gtest.h"

namespace alignd::testing {

inline const std::string kReferenceVariants[] = {"llama_gqa_f32", "qwen2_bias_bf16_sharded", "mistral_f16",
                                                 "gpt2_f32"};

class ReferenceFixture : public ::testing::TestWithParam<std::string> {
 protected:
  static void SetUpTestSuite() {
    if (expected_ != nullptr) return;
    dir_ = new std::string(::testing::TempDir() + "/hf_reference");
    std::filesystem::create_directories(*dir_);
    std::string cmd = std::string("/usr/bin/python3 ") + ALIGND_SOURCE_DIR + "/tests/reference/hf_reference.py " + *dir_;
    // No ASSERT here: a failure in SetUpTestSuite would mark the tests skipped. Tests fail on a null expected_.
    if (std::system(cmd.c_str()) != 0) return;
    auto text = ReadFile(*dir_ + "/expected.json");
    if (text.ok()) expected_ = new nlohmann::json(nlohmann::json::parse(*text));
  }
  void SetUp() override {
    ASSERT_NE(expected_, nullptr) << "tests/reference/hf_reference.py failed (see its output above)";
  }
  static const std::string& dir() { return *dir_; }
  static const nlohmann::json& expected() { return *expected_; }
  std::string variant_dir() const { return *dir_ + "/" + GetParam(); }

 private:
  static inline std::string* dir_ = nullptr;
  static inline nlohmann::json* expected_ = nullptr;
};

}  // namespace alignd::testing

#endif  // ALIGND_TESTS_REFERENCE_REFERENCE_FIXTURE_H_
