// The subcommands run in-process, against folders written by the independent Python reference.
#include <torch/version.h>

#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>

#include "cli/commands.h"
#include "common/base/file_util.h"
#include "common/model/device.h"
#include "common/model/hf_model.h"
#include "common/model/transformer.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/cli/cli_runner.h"
#include "tests/reference/reference_fixture.h"

namespace alignd::cli {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using ::testing::HasSubstr;

std::string Dir(const std::string& name) {
  std::string d = ::testing::TempDir() + "/cli_test/" + name;
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

class EvalAgainstReference : public alignd::testing::ReferenceFixture {};
INSTANTIATE_TEST_SUITE_P(Variants, EvalAgainstReference, ::testing::ValuesIn(alignd::testing::kReferenceVariants));

TEST_P(EvalAgainstReference, PerplexityMatchesTo1e4) {
  Outcome r = Call(RunEval, {"--model", variant_dir(), "--data", dir() + "/texts.jsonl", "--metrics", "perplexity",
                             "--batch_size", "3"});
  ASSERT_EQ(r.code, 0) << r.err;
  json got = json::parse(r.out);
  const json& want = expected()[GetParam()];
  EXPECT_EQ(got["tokens"].get<int64_t>(), want["tokens"].get<int64_t>());
  EXPECT_NEAR(got["perplexity"].get<double>() / want["perplexity"].get<double>(), 1.0, 1e-4);
}

TEST(Eval, FreshModelScoresNearUniform) {
  std::string d = Dir("init");
  Outcome init = Call(RunInit, {"--out", d + "/model", "--hidden_size", "32", "--layers", "2", "--seed", "3"});
  ASSERT_EQ(init.code, 0) << init.err;
  ASSERT_TRUE(
      WriteFileAtomic(d + "/t.jsonl", "{\"text\": \"What is 2 + 2? 2 + 2 = 4.\"}\n\n{\"text\": \"Hi.\"}\n").ok());
  Outcome r = Call(RunEval, {"--model", d + "/model", "--data", d + "/t.jsonl"});
  ASSERT_EQ(r.code, 0) << r.err;
  json got = json::parse(r.out);
  EXPECT_EQ(got["tokens"].get<int64_t>(), 25 + 3);  // BOS + one token per byte, minus one per text
  EXPECT_NEAR(got["perplexity"].get<double>(), 261.0, 30.0);
}

// --assistant_only: the tokens SFT trains (the assistant's content and end-of-turn marker), the rest as context.
TEST(Eval, AssistantOnlyScoresTheAssistantTurns) {
  std::string d = Dir("assistant");
  Outcome init = Call(RunInit, {"--out", d + "/model", "--hidden_size", "32", "--layers", "2", "--seed", "3"});
  ASSERT_EQ(init.code, 0) << init.err;
  ASSERT_TRUE(WriteFileAtomic(d + "/m.jsonl",
                              "{\"messages\": [{\"role\": \"user\", \"content\": \"What is 2 + 2?\"}, "
                              "{\"role\": \"assistant\", \"content\": \"4.\"}]}\n")
                  .ok());
  Outcome whole = Call(RunEval, {"--model", d + "/model", "--data", d + "/m.jsonl"});
  ASSERT_EQ(whole.code, 0) << whole.err;
  Outcome answer = Call(RunEval, {"--model", d + "/model", "--data", d + "/m.jsonl", "--assistant_only"});
  ASSERT_EQ(answer.code, 0) << answer.err;
  const int64_t all = json::parse(whole.out)["tokens"].get<int64_t>();
  const int64_t mine = json::parse(answer.out)["tokens"].get<int64_t>();
  // "4." is two byte tokens; the end-of-turn marker adds at least one; the user turn and the template are not scored.
  EXPECT_GE(mine, 3);
  EXPECT_LT(mine, all - 14);  // "What is 2 + 2?" alone is 14 bytes

  ASSERT_TRUE(WriteFileAtomic(d + "/t.jsonl", "{\"text\": \"plain\"}\n").ok());
  Outcome text = Call(RunEval, {"--model", d + "/model", "--data", d + "/t.jsonl", "--assistant_only"});
  EXPECT_EQ(text.code, 1);
  EXPECT_THAT(text.err, HasSubstr("--assistant_only scores \"messages\" records"));
  Outcome generation =
      Call(RunEval, {"--model", d + "/model", "--data", d + "/t.jsonl", "--assistant_only", "--metrics", "accuracy"});
  EXPECT_EQ(generation.code, 1);
  EXPECT_THAT(generation.err, HasSubstr("--assistant_only is read only by the perplexity metric"));
}

// ---- Errors: a clear message, the right exit code, nothing written ------------------------------------------------

TEST(EvalErrors, UsageErrorsExitTwo) {
  Outcome r = Call(RunEval, {"--modle", "x"});
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("--modle"));
  EXPECT_THAT(r.err, HasSubstr("usage: alignd eval"));
}

TEST(EvalErrors, PositionalArgumentsAreUsageErrors) {
  Outcome r = Call(RunEval, {"runs/sft/final"});
  EXPECT_EQ(r.code, 2);
  EXPECT_THAT(r.err, HasSubstr("unexpected argument \"runs/sft/final\""));
}

TEST(EvalErrors, MissingArgumentsAndUnknownMetrics) {
  EXPECT_THAT(Call(RunEval, {"--data", "x.jsonl"}).err, HasSubstr("INVALID_ARGUMENT: --model is required"));
  Outcome r = Call(RunEval, {"--model", "m", "--data", "d", "--metrics", "perplexity,bleu"});
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("unknown metric \"bleu\"; supported: perplexity"));
}

