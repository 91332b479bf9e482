#include "common/data/example_tokenizer.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/common/text/fake_tokenizer.h"

namespace alignd {
namespace {

using ::testing::ElementsAre;
using ::testing::ElementsAreArray;

constexpr int32_t kBos = FakeByteTokenizer::kBos, kEos = FakeByteTokenizer::kEos,
                  kImStart = FakeByteTokenizer::kImStart, kImEnd = FakeByteTokenizer::kImEnd;

class ExampleTokenizerTest : public ::testing::Test {
 protected:
  ExampleTokenizer Make(std::string chat_template = "chatml", int32_t max_length = 0, int32_t max_prompt_length = 0) {
    TokenizeOptions options;
    options.chat_template = std::move(chat_template);
    options.max_length = max_length;
    options.max_prompt_length = max_prompt_length;
    absl::StatusOr<ExampleTokenizer> t = ExampleTokenizer::Create(&tokenizer_, options);
    EXPECT_TRUE(t.ok()) << t.status();
    return *t;
  }

  // Positions where the mask is 1.
  static std::vector<int> Trained(const TokenizedExample& ex) {
    std::vector<int> out;
    for (size_t i = 0; i < ex.loss_mask.size(); ++i) {
      if (ex.loss_mask[i]) out.push_back(static_cast<int>(i));
    }
    return out;
  }

  std::string Decode(const std::vector<int32_t>& ids) { return tokenizer_.Decode(ids); }

