// main() for every alignd test binary: gives each process its own temporary folder (TEST_TMPDIR, which
// ::testing::TempDir() returns), so test processes that ctest runs in parallel never share files, and removes it at
// the end unless ALIGND_KEEP_TEST_TMP is set.
#include <stdlib.h>

#include <filesystem>
#include <string>

#include "gtest/gtest.h"

int main(int argc, char** argv) {
  std::string base = std::filesystem::temp_directory_path().string() + "/alignd-test-XXXXXX";
  char* dir = mkdtemp(base.data());
  if (dir != nullptr) setenv("TEST_TMPDIR", dir, /*overwrite=*/1);
  ::testing::InitGoogleTest(&argc, argv);
  int rc = RUN_ALL_TESTS();
  if (dir != nullptr && getenv("ALIGND_KEEP_TEST_TMP") == nullptr) {
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
  return rc;
}