TEST(EvalErrors, BadDataNamesFileAndLine) {
  std::string d = Dir("bad");
  ASSERT_TRUE(WriteFileAtomic(d + "/d.jsonl", "{\"text\": \"ok\"}\n{\"text\": 5}\n").ok());
  Outcome r = Call(RunEval, {"--model", d, "--data", d + "/d.jsonl"});
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr(d + "/d.jsonl:2"));
  ASSERT_TRUE(WriteFileAtomic(d + "/p.jsonl", "{\"prompt\": \"a\", \"chosen\": \"b\", \"rejected\": \"c\"}\n").ok());
  r = Call(RunEval, {"--model", d, "--data", d + "/p.jsonl"});
  EXPECT_THAT(r.err, HasSubstr("perplexity reads \"text\" records; this file has preference records"));
}

TEST(EvalErrors, MissingModelIsNotFound) {
  std::string d = Dir("nomodel");
  ASSERT_TRUE(WriteFileAtomic(d + "/d.jsonl", "{\"text\": \"ok\"}\n").ok());
  Outcome r = Call(RunEval, {"--model", d + "/absent", "--data", d + "/d.jsonl"});
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("NOT_FOUND"));
}

TEST(Synth, WritesEveryFileAndRefusesMissingOut) {
  std::string d = Dir("synth");
  Outcome r =
      Call(RunDataSynth, {"--out", d + "/data", "--pretrain", "50", "--sft_train", "20", "--sft_eval", "5",
                          "--pref_train", "20", "--pref_eval", "5", "--prompts_train", "10", "--prompts_eval", "5"});
  ASSERT_EQ(r.code, 0) << r.err;
  for (const char* f : {"pretrain.jsonl", "sft_train.jsonl", "sft_eval.jsonl", "pref_train.jsonl", "pref_eval.jsonl",
                        "prompts_train.jsonl", "prompts_eval.jsonl", "manifest.json"}) {
    EXPECT_TRUE(PathExists(d + "/data/" + f)) << f;
  }
  EXPECT_EQ(Call(RunDataSynth, {}).code, 2);
}

