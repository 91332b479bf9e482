#include "common/text/model_chat_template.h"

#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>

#include "common/base/file_util.h"
#include "common/text/chat_template.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace alignd {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using Json = nlohmann::json;

// A fresh model folder per test, with the files each test writes.
class ModelChatTemplateTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = ::testing::TempDir() + "/model_chat_template_test/" +
           ::testing::UnitTest::GetInstance()->current_test_info()->name();
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void Write(const std::string& name, const std::string& contents) {
    ASSERT_TRUE(WriteFileAtomic(dir_ + "/" + name, contents).ok());
  }
  void WriteConfig(const Json& config) { Write("tokenizer_config.json", config.dump()); }

  std::string dir_;
};

TEST_F(ModelChatTemplateTest, NoneWithoutConfigOrKey) {
  EXPECT_EQ(ReadModelChatTemplate(dir_).value(), std::nullopt);
  WriteConfig({{"bos_token", "<s>"}, {"chat_template", nullptr}});
  EXPECT_EQ(ReadModelChatTemplate(dir_).value(), std::nullopt);
}

TEST_F(ModelChatTemplateTest, ReadsTheStringFromTokenizerConfig) {
  WriteConfig({{"bos_token", "<s>"}, {"chat_template", std::string(kChatMlJinja)}});
  EXPECT_EQ(ReadModelChatTemplate(dir_).value(), std::string(kChatMlJinja));
}

TEST_F(ModelChatTemplateTest, ReadsTheDefaultOfANamedList) {
  const Json tool_use = Json{{"name", "tool_use"}, {"template", "T"}};
  const Json fallback = Json{{"name", "default"}, {"template", "D"}};
  WriteConfig({{"chat_template", Json::array({tool_use, fallback})}});
  EXPECT_EQ(ReadModelChatTemplate(dir_).value(), "D");
  WriteConfig({{"chat_template", Json::array({tool_use})}});
  EXPECT_EQ(ReadModelChatTemplate(dir_).value(), std::nullopt);
}

TEST_F(ModelChatTemplateTest, ChatTemplateJinjaFileComesFirst) {
  WriteConfig({{"chat_template", "from the config"}});
  Write("chat_template.jinja", "from the file");
  EXPECT_EQ(ReadModelChatTemplate(dir_).value(), "from the file");
}

TEST_F(ModelChatTemplateTest, WriteSetsTheKeyAndKeepsTheOthers) {
  WriteConfig({{"bos_token", "<s>"}, {"model_max_length", 512}});
  ASSERT_TRUE(WriteModelChatTemplate(dir_, kLlama3Jinja).ok());
  auto config = nlohmann::json::parse(ReadFile(dir_ + "/tokenizer_config.json").value());
  EXPECT_EQ(config["bos_token"], "<s>");
  EXPECT_EQ(config["model_max_length"], 512);
  EXPECT_EQ(ReadModelChatTemplate(dir_).value(), std::string(kLlama3Jinja));
}

TEST_F(ModelChatTemplateTest, WriteCreatesAMissingConfig) {
  ASSERT_TRUE(WriteModelChatTemplate(dir_, kRawJinja).ok());
  EXPECT_EQ(ReadModelChatTemplate(dir_).value(), std::string(kRawJinja));
}

TEST(MatchChatTemplate, EachKnownTemplateMatchesExactly) {
  for (const std::string& name : ChatTemplate::KnownNames()) {
    auto known = ChatTemplate::Create(name);
    ASSERT_TRUE(known.ok());
    auto match = MatchChatTemplate("\n" + std::string(known->jinja()) + "\n");
    ASSERT_TRUE(match.has_value()) << name;
    EXPECT_EQ(match->name, name);
    EXPECT_TRUE(match->exact) << name;
  }
}

TEST(MatchChatTemplate, OtherTemplatesMatchByTheirTurnMarkers) {
  // Qwen2's template: ChatML with a default system message.
  auto qwen = MatchChatTemplate(
      "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\\n"
      "You are a helpful assistant.<|im_end|>\\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\\n' + "
      "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}");
  ASSERT_TRUE(qwen.has_value());
  EXPECT_EQ(qwen->name, "chatml");
  EXPECT_FALSE(qwen->exact);
  auto llama = MatchChatTemplate("{{ bos_token }}{{ '<|start_header_id|>' + message['role'] }}");
  ASSERT_TRUE(llama.has_value());
  EXPECT_EQ(llama->name, "llama3");
  EXPECT_FALSE(llama->exact);
  EXPECT_EQ(MatchChatTemplate("{{ '[INST] ' + message['content'] + ' [/INST]' }}"), std::nullopt);
}

// ---- Errors ----

TEST_F(ModelChatTemplateTest, MalformedConfigIsInvalidArgumentNamingTheFile) {
  Write("tokenizer_config.json", "{not json");
  auto bad = ReadModelChatTemplate(dir_);
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad.status().message(), HasSubstr("tokenizer_config.json: not valid JSON"));
  EXPECT_EQ(WriteModelChatTemplate(dir_, "x").code(), absl::StatusCode::kInvalidArgument);
  WriteConfig({{"chat_template", 3}});
  bad = ReadModelChatTemplate(dir_);
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(bad.status().message(), HasSubstr("tokenizer_config.json: chat_template: expected a string"));
  WriteConfig({{"chat_template", Json::array({Json{{"name", "default"}}})}});
  EXPECT_EQ(ReadModelChatTemplate(dir_).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace alignd
