// `alignd generate` in-process, on a tiny model written by `alignd init`.
#include <torch/torch.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "cli/commands.h"
#include "common/base/file_util.h"
#include "common/model/hf_model.h"
#include "common/model/peft.h"
#include "common/text/chat_template.h"
#include "common/text/model_chat_template.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/cli/cli_runner.h"

namespace alignd::cli {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using ::testing::HasSubstr;

std::vector<json> ReadLines(const std::string& path) {
  auto contents = ReadFile(path);
  EXPECT_TRUE(contents.ok()) << contents.status();
  std::vector<json> lines;
  for (absl::string_view line : absl::StrSplit(contents.value_or(""), '\n', absl::SkipEmpty())) {
    lines.push_back(json::parse(line));
  }
  return lines;
}

class GenerateCommand : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string(::testing::TempDir() + "/generate_command_test");
    fs::remove_all(*dir_);
    fs::create_directories(*dir_);
    Outcome init = Call(RunInit, {"--out", *dir_ + "/model", "--hidden_size", "32", "--layers", "2", "--seed", "5",
                                  "--max_positions", "128"});
    ASSERT_EQ(init.code, 0) << init.err;
    ASSERT_TRUE(WriteFileAtomic(*dir_ + "/prompts.jsonl",
                                "{\"prompt\": \"What is 2 + 2?\"}\n"
                                "{\"prompt\": [{\"role\": \"user\", \"content\": \"Hi\"}]}\n"
                                "\n"
                                "{\"prompt\": \"Say something long.\", \"kind\": \"chat\"}\n")
                    .ok());
    ASSERT_TRUE(WriteFileAtomic(*dir_ + "/messages.jsonl",
                                "{\"messages\": [{\"role\": \"user\", \"content\": \"Hi\"}, "
                                "{\"role\": \"assistant\", \"content\": \"Hello!\"}]}\n")
                    .ok());
  }
  static std::string Path(const std::string& name) { return *dir_ + "/" + name; }
  static Args Base(const std::string& out) {
    return {"--model", Path("model"), "--prompts", Path("prompts.jsonl"), "--out", Path(out), "--threads", "1"};
  }
  static Args With(Args args, const Args& more) {
    args.insert(args.end(), more.begin(), more.end());
    return args;
  }
  static std::string* dir_;
};
std::string* GenerateCommand::dir_ = nullptr;

TEST_F(GenerateCommand, WritesOneLinePerSampleWithTokensAndLogProbs) {
  Outcome r = Call(RunGenerate, With(Base("out.jsonl"), {"--max_new_tokens", "12", "--n", "2", "--seed", "3"}));
  ASSERT_EQ(r.code, 0) << r.err;
  json summary = json::parse(r.out);
  EXPECT_EQ(summary["prompts"], 3);
  EXPECT_EQ(summary["samples"], 6);
  std::vector<json> lines = ReadLines(Path("out.jsonl"));
  ASSERT_EQ(lines.size(), 6u);
  int64_t tokens = 0;
  for (size_t i = 0; i < lines.size(); ++i) {
    const json& line = lines[i];
    for (const char* key : {"index", "sample", "prompt", "completion", "token_ids", "logprobs", "finish_reason"}) {
      EXPECT_TRUE(line.contains(key)) << key << " in " << line.dump();
    }
    EXPECT_EQ(line["index"], i / 2);
    EXPECT_EQ(line["sample"], i % 2);
    const auto ids = line["token_ids"].get<std::vector<int>>();
    const auto logprobs = line["logprobs"].get<std::vector<double>>();
    ASSERT_EQ(ids.size(), logprobs.size());
    ASSERT_FALSE(ids.empty());
    EXPECT_LE(ids.size(), 12u);
    for (double lp : logprobs) EXPECT_LT(lp, 0.0);
    const std::string reason = line["finish_reason"];
    EXPECT_TRUE(reason == "stop" || reason == "length") << reason;
    if (reason == "length") {
      EXPECT_EQ(ids.size(), 12u);
    }
    tokens += static_cast<int64_t>(ids.size());
  }
  EXPECT_EQ(summary["generated_tokens"], tokens);
  EXPECT_EQ(lines[0]["prompt"], "What is 2 + 2?");
  EXPECT_EQ(lines[2]["prompt"], json::parse(R"([{"role": "user", "content": "Hi"}])"));
}

TEST_F(GenerateCommand, TemperatureZeroIsReproducibleAndDashSpellingsWork) {
  Outcome a = Call(RunGenerate, With(Base("greedy_a.jsonl"), {"--temperature", "0", "--max_new_tokens", "10"}));
  ASSERT_EQ(a.code, 0) << a.err;
  Outcome b = Call(RunGenerate, With(Base("greedy_b.jsonl"),
                                     {"--temperature=0", "--max-new-tokens=10", "--batch-size", "1", "--seed", "77"}));
  ASSERT_EQ(b.code, 0) << b.err;
  std::vector<json> la = ReadLines(Path("greedy_a.jsonl")), lb = ReadLines(Path("greedy_b.jsonl"));
  ASSERT_EQ(la.size(), 3u);
  ASSERT_EQ(lb.size(), 3u);
  for (size_t i = 0; i < la.size(); ++i) {
    EXPECT_EQ(la[i]["token_ids"], lb[i]["token_ids"]) << i;
    EXPECT_EQ(la[i]["completion"], lb[i]["completion"]) << i;
    const auto x = la[i]["logprobs"].get<std::vector<double>>(), y = lb[i]["logprobs"].get<std::vector<double>>();
    ASSERT_EQ(x.size(), y.size());
    for (size_t t = 0; t < x.size(); ++t) EXPECT_NEAR(x[t], y[t], 1e-5);
  }
}