// Every option of the toy data reaches the generator: the manifest records what each flag set, and a value out of
// range is refused with the option's name and nothing written.
TEST(Synth, FlagsReachTheManifest) {
  std::string d = Dir("synth_flags");
  Outcome r = Call(RunDataSynth,
                   {"--out=" + d + "/data", "--pretrain=5", "--sft_train=5", "--sft_eval=5", "--pref_train=5",
                    "--pref_eval=5", "--prompts_train=5", "--prompts_eval=5", "--max-operand=7", "--max-factor=6",
                    "--sft-overcautious=11", "--sft-overcautious-topics=12", "--sft-sloppy=13", "--pref-confused=14",
                    "--pref-degenerate=15", "--prompts-safety=16", "--pref-safety=17", "--split-look-alikes-together"});
  ASSERT_EQ(r.code, 0) << r.err;
  absl::StatusOr<std::string> text = ReadFile(d + "/data/manifest.json");
  ASSERT_TRUE(text.ok()) << text.status();
  nlohmann::json options = nlohmann::json::parse(*text)["options"];
  EXPECT_EQ(options, nlohmann::json::parse(R"({"max_operand": 7, "max_factor": 6, "sft_overcautious_percent": 11,
      "sft_overcautious_topics_percent": 12, "sft_sloppy_percent": 13, "pref_confused_percent": 14,
      "pref_degenerate_percent": 15, "prompts_safety_percent": 16, "pref_safety_percent": 17,
      "split_look_alikes_together": true})"));
  r = Call(RunDataSynth, {"--out", d + "/bad", "--pref-safety", "101"});
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("pref_safety_percent"));
  EXPECT_FALSE(PathExists(d + "/bad/manifest.json"));
}

// --cache: an evaluation that has a model as its --reference takes that model's answers and the judge's scores of
// them from the evaluation that had it as --model, and reports exactly what generating and judging them again gives.
TEST(Eval, CacheGivesTheReferenceSideExactlyAsGeneratingItDoes) {
  std::string d = Dir("cache");
  for (const char* seed : {"3", "4"}) {
    Outcome init = Call(RunInit, {"--out", d + "/m" + seed, "--hidden_size", "32", "--layers", "2", "--seed", seed});
    ASSERT_EQ(init.code, 0) << init.err;
  }
  {  // the judge: a score head on a model of the same shape
    auto loaded = LoadModelDir(d + "/m3");
    ASSERT_TRUE(loaded.ok()) << loaded.status();
    ModelConfig c = loaded->config;
    c.head = HeadKind::kScore;
    c.num_labels = 1;
    c.architecture = "LlamaForSequenceClassification";
    CausalLM judge(c);
    judge->InitWeights(5);
    ASSERT_TRUE(SaveModelDir(d + "/judge", *judge, loaded->tokenizer.get()).ok());
  }
  ASSERT_EQ(Call(RunDataSynth, {"--out", d + "/data", "--pretrain", "5", "--sft_train", "5", "--sft_eval", "5",
                                "--pref_train", "5", "--pref_eval", "5", "--prompts_train", "5", "--prompts_eval", "7"})
                .code,
            0);
  auto eval = [&](const std::string& model, const std::string& details, std::vector<std::string> more = {}) {
    std::vector<std::string> args = {"--model",          d + "/" + model,
                                     "--reference",      d + "/m3",
                                     "--judge",          d + "/judge",
                                     "--data",           d + "/data/prompts_eval.jsonl",
                                     "--metrics",        "accuracy,kl_to_ref,win_rate",
                                     "--max_new_tokens", "6",
                                     "--batch_size",     "3",
                                     "--threads",        "1",
                                     "--details",        d + "/" + details};
    args.insert(args.end(), more.begin(), more.end());
    Outcome r = Call(RunEval, args);
    EXPECT_EQ(r.code, 0) << r.err;
    return r.code == 0 ? json::parse(r.out) : json();
  };
  const std::vector<std::string> cache = {"--cache", d + "/cache"};
  json plain = eval("m4", "plain.jsonl");
  EXPECT_FALSE(plain.contains("reference_answers"));
  json own = eval("m3", "own.jsonl", cache);  // the reference against itself: computed once, kept
  EXPECT_EQ(own["reference_answers"], "generated");
  EXPECT_EQ(own["win_rate"].get<double>(), 0.5);
  EXPECT_EQ(own["kl_to_ref"].get<double>(), 0.0);
  json cached = eval("m4", "cached.jsonl", cache);
  EXPECT_EQ(cached["reference_answers"], "cache");
  for (const char* m : {"accuracy", "kl_to_ref", "win_rate"}) EXPECT_EQ(cached[m], plain[m]) << m;
  auto text = [&](const std::string& name) { return ReadFile(d + "/" + name).value_or("?"); };
  EXPECT_EQ(text("cached.jsonl"), text("plain.jsonl"));  // every answer and judge score, to the last bit
  // The reference's own answers are what it gave as the model.
  std::istringstream own_lines(text("own.jsonl")), cached_lines(text("cached.jsonl"));
  std::string a, b;
  while (std::getline(own_lines, a) && std::getline(cached_lines, b)) {
    EXPECT_EQ(json::parse(a)["completion"], json::parse(b)["reference_completion"]);
    EXPECT_EQ(json::parse(a)["judge_policy"], json::parse(b)["judge_reference"]);
  }

  // Another decoding setting is another key: generated again, not taken.
  EXPECT_EQ(eval("m4", "longer.jsonl", {"--cache", d + "/cache", "--max_new_tokens", "7"})["reference_answers"],
            "generated");
  // A damaged entry is a miss, not an error.
  for (const auto& e : fs::directory_iterator(d + "/cache")) ASSERT_TRUE(WriteFileAtomic(e.path().string(), "{").ok());
  json again = eval("m4", "again.jsonl", cache);
  EXPECT_EQ(again["reference_answers"], "generated");
  EXPECT_EQ(again["win_rate"], plain["win_rate"]);
}

