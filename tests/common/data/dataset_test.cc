#include "common/data/dataset.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "common/base/file_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace alignd {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

constexpr char kSource[] = "data/train.jsonl";

absl::StatusOr<Dataset> Parse(absl::string_view contents, std::optional<DatasetSchema> schema = std::nullopt) {
  return ParseJsonl(contents, kSource, schema);
}

// The INVALID_ARGUMENT message for `contents`, or a note that it parsed.
std::string ErrorOf(absl::string_view contents, std::optional<DatasetSchema> schema = std::nullopt) {
  absl::StatusOr<Dataset> d = Parse(contents, schema);
  if (d.ok()) return "parsed OK";
  EXPECT_EQ(d.status().code(), absl::StatusCode::kInvalidArgument) << d.status();
  return std::string(d.status().message());
}

std::vector<ChatMessage> UserAssistant(std::string user, std::string assistant) {
  return {{"user", std::move(user)}, {"assistant", std::move(assistant)}};
}

// ---- Schemas ----

TEST(Dataset, ReadsText) {
  absl::StatusOr<Dataset> d = Parse("{\"text\": \"hello\"}\n{\"text\": \"world\", \"source\": \"wiki\"}\n");
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->schema, DatasetSchema::kText);
  EXPECT_EQ(d->source, kSource);
  ASSERT_EQ(d->records.size(), 2u);
  EXPECT_EQ(d->records[0].text, "hello");
  EXPECT_EQ(d->records[1].text, "world");
  EXPECT_EQ(d->records[1].line, 2);
  EXPECT_EQ(d->records[1].ExtraString("source"), "wiki");
}

TEST(Dataset, ReadsMessages) {
  absl::StatusOr<Dataset> d =
      Parse(R"({"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}, )"
            R"({"role": "assistant", "content": "Hello."}]})");
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->schema, DatasetSchema::kMessages);
  std::vector<ChatMessage> expected = {{"system", "Be brief."}, {"user", "Hi"}, {"assistant", "Hello."}};
  EXPECT_EQ(d->records[0].messages, expected);
}

TEST(Dataset, ReadsPromptOnly) {
  absl::StatusOr<Dataset> d = Parse(R"({"prompt": "What is 2 + 2?", "kind": "arithmetic", "reference": 4})");
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->schema, DatasetSchema::kPrompt);
  EXPECT_EQ(d->records[0].prompt, Turns::Text("What is 2 + 2?"));
  EXPECT_EQ(d->records[0].ExtraString("kind"), "arithmetic");
  EXPECT_EQ(d->records[0].ExtraString("reference"), "4");
  EXPECT_EQ(d->records[0].ExtraString("missing"), std::nullopt);
}

TEST(Dataset, ReadsPromptCompletionStandardAndConversational) {
  absl::StatusOr<Dataset> d = Parse(
      "{\"prompt\": \"The sky is\", \"completion\": \" blue.\"}\n"
      R"({"prompt": [{"role": "user", "content": "Sky?"}], "completion": [{"role": "assistant", "content": "Blue."}]})");
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->schema, DatasetSchema::kPromptCompletion);
  EXPECT_EQ(d->records[0].prompt, Turns::Text("The sky is"));
  EXPECT_EQ(d->records[0].completion, Turns::Text(" blue."));
  EXPECT_EQ(d->records[1].prompt, Turns::Messages({{"user", "Sky?"}}));
  EXPECT_EQ(d->records[1].completion, Turns::Messages({{"assistant", "Blue."}}));
}