TEST_F(GenerateCommand, SameSeedSameSamples) {
  ASSERT_EQ(Call(RunGenerate, With(Base("s1.jsonl"), {"--seed", "4", "--max_new_tokens", "8"})).code, 0);
  ASSERT_EQ(Call(RunGenerate, With(Base("s2.jsonl"), {"--seed", "4", "--max_new_tokens", "8"})).code, 0);
  ASSERT_EQ(Call(RunGenerate, With(Base("s3.jsonl"), {"--seed", "5", "--max_new_tokens", "8"})).code, 0);
  std::vector<json> s1 = ReadLines(Path("s1.jsonl")), s2 = ReadLines(Path("s2.jsonl")),
                    s3 = ReadLines(Path("s3.jsonl"));
  ASSERT_EQ(s1.size(), 3u);
  ASSERT_EQ(s3.size(), 3u);
  for (size_t i = 0; i < s1.size(); ++i) EXPECT_EQ(s1[i]["token_ids"], s2[i]["token_ids"]);
  EXPECT_NE(s1[0]["token_ids"], s3[0]["token_ids"]);
}

TEST_F(GenerateCommand, MessagesRecordsAnswerTheLastUserTurn) {
  Outcome r = Call(RunGenerate, {"--model", Path("model"), "--prompts", Path("messages.jsonl"), "--out",
                                 Path("messages_out.jsonl"), "--temperature", "0", "--max_new_tokens", "4"});
  ASSERT_EQ(r.code, 0) << r.err;
  std::vector<json> lines = ReadLines(Path("messages_out.jsonl"));
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(lines[0]["prompt"], json::parse(R"([{"role": "user", "content": "Hi"}])"));
}

TEST_F(GenerateCommand, AdapterFolderIsAppliedToTheBase) {
  // A LoRA adapter whose B is non-zero changes the greedy answers; a fresh one (B = 0) leaves them as they were.
  auto model = LoadModelDir(Path("model"));
  ASSERT_TRUE(model.ok()) << model.status();
  LoraConfig config;
  config.target_modules = {"all-linear"};
  config.r = 4;
  auto lora = PeftModel::CreateLora(model->model, config);
  ASSERT_TRUE(lora.ok()) << lora.status();
  ASSERT_TRUE((*lora)->Save(Path("fresh_adapter")).ok());
  {
    torch::NoGradGuard no_grad;
    for (auto& [name, t] : (*lora)->named_parameters()) {
      if (name.find("lora_B") != std::string::npos) t.normal_(0, 0.5);
    }
  }
  ASSERT_TRUE((*lora)->Save(Path("trained_adapter")).ok());
  Args greedy = {"--max_new_tokens", "8", "--temperature", "0"};
  ASSERT_EQ(Call(RunGenerate, With(Base("base.jsonl"), greedy)).code, 0);
  Outcome fresh = Call(RunGenerate, With(With(Base("fresh.jsonl"), greedy), {"--adapter", Path("fresh_adapter")}));
  ASSERT_EQ(fresh.code, 0) << fresh.err;
  Outcome trained =
      Call(RunGenerate, With(With(Base("trained.jsonl"), greedy), {"--adapter", Path("trained_adapter")}));
  ASSERT_EQ(trained.code, 0) << trained.err;
  auto ids = [&](const std::string& file) {
    std::vector<json> out;
    for (const json& line : ReadLines(Path(file))) out.push_back(line["token_ids"]);
    return out;
  };
  EXPECT_EQ(ids("fresh.jsonl"), ids("base.jsonl"));
  EXPECT_NE(ids("trained.jsonl"), ids("base.jsonl"));
}

// Which template renders the prompts, seen through the prompt length that a too-long request reports: "What is
// 2 + 2?" is BOS + 14 byte tokens as raw text, and 33 tokens in ChatML (<|im_start|>user\n...<|im_end|>\n
// <|im_start|>assistant\n).
class GenerateTemplate : public GenerateCommand {
 protected:
  // A copy of the model whose tokenizer_config.json declares `jinja` (none when empty).
  static std::string ModelWithTemplate(const std::string& name, const std::string& jinja) {
    const std::string dir = Path(name);
    fs::remove_all(dir);
    fs::copy(Path("model"), dir, fs::copy_options::recursive);
    if (!jinja.empty()) EXPECT_TRUE(WriteModelChatTemplate(dir, jinja).ok());
    return dir;
  }
  // Runs generate on `model` with max_new_tokens so large that the first prompt does not fit.
  static Outcome TooLong(const std::string& model, const Args& more = {}) {
    return Call(RunGenerate, With({"--model", model, "--prompts", Path("prompts.jsonl"), "--out", Path("long.jsonl"),
                                   "--max-new-tokens", "120"},
                                  more));
  }
};

