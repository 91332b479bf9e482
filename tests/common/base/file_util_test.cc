#include "common/base/file_util.h"

#include <algorithm>
#include <filesystem>
#include <string>
#include <vector>

#include "common/base/status.h"
#include "gtest/gtest.h"

namespace alignd {
namespace {

namespace fs = std::filesystem;

std::vector<std::string> Entries(const std::string& dir) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

class WriteDirAtomicallyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = ::testing::TempDir() + "/write_dir_atomically_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name();
    fs::remove_all(root_);
  }
  std::string root_;
};

TEST_F(WriteDirAtomicallyTest, WritesANewFolderWithItsParents) {
  const std::string dir = root_ + "/a/b/model";
  ASSERT_TRUE(WriteDirAtomically(dir, [](const std::string& staging) {
                return WriteFileAtomic(JoinPath(staging, "config.json"), "{}");
              }).ok());
  EXPECT_EQ(ReadFile(dir + "/config.json").value(), "{}");
  EXPECT_EQ(Entries(root_ + "/a/b"), std::vector<std::string>{"model"});  // no staging or old folder left
}

TEST_F(WriteDirAtomicallyTest, ReplacesThePreviousFolderWhole) {
  const std::string dir = root_ + "/model";
  ASSERT_TRUE(WriteDirAtomically(dir, [](const std::string& s) {
                RETURN_IF_ERROR(WriteFileAtomic(JoinPath(s, "old-only"), "1"));
                return WriteFileAtomic(JoinPath(s, "weights"), "old");
              }).ok());
  ASSERT_TRUE(WriteDirAtomically(dir, [](const std::string& s) {
                return WriteFileAtomic(JoinPath(s, "weights"), "new");
              }).ok());
  EXPECT_EQ(ReadFile(dir + "/weights").value(), "new");
  EXPECT_FALSE(PathExists(dir + "/old-only"));
  EXPECT_EQ(Entries(root_), std::vector<std::string>{"model"});
}

TEST_F(WriteDirAtomicallyTest, AFailedWriteLeavesThePreviousFolderAndNoStaging) {
  const std::string dir = root_ + "/model";
  ASSERT_TRUE(WriteDirAtomically(dir, [](const std::string& s) {
                return WriteFileAtomic(JoinPath(s, "weights"), "old");
              }).ok());
  std::string seen_staging;
  absl::Status status = WriteDirAtomically(dir, [&](const std::string& s) {
    seen_staging = s;
    EXPECT_TRUE(WriteFileAtomic(JoinPath(s, "weights"), "half").ok());
    return absl::ResourceExhaustedError("disk full");
  });
  EXPECT_EQ(status.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(ReadFile(dir + "/weights").value(), "old");
  EXPECT_NE(seen_staging, dir);
  EXPECT_FALSE(PathExists(seen_staging));
  EXPECT_EQ(Entries(root_), std::vector<std::string>{"model"});
}

TEST_F(WriteDirAtomicallyTest, APathUnderAFileIsAnErrorAndWritesNothing) {
  ASSERT_TRUE(MakeDirs(root_).ok());
  ASSERT_TRUE(WriteFileAtomic(root_ + "/file", "x").ok());
  bool called = false;
  absl::Status status = WriteDirAtomically(root_ + "/file/model", [&](const std::string&) {
    called = true;
    return absl::OkStatus();
  });
  EXPECT_FALSE(status.ok());
  EXPECT_FALSE(called);
  EXPECT_EQ(Entries(root_), std::vector<std::string>{"file"});
}

}  // namespace
}  // namespace alignd