TEST(Dataset, ReadsPreferenceStandardAndConversational) {
  absl::StatusOr<Dataset> d = Parse(
      "{\"prompt\": \"2+2?\", \"chosen\": \"4.\", \"rejected\": \"5.\", \"kind\": \"arithmetic\"}\n"
      R"({"prompt": [{"role": "user", "content": "2+2?"}], "chosen": [{"role": "assistant", "content": "4."}], )"
      R"("rejected": [{"role": "assistant", "content": "5."}]})");
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->schema, DatasetSchema::kPreference);
  EXPECT_EQ(d->records[0].chosen, Turns::Text("4."));
  EXPECT_EQ(d->records[0].rejected, Turns::Text("5."));
  EXPECT_EQ(d->records[0].ExtraString("kind"), "arithmetic");
  EXPECT_EQ(d->records[1].prompt.AsMessages("user"), (std::vector<ChatMessage>{{"user", "2+2?"}}));
  EXPECT_EQ(d->records[1].chosen.FirstContent(), "4.");
  EXPECT_TRUE(d->records[1].extra.empty());
}

TEST(Dataset, SkipsBlankLinesAndCarriageReturnsButCountsLines) {
  absl::StatusOr<Dataset> d = Parse("\n{\"text\": \"a\"}\r\n   \n\t\n{\"text\": \"b\"}");
  ASSERT_TRUE(d.ok()) << d.status();
  ASSERT_EQ(d->records.size(), 2u);
  EXPECT_EQ(d->records[0].line, 2);
  EXPECT_EQ(d->records[1].line, 5);
}

TEST(Dataset, NamedSchemaOverridesDetection) {
  // Detection would say prompt_completion; asked for prompt-only, `completion` is an extra key.
  absl::StatusOr<Dataset> d = Parse(R"({"prompt": "p", "completion": "c"})", DatasetSchema::kPrompt);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->schema, DatasetSchema::kPrompt);
  EXPECT_EQ(d->records[0].ExtraString("completion"), "c");
}

TEST(Dataset, SchemaNames) {
  for (DatasetSchema s : {DatasetSchema::kText, DatasetSchema::kMessages, DatasetSchema::kPrompt,
                          DatasetSchema::kPromptCompletion, DatasetSchema::kPreference}) {
    EXPECT_EQ(*ParseSchemaName(SchemaName(s)), s);
  }
  EXPECT_EQ(SchemaName(DatasetSchema::kPromptCompletion), "prompt_completion");
  absl::StatusOr<DatasetSchema> bad = ParseSchemaName("kto");
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(bad.status().message(),
            "unknown dataset schema \"kto\"; known schemas: text, messages, prompt, prompt_completion, preference");
}

// ---- Errors ----

TEST(DatasetErrors, MissingKeyNamesFileLineAndKey) {
  EXPECT_EQ(
      ErrorOf(
          "{\"prompt\": \"p\", \"chosen\": \"c\", \"rejected\": \"r\"}\n\n{\"prompt\": \"p\", \"rejected\": \"r\"}"),
      "data/train.jsonl:3: missing key \"chosen\"");
  EXPECT_EQ(ErrorOf("{\"prompt\": \"p\", \"chosen\": \"c\"}"), "data/train.jsonl:1: missing key \"rejected\"");
  EXPECT_EQ(ErrorOf("{\"text\": \"a\"}\n{\"txt\": \"b\"}"), "data/train.jsonl:2: missing key \"text\"");
  EXPECT_EQ(ErrorOf("{\"completion\": \"c\"}"), "data/train.jsonl:1: missing key \"prompt\"");
  EXPECT_EQ(ErrorOf("{\"text\": \"a\"}", DatasetSchema::kMessages), "data/train.jsonl:1: missing key \"messages\"");
}

TEST(DatasetErrors, InvalidJson) {
  std::string error = ErrorOf("{\"text\": \"a\"}\n{\"text\": \"b\"");
  EXPECT_THAT(error, StartsWith("data/train.jsonl:2: invalid JSON: parse error at line 1, column 13"));
  EXPECT_THAT(ErrorOf("not json"), StartsWith("data/train.jsonl:1: invalid JSON: "));
}