TEST_F(GenerateTemplate, AModelWithoutATemplateGetsRawText) {
  Outcome r = TooLong(Path("model"));
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("generate: prompts rendered as raw text (the model has no chat template)\n"));
  EXPECT_THAT(r.err, HasSubstr("prompts.jsonl:1: the prompt has 15 tokens"));
}

TEST_F(GenerateTemplate, AModelsOwnTemplateIsUsed) {
  Outcome r = TooLong(ModelWithTemplate("chatml_model", kChatMlJinja));
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("generate: prompts rendered with the model's chat template (chatml)\n"));
  EXPECT_THAT(r.err, HasSubstr("prompts.jsonl:1: the prompt has 33 tokens"));
}

TEST_F(GenerateTemplate, TheFlagOverridesTheModelsTemplate) {
  Outcome raw = TooLong(ModelWithTemplate("chatml_model", kChatMlJinja), {"--template", "raw"});
  EXPECT_THAT(raw.err, HasSubstr("generate: prompts rendered with --template raw\n"));
  EXPECT_THAT(raw.err, HasSubstr("prompts.jsonl:1: the prompt has 15 tokens"));
  Outcome chatml = TooLong(Path("model"), {"--template=chatml"});
  EXPECT_THAT(chatml.err, HasSubstr("generate: prompts rendered with --template chatml\n"));
  EXPECT_THAT(chatml.err, HasSubstr("prompts.jsonl:1: the prompt has 33 tokens"));
}

TEST_F(GenerateTemplate, ATemplateInChatMlFormatIsRenderedAsChatMl) {
  const std::string qwen_like =
      "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\n"
      "You are a helpful assistant.<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + "
      "message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>"
      "assistant\n' }}{% endif %}";
  Outcome r = TooLong(ModelWithTemplate("qwen_like_model", qwen_like));
  EXPECT_THAT(r.err, HasSubstr("generate: prompts rendered as chatml, the format of the model's chat template"));
  EXPECT_THAT(r.err, HasSubstr("prompts.jsonl:1: the prompt has 33 tokens"));
}

// ---- Errors ----

TEST_F(GenerateTemplate, ATemplateAligndCannotRenderIsFailedPrecondition) {
  Outcome r = TooLong(ModelWithTemplate("mistral_like_model",
                                        "{{ bos_token }}{% for m in messages %}[INST] "
                                        "{{ m['content'] }} [/INST]{% endfor %}"));
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("error: FAILED_PRECONDITION: "));
  EXPECT_THAT(r.err, HasSubstr("the model's chat template is not one alignd renders; choose one with --template"));
  EXPECT_FALSE(fs::exists(Path("long.jsonl")));
}

TEST_F(GenerateCommand, UsageErrorsExitTwo) {
  Outcome r = Call(RunGenerate, {"--model", Path("model"), "--out", Path("x.jsonl")});
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("--prompts is required"));
  r = Call(RunGenerate, With(Base("x.jsonl"), {"--adapter", Path("no-such-adapter")}));
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("--adapter"));
  r = Call(RunGenerate, {"--help"});
  EXPECT_EQ(r.code, 0);
  EXPECT_THAT(r.out, HasSubstr("--max-new-tokens"));
  EXPECT_FALSE(fs::exists(Path("x.jsonl")));
}

TEST_F(GenerateCommand, BadValuesAreReportedAndWriteNothing) {
  Outcome r = Call(RunGenerate, With(Base("bad.jsonl"), {"--top_p", "0"}));
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("INVALID_ARGUMENT"));
  EXPECT_THAT(r.err, HasSubstr("top_p"));
  r = Call(RunGenerate, With(Base("bad.jsonl"), {"--template", "jinja"}));
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("jinja"));
  // The model has no chat template, so prompts are raw text: BOS + 19 bytes for line 4, the longest.
  r = Call(RunGenerate, With(Base("bad.jsonl"), {"--max_new_tokens", "110"}));
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("prompts.jsonl:4: the prompt has 20 tokens"));
  EXPECT_THAT(r.err, HasSubstr("model context of 128"));
  ASSERT_TRUE(WriteFileAtomic(Path("text.jsonl"), "{\"text\": \"hello\"}\n").ok());
  r = Call(RunGenerate, {"--model", Path("model"), "--prompts", Path("text.jsonl"), "--out", Path("bad.jsonl")});
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("text records"));
  r = Call(RunGenerate, {"--model", Path("absent"), "--prompts", Path("prompts.jsonl"), "--out", Path("bad.jsonl")});
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("NOT_FOUND"));
  EXPECT_FALSE(fs::exists(Path("bad.jsonl")));
}

}  // namespace
}  // namespace alignd::cli