  FakeByteTokenizer tokenizer_;
};

// "<|im_start|>user\na<|im_end|>\n<|im_start|>assistant\nb<|im_end|>\n": 'b' is token 20, <|im_end|> 21.
const std::vector<ChatMessage> kOneTurn = {{"user", "a"}, {"assistant", "b"}};

TEST_F(ExampleTokenizerTest, TextTrainsAllButBos) {
  absl::StatusOr<TokenizedExample> ex = Make().Text("ab");
  ASSERT_TRUE(ex.ok()) << ex.status();
  EXPECT_THAT(ex->input_ids, ElementsAre(kBos, 'a', 'b', kEos));
  EXPECT_THAT(ex->loss_mask, ElementsAre(0, 1, 1, 1));
}

TEST_F(ExampleTokenizerTest, TextKeepsItsStart) {
  bool truncated = false;
  absl::StatusOr<TokenizedExample> ex = Make("chatml", 3).Text("abcd", &truncated);
  ASSERT_TRUE(ex.ok());
  EXPECT_THAT(ex->input_ids, ElementsAre(kBos, 'a', 'b'));
  EXPECT_TRUE(truncated);
}

TEST_F(ExampleTokenizerTest, EmptyTextWithoutSpecialTokensIsAnError) {
  TokenizeOptions options;
  options.add_special_tokens = false;
  options.append_eos = false;
  absl::StatusOr<TokenizedExample> ex = ExampleTokenizer::Create(&tokenizer_, options)->Text("");
  EXPECT_EQ(ex.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ex.status().message(), "no trained tokens: empty text");
}

TEST_F(ExampleTokenizerTest, MessagesMaskFallsOnAssistantContentAndEndOfTurn) {
  absl::StatusOr<TokenizedExample> ex = Make().Messages(kOneTurn);
  ASSERT_TRUE(ex.ok()) << ex.status();
  EXPECT_EQ(Decode(ex->input_ids), "<|im_start|>user\na<|im_end|>\n<|im_start|>assistant\nb<|im_end|>\n");
  ASSERT_EQ(ex->input_ids.size(), 23u);
  EXPECT_EQ(ex->input_ids[0], kImStart);
  EXPECT_EQ(ex->input_ids[20], 'b');
  EXPECT_EQ(ex->input_ids[21], kImEnd);
  EXPECT_THAT(Trained(*ex), ElementsAre(20, 21));
}

TEST_F(ExampleTokenizerTest, EveryAssistantTurnIsTrained) {
  absl::StatusOr<TokenizedExample> ex =
      Make().Messages({{"user", "a"}, {"assistant", "b"}, {"user", "c"}, {"assistant", "de"}});
  ASSERT_TRUE(ex.ok());
  // The second turn starts after 23 tokens: "<|im_start|>user\nc<|im_end|>\n<|im_start|>assistant\n" is 20 more.
  EXPECT_THAT(Trained(*ex), ElementsAre(20, 21, 43, 44, 45));
  EXPECT_EQ(ex->input_ids[45], kImEnd);
}

TEST_F(ExampleTokenizerTest, Llama3AndPlainMasks) {
  absl::StatusOr<TokenizedExample> plain = Make("plain").Messages(kOneTurn);
  ASSERT_TRUE(plain.ok());
  // <bos> "User: a\nAssistant: " is 1 + 19 tokens, then 'b' and <eos>.
  EXPECT_EQ(Decode(plain->input_ids), "<|begin_of_text|>User: a\nAssistant: b<|end_of_text|>\n");
  EXPECT_THAT(Trained(*plain), ElementsAre(20, 21));
  EXPECT_EQ(plain->input_ids[0], kBos);
  EXPECT_EQ(plain->input_ids[21], kEos);

  absl::StatusOr<TokenizedExample> llama = Make("llama3").Messages({{"user", "a"}, {"assistant", " b "}});
  ASSERT_TRUE(llama.ok());
  std::string prefix =
      "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\na<|eot_id|>"
      "<|start_header_id|>assistant<|end_header_id|>\n\n";
  EXPECT_EQ(Decode(llama->input_ids), prefix + "b<|eot_id|>");
  // The byte tokenizer spells Llama-3's header tokens as bytes; BOS is one token.
  int first = static_cast<int>(prefix.size()) - static_cast<int>(std::string(kByteBos).size()) + 1;
  std::vector<int> expected;
  for (int i = first; i < first + 1 + 10; ++i) expected.push_back(i);  // "b<|eot_id|>"
  EXPECT_THAT(Trained(*llama), ElementsAreArray(expected));
}

TEST_F(ExampleTokenizerTest, MessagesWithoutAssistantOrBeyondMaxLengthAreErrors) {
  absl::StatusOr<TokenizedExample> none = Make().Messages({{"user", "a"}});
  EXPECT_EQ(none.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(none.status().message(), "no trained tokens: no assistant turn");
  absl::StatusOr<TokenizedExample> cut = Make("chatml", 20).Messages(kOneTurn);
  EXPECT_EQ(cut.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(cut.status().message(), "no trained tokens within max_length 20");
  absl::StatusOr<TokenizedExample> kept = Make("chatml", 21).Messages(kOneTurn);
  ASSERT_TRUE(kept.ok());
  EXPECT_THAT(Trained(*kept), ElementsAre(20));
}

TEST_F(ExampleTokenizerTest, PromptCompletionTrainsTheCompletionOnly) {
  ExampleTokenizer t = Make();
  absl::StatusOr<TokenizedExample> ex = t.PromptCompletion(Turns::Text("a"), Turns::Text("b"));
  ASSERT_TRUE(ex.ok());
  absl::StatusOr<TokenizedExample> as_messages = t.Messages(kOneTurn);
  EXPECT_EQ(ex->input_ids, as_messages->input_ids);
  EXPECT_EQ(ex->loss_mask, as_messages->loss_mask);
  // The prompt part is what generation feeds the model.
  std::vector<int32_t> prompt = t.Prompt(Turns::Text("a"));
  EXPECT_EQ(prompt, std::vector<int32_t>(ex->input_ids.begin(), ex->input_ids.begin() + 20));

  // A conversational prompt with an earlier assistant turn: only the completion is trained.
  absl::StatusOr<TokenizedExample> conv =
      t.PromptCompletion(Turns::Messages(kOneTurn), Turns::Messages({{"assistant", "c"}}));
  ASSERT_TRUE(conv.ok());
  // 23 tokens of the first exchange, 11 of "<|im_start|>assistant\n", then "c<|im_end|>".
  EXPECT_THAT(Trained(*conv), ElementsAre(34, 35));
}

TEST_F(ExampleTokenizerTest, RawTemplateIsTrlStandardFormat) {
  absl::StatusOr<TokenizedExample> ex = Make("raw").PromptCompletion(Turns::Text("The sky is"), Turns::Text(" blue."));
  ASSERT_TRUE(ex.ok());
  EXPECT_EQ(Decode(ex->input_ids), "<|begin_of_text|>The sky is blue.<|end_of_text|>");
  EXPECT_THAT(Trained(*ex), ElementsAre(11, 12, 13, 14, 15, 16, 17));
}

TEST_F(ExampleTokenizerTest, PreferenceSharesThePrompt) {
  absl::StatusOr<TokenizedPair> pair = Make().Preference(Turns::Text("a"), Turns::Text("b"), Turns::Text("cd"));
  ASSERT_TRUE(pair.ok()) << pair.status();
  EXPECT_EQ(pair->prompt_length, 20);
  EXPECT_THAT(Trained(pair->chosen), ElementsAre(20, 21));
  EXPECT_THAT(Trained(pair->rejected), ElementsAre(20, 21, 22));
  EXPECT_EQ(Decode(pair->rejected.input_ids), "<|im_start|>user\na<|im_end|>\n<|im_start|>assistant\ncd<|im_end|>\n");
}

TEST_F(ExampleTokenizerTest, TruncationKeepsPromptEndAndResponseStart) {
  // Prompt 20 tokens, responses 3 ("b", <|im_end|>, "\n") and 4. max_length 12, prompt budget 6:
  // the prompt keeps min(20, max(6, 12 - 4)) = 8 tokens, the responses the first 4.
  bool truncated = false;
  absl::StatusOr<TokenizedPair> pair =
      Make("chatml", 12).Preference(Turns::Text("a"), Turns::Text("b"), Turns::Text("cd"), &truncated);
  ASSERT_TRUE(pair.ok()) << pair.status();
  EXPECT_TRUE(truncated);
  EXPECT_EQ(pair->prompt_length, 8);
  EXPECT_EQ(Decode(pair->chosen.input_ids), "sistant\nb<|im_end|>\n");
  EXPECT_EQ(Decode(pair->rejected.input_ids), "sistant\ncd<|im_end|>\n");
  EXPECT_THAT(Trained(pair->rejected), ElementsAre(8, 9, 10));

  // With a longer response the prompt keeps its budget (max_prompt_length 5) and the response is cut.
  absl::StatusOr<TokenizedExample> ex =
      Make("chatml", 10, 5).PromptCompletion(Turns::Text("a"), Turns::Text("0123456789"), &truncated);
  ASSERT_TRUE(ex.ok());
  EXPECT_EQ(Decode(ex->input_ids), "tant\n01234");
  EXPECT_THAT(Trained(*ex), ElementsAre(5, 6, 7, 8, 9));
}

TEST_F(ExampleTokenizerTest, PromptForGenerationKeepsItsEnd) {
  bool truncated = false;
  std::vector<int32_t> ids = Make("chatml", 8).Prompt(Turns::Text("a"), &truncated);
  EXPECT_TRUE(truncated);
  EXPECT_EQ(Decode(ids), "ant\n");
}

TEST_F(ExampleTokenizerTest, TokenizeDatasetSkipsAndCounts) {
  absl::StatusOr<Dataset> d = ParseJsonl(
      "{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}, {\"role\": \"assistant\", \"content\": \"b\"}]}\n"
      "{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}]}\n"
      "{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}, {\"role\": \"assistant\", \"content\": \"bb\"}]}\n",
      "mem.jsonl");
  ASSERT_TRUE(d.ok()) << d.status();
  absl::StatusOr<TokenizedDataset> t = Make("chatml", 22).Tokenize(*d);
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->examples.size(), 2u);
  EXPECT_THAT(t->record_index, ElementsAre(0, 2));
  EXPECT_EQ(t->skipped, 1);
  EXPECT_EQ(t->truncated, 2);
  EXPECT_EQ(t->first_skip_reason, "mem.jsonl:2: no trained tokens: no assistant turn");

  d->records.erase(d->records.begin());
  d->records.erase(d->records.begin() + 1);
  absl::StatusOr<TokenizedDataset> none = Make().Tokenize(*d);
  EXPECT_EQ(none.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(none.status().message(),
            "mem.jsonl: all 1 records were skipped; the first: mem.jsonl:2: no trained tokens: no assistant turn");
}

TEST_F(ExampleTokenizerTest, TokenizeDatasetBySchema) {
  absl::StatusOr<Dataset> prefs = ParseJsonl("{\"prompt\": \"a\", \"chosen\": \"b\", \"rejected\": \"c\"}", "p");
  absl::StatusOr<TokenizedDataset> t = Make().Tokenize(*prefs);
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->pairs.size(), 1u);
  EXPECT_TRUE(t->examples.empty());
  absl::StatusOr<Dataset> prompts = ParseJsonl("{\"prompt\": \"a\"}", "q");
  t = Make().Tokenize(*prompts);
  ASSERT_TRUE(t.ok());
  ASSERT_EQ(t->prompts.size(), 1u);
  EXPECT_EQ(Decode(t->prompts[0]), "<|im_start|>user\na<|im_end|>\n<|im_start|>assistant\n");
}

TEST_F(ExampleTokenizerTest, CreateValidatesOptions) {
  TokenizeOptions options;
  options.chat_template = "alpaca";
  EXPECT_EQ(ExampleTokenizer::Create(&tokenizer_, options).status().code(), absl::StatusCode::kInvalidArgument);
  options = TokenizeOptions();
  options.max_length = 1;
  absl::StatusOr<ExampleTokenizer> t = ExampleTokenizer::Create(&tokenizer_, options);
  EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(t.status().message(), "max_length must be 0 (no limit) or >= 2, got 1");
}

}  // namespace
}  // namespace alignd