TEST(DatasetErrors, DeepNestingIsRefusedBeforeParsing) {
  // A million nested arrays in an extra key used to overflow the stack when the record copied them.
  const int levels = 1'000'000;
  EXPECT_EQ(ErrorOf(absl::StrCat("{\"text\": \"a\"}\n{\"text\": \"b\", \"x\": ", std::string(levels, '['),
                                 std::string(levels, ']'), "}\n")),
            "data/train.jsonl:2: JSON nests arrays and objects deeper than 64 levels (at byte 82)");
  EXPECT_EQ(ErrorOf(absl::StrCat("{\"text\": \"a\", \"x\": ", std::string(63, '['), std::string(63, ']'), "}")),
            "parsed OK");
}

TEST(DatasetErrors, LineMustBeAnObject) {
  EXPECT_EQ(ErrorOf("[1, 2]"), "data/train.jsonl:1: expected a JSON object, got array");
  EXPECT_EQ(ErrorOf("\"text\""), "data/train.jsonl:1: expected a JSON object, got string");
}

TEST(DatasetErrors, UnknownKeys) {
  EXPECT_EQ(ErrorOf("{\"question\": \"q\", \"answer\": \"a\"}"),
            "data/train.jsonl:1: cannot tell the dataset schema from keys {\"answer\", \"question\"}; expected "
            "\"text\", \"messages\", \"prompt\", \"prompt\"+\"completion\" or \"prompt\"+\"chosen\"+\"rejected\"");
}

TEST(DatasetErrors, EmptyFileAndBlankLinesOnly) {
  EXPECT_EQ(ErrorOf(""), "data/train.jsonl: empty file, expected JSON lines");
  EXPECT_EQ(ErrorOf("\n  \n\n"), "data/train.jsonl: no records, only blank lines");
}

TEST(DatasetErrors, WrongTypes) {
  EXPECT_EQ(ErrorOf("{\"text\": 3}"), "data/train.jsonl:1: key \"text\" must be a string, got number");
  EXPECT_EQ(ErrorOf("{\"messages\": \"hi\"}"),
            "data/train.jsonl:1: key \"messages\" must be a list of messages, got string");
  EXPECT_EQ(ErrorOf("{\"prompt\": null, \"completion\": \"c\"}"),
            "data/train.jsonl:1: key \"prompt\" must be a string or a list of messages, got null");
  EXPECT_EQ(ErrorOf("{\"prompt\": \"p\", \"chosen\": {\"role\": \"assistant\"}, \"rejected\": \"r\"}"),
            "data/train.jsonl:1: key \"chosen\" must be a string or a list of messages, got object");
  EXPECT_EQ(ErrorOf("{\"messages\": []}"), "data/train.jsonl:1: key \"messages\" must not be an empty list");
}

TEST(DatasetErrors, BadMessages) {
  const std::string ok = R"({"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}, )";
  EXPECT_EQ(ErrorOf("{\"messages\": [" + ok + "{\"role\": \"assistant\", \"content\": \"c\"}]}\n\n\n\n" +
                    "{\"messages\": [" + ok + R"({"role": "bot", "content": "c"}]})"),
            "data/train.jsonl:5: key \"messages\"[2].role must be one of system/user/assistant, got \"bot\"");
  EXPECT_EQ(ErrorOf(R"({"messages": [{"content": "a"}]})"), "data/train.jsonl:1: key \"messages\"[0].role is missing");
  EXPECT_EQ(ErrorOf(R"({"messages": [{"role": "user"}]})"),
            "data/train.jsonl:1: key \"messages\"[0].content is missing");
  EXPECT_EQ(ErrorOf(R"({"messages": [{"role": "user", "content": null}]})"),
            "data/train.jsonl:1: key \"messages\"[0].content must be a string, got null");
  EXPECT_EQ(ErrorOf(R"({"messages": [{"role": 1, "content": "a"}]})"),
            "data/train.jsonl:1: key \"messages\"[0].role must be a string, got number");
  EXPECT_EQ(ErrorOf(R"({"messages": ["hi"]})"),
            "data/train.jsonl:1: key \"messages\"[0] must be an object with \"role\" and \"content\", got string");
  EXPECT_EQ(ErrorOf(R"({"prompt": [{"role": "user", "content": "a"}, {"role": "tool", "content": "b"}]})"),
            "data/train.jsonl:1: key \"prompt\"[1].role must be one of system/user/assistant, got \"tool\"");
}