TEST(Help, EveryCommandAnswersHelp) {
  for (auto* command : {&RunEval, &RunInit, &RunDataSynth}) {
    Outcome r = Call(command, {"--help"});
    EXPECT_EQ(r.code, 0);
    EXPECT_THAT(r.out, HasSubstr("usage: "));
  }
}

// What LibTorch alignd runs on: CUDA and NCCL are compiled in whatever the machine has (this one has no GPU).
TEST(Devices, VersionNamesLibTorchCudaNcclAndTheDevices) {
  Outcome r = Call(RunVersion, {});
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr(std::string("libtorch: ") + TORCH_VERSION + "\n"));
  EXPECT_THAT(r.out, HasSubstr("cuda compiled in: yes, CUDA 13."));
  EXPECT_THAT(r.out, HasSubstr("nccl compiled in: yes"));
  EXPECT_THAT(r.out, ::testing::ContainsRegex("nccl: 2\\.[0-9]+\\.[0-9]+"));
  EXPECT_THAT(r.out, HasSubstr("cuda devices: " + std::to_string(ProbeRuntime().cuda_devices.size())));
  EXPECT_EQ(Call(RunVersion, {"--bogus"}).code, 2);
}

TEST(Devices, CudaWithoutAGpuIsFailedPreconditionAndWritesNothing) {
  if (!ProbeRuntime().cuda_devices.empty()) {
    EXPECT_TRUE(ResolveDevice("cuda", "resources.device").ok());
    return;  // this machine has a GPU: scripts/gpu-check covers it
  }
  std::string d = Dir("cuda_job");
  ASSERT_TRUE(WriteFileAtomic(d + "/train.jsonl", "{\"text\": \"hello\"}\n").ok());
  ASSERT_TRUE(WriteFileAtomic(d + "/job.yaml", "name: on_gpu\nalgorithm: pretrain\noutput_dir: " + d +
                                                   "/out\ndata: {train: " + d +
                                                   "/train.jsonl}\ntrain: {steps: 1, batch_size: 1}\n"
                                                   "resources: {device: cuda, learners: 1}\n")
                  .ok());
  Outcome r = Call(RunTrain, {"--spec", d + "/job.yaml"});
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("FAILED_PRECONDITION"));
  EXPECT_THAT(r.err, HasSubstr("resources.device: cuda asked for, but this process has no CUDA device"));
  EXPECT_FALSE(PathExists(d + "/out/final"));
  EXPECT_FALSE(PathExists(d + "/out/metrics.jsonl"));

  absl::StatusOr<torch::Device> device = ResolveDevice("cuda:1", "--device");
  EXPECT_EQ(device.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(ResolveDevice("tpu", "--device").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(ResolveDevice("cpu", "--device").ok());

  r = Call(RunWorker, {"--device=cuda", "--coordinator=127.0.0.1:1", "--roles=learner"});
  EXPECT_EQ(r.code, 1);
  EXPECT_THAT(r.err, HasSubstr("FAILED_PRECONDITION: --device: cuda asked for"));
}

}  // namespace
}  // namespace alignd::cli
