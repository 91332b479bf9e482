#include "common/text/chat_template.h"

#include <string>
#include <vector>

#include "common/base/file_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/common/text/fake_tokenizer.h"

namespace alignd {
namespace {

using ::testing::HasSubstr;

const std::vector<ChatMessage> kConversation = {{"system", "Be brief."}, {"user", "Hi"}, {"assistant", "Hello!"}};

ChatTemplate Get(absl::string_view name) {
  absl::StatusOr<ChatTemplate> t = ChatTemplate::Create(name);
  EXPECT_TRUE(t.ok()) << t.status();
  return *t;
}

TEST(ChatTemplate, ChatMl) {
  ChatTemplate t = Get("chatml");
  EXPECT_EQ(t.Render(kConversation, false),
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
            "<|im_start|>assistant\nHello!<|im_end|>\n");
  EXPECT_EQ(t.RenderPrompt({{"user", "Hi"}}), "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
  EXPECT_EQ(t.RenderCompletion(" Hello! "), " Hello! <|im_end|>");
  EXPECT_EQ(t.CompletionTrailer(), "\n");
  EXPECT_EQ(t.end_of_turn(), "<|im_end|>");
  EXPECT_EQ(t.jinja(), kChatMlJinja);
}

TEST(ChatTemplate, Llama3TrimsContentAndStartsWithBos) {
  ChatTemplate t = Get("llama3");
  std::vector<ChatMessage> conversation = kConversation;
  conversation[1].content = "  Hi\n";
  EXPECT_EQ(t.Render(conversation, false),
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\nHello!<|eot_id|>");
  EXPECT_EQ(t.RenderPrompt({{"user", "Hi"}}),
            "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n");
  // As in the Jinja, bos_token comes with the first message: an empty conversation has none.
  EXPECT_EQ(t.Render({}, true), "<|start_header_id|>assistant<|end_header_id|>\n\n");
  EXPECT_EQ(t.RenderCompletion(" Hello!\n"), "Hello!<|eot_id|>");
  EXPECT_EQ(t.CompletionTrailer(), "");
  EXPECT_EQ(t.end_of_turn(), "<|eot_id|>");
  EXPECT_THAT(std::string(t.jinja()), HasSubstr("message['content'] | trim + '<|eot_id|>'"));
}

TEST(ChatTemplate, PlainEndsAssistantTurnsWithEos) {
  ChatTemplate t = Get("plain");
  EXPECT_EQ(t.Render(kConversation, false),
            "<|begin_of_text|>System: Be brief.\nUser: Hi\nAssistant: Hello!<|end_of_text|>\n");
  EXPECT_EQ(t.RenderPrompt({{"user", "What is 2 + 3?"}}), "<|begin_of_text|>User: What is 2 + 3?\nAssistant: ");
  EXPECT_EQ(t.RenderCompletion("2 + 3 = 5."), "2 + 3 = 5.<|end_of_text|>");
  EXPECT_EQ(t.end_of_turn(), "<|end_of_text|>");
}

TEST(ChatTemplate, RawConcatenates) {
  ChatTemplate t = Get("raw");
  EXPECT_EQ(t.Render(kConversation, true), "<|begin_of_text|>Be brief.HiHello!<|end_of_text|>");
  EXPECT_EQ(t.RenderPrompt({{"user", "The sky is"}}), "<|begin_of_text|>The sky is");
  EXPECT_EQ(t.RenderCompletion(" blue."), " blue.<|end_of_text|>");
}

TEST(ChatTemplate, TokensComeFromTheTokenizer) {
  FakeByteTokenizer no_bos(/*with_bos=*/false);
  absl::StatusOr<ChatTemplate> t = ChatTemplate::ForTokenizer("plain", no_bos);
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->RenderPrompt({{"user", "Hi"}}), "User: Hi\nAssistant: ");
  EXPECT_EQ(t->end_of_turn(), "<|end_of_text|>");

  absl::StatusOr<ChatTemplate> custom = ChatTemplate::Create("llama3", {"<s>", "</s>"});
  ASSERT_TRUE(custom.ok());
  EXPECT_EQ(custom->Render({{"user", "Hi"}}, false), "<s><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>");
}

TEST(ChatTemplate, PromptPlusCompletionIsTheWholeConversation) {
  for (const std::string& name : ChatTemplate::KnownNames()) {
    ChatTemplate t = Get(name);
    std::vector<ChatMessage> prompt(kConversation.begin(), kConversation.end() - 1);
    EXPECT_EQ(t.RenderPrompt(prompt) + t.RenderCompletion("Hello!") + t.CompletionTrailer(),
              t.Render(kConversation, false))
        << name;
  }
}

TEST(ChatTemplate, SegmentsMarkAssistantContentAndEndOfTurn) {
  ChatTemplate t = Get("chatml");
  std::vector<ChatMessage> two_turns = {{"user", "a"}, {"assistant", "b"}, {"user", "c"}, {"assistant", "d"}};
  std::vector<ChatSegment> segments = t.RenderSegments(two_turns, 0, false);
  ASSERT_EQ(segments.size(), 5u);
  EXPECT_EQ(segments[0].text, "<|im_start|>user\na<|im_end|>\n<|im_start|>assistant\n");
  EXPECT_FALSE(segments[0].trained);
  EXPECT_EQ(segments[1].text, "b<|im_end|>");
  EXPECT_TRUE(segments[1].trained);
  EXPECT_EQ(segments[2].text, "\n<|im_start|>user\nc<|im_end|>\n<|im_start|>assistant\n");
  EXPECT_FALSE(segments[2].trained);
  EXPECT_EQ(segments[3].text, "d<|im_end|>");
  EXPECT_TRUE(segments[3].trained);
  EXPECT_EQ(segments[4].text, "\n");

  // From index 2 on, the first assistant turn is context.
  segments = t.RenderSegments(two_turns, 2, false);
  ASSERT_EQ(segments.size(), 3u);
  EXPECT_EQ(segments[1].text, "d<|im_end|>");
}

// tests/common/text/chat_template_golden.json holds what jinja2 renders from each template's Jinja text (see its "about").
TEST(ChatTemplate, MatchesJinjaRendering) {
  absl::StatusOr<std::string> text =
      ReadFile(std::string(ALIGND_SOURCE_DIR) + "/tests/common/text/chat_template_golden.json");
  ASSERT_TRUE(text.ok()) << text.status();
  nlohmann::json golden = nlohmann::json::parse(*text);
  ASSERT_EQ(golden["cases"].size(), 32u);
  for (const nlohmann::json& c : golden["cases"]) {
    std::vector<ChatMessage> messages;
    for (const nlohmann::json& m : c["messages"]) messages.push_back({m["role"], m["content"]});
    ChatTemplate t = Get(c["template"].get<std::string>());
    EXPECT_EQ(t.Render(messages, c["add_generation_prompt"]), c["expected"].get<std::string>()) << c.dump();
  }
}

TEST(ChatTemplate, UnknownNameListsKnownOnes) {
  absl::StatusOr<ChatTemplate> t = ChatTemplate::Create("vicuna");
  EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(t.status().message(), "unknown chat template \"vicuna\"; known templates: chatml, llama3, plain, raw");
}

}  // namespace
}  // namespace alignd