TEST(DatasetErrors, ConversationalResponseStartsWithAssistant) {
  EXPECT_EQ(ErrorOf(R"({"prompt": "p", "completion": [{"role": "user", "content": "c"}]})"),
            "data/train.jsonl:1: key \"completion\"[0].role must be assistant in a response, got \"user\"");
}

TEST(DatasetErrors, MissingFileIsNotFound) {
  absl::StatusOr<Dataset> d = ReadJsonl(::testing::TempDir() + "/no_such_dir/train.jsonl");
  EXPECT_EQ(d.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(d.status().message()), HasSubstr("no_such_dir/train.jsonl"));
}

TEST(DatasetErrors, ReadJsonlNamesThePath) {
  std::string path = JoinPath(::testing::TempDir(), "dataset_test_bad.jsonl");
  ASSERT_TRUE(WriteFileAtomic(path, "{\"text\": \"a\"}\n{\"text\": 1}\n").ok());
  absl::StatusOr<Dataset> d = ReadJsonl(path);
  EXPECT_EQ(d.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(d.status().message(), path + ":2: key \"text\" must be a string, got number");
}

// ---- Writer ----

TEST(DatasetWriter, KeyOrderIsSchemaThenSortedExtras) {
  Record r;
  r.prompt = Turns::Text("2+2?");
  r.chosen = Turns::Text("4.");
  r.rejected = Turns::Messages({{"assistant", "5."}});
  r.extra["reference"] = "4";
  r.extra["kind"] = "arithmetic";
  EXPECT_EQ(RecordToJsonLine(r, DatasetSchema::kPreference),
            R"({"prompt":"2+2?","chosen":"4.","rejected":[{"role":"assistant","content":"5."}],)"
            R"("kind":"arithmetic","reference":"4"})");
}

TEST(DatasetWriter, RoundTripsEverySchema) {
  struct Case {
    DatasetSchema schema;
    Record record;
  };
  std::vector<Case> cases(5);
  cases[0].schema = DatasetSchema::kText;
  cases[0].record.text = "line with \"quotes\"\nand a newline";
  cases[1].schema = DatasetSchema::kMessages;
  cases[1].record.messages = UserAssistant("Hi", "Hello.");
  cases[2].schema = DatasetSchema::kPrompt;
  cases[2].record.prompt = Turns::Messages({{"system", "s"}, {"user", "u"}});
  cases[3].schema = DatasetSchema::kPromptCompletion;
  cases[3].record.prompt = Turns::Text("p");
  cases[3].record.completion = Turns::Messages({{"assistant", "c"}});
  cases[4].schema = DatasetSchema::kPreference;
  cases[4].record.prompt = Turns::Text("p");
  cases[4].record.chosen = Turns::Text("c");
  cases[4].record.rejected = Turns::Text("r");
  cases[4].record.extra["kind"] = "style";
  for (const Case& c : cases) {
    std::string path = JoinPath(::testing::TempDir(), absl::StrCat("roundtrip_", SchemaName(c.schema), ".jsonl"));
    ASSERT_TRUE(WriteJsonl(path, c.schema, {c.record, c.record}).ok());
    absl::StatusOr<Dataset> d = ReadJsonl(path);
    ASSERT_TRUE(d.ok()) << d.status();
    EXPECT_EQ(d->schema, c.schema);
    ASSERT_EQ(d->records.size(), 2u);
    EXPECT_EQ(RecordToJsonLine(d->records[1], c.schema), RecordToJsonLine(c.record, c.schema));
    EXPECT_EQ(d->records[1].line, 2);
  }
}

}  // namespace
}  // namespace alignd
