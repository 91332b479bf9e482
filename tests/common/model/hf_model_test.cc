#include "common/model/hf_model.h"

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "common/base/file_util.h"
#include "common/model/perplexity.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/reference/reference_fixture.h"

namespace alignd {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using ::testing::HasSubstr;

std::string TempDir(const std::string& name) {
  std::string d = ::testing::TempDir() + "/hf_model_test/" + name;
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

CausalLM Tiny(ModelFamily family, uint64_t seed = 5) {
  ModelConfig c =
      family == ModelFamily::kLlama ? TinyLlamaConfig(261, 32, 2, 4, 2, 64) : TinyGpt2Config(261, 32, 2, 4, 64);
  CausalLM m(c);
  m->InitWeights(seed);
  return m;
}

void ExpectSameParameters(CausalLMImpl& a, CausalLMImpl& b) {
  auto pb = b.named_parameters();
  ASSERT_EQ(a.named_parameters().size(), pb.size());
  for (auto& p : a.named_parameters()) EXPECT_TRUE(torch::equal(p.value(), pb[p.key()])) << p.key();
}

// ---- Round trips -----------------------------------------------------------------------------------------------

class RoundTrip : public ::testing::TestWithParam<ModelFamily> {};
INSTANTIATE_TEST_SUITE_P(Families, RoundTrip, ::testing::Values(ModelFamily::kLlama, ModelFamily::kGpt2),
                         [](const auto& i) { return std::string(i.param == ModelFamily::kLlama ? "Llama" : "Gpt2"); });

TEST_P(RoundTrip, F32IsExactAndKeepsTheTokenizer) {
  CausalLM m = Tiny(GetParam());
  auto tok = MakeByteTokenizer();
  std::string dir = TempDir("f32") + "/model";
  ASSERT_TRUE(SaveModelDir(dir, *m, tok.get()).ok());
  for (const char* f : {"config.json", "model.safetensors", "generation_config.json", "tokenizer.json"}) {
    EXPECT_TRUE(PathExists(JoinPath(dir, f))) << f;
  }
  auto loaded = LoadModelDir(dir);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  ExpectSameParameters(*m, *loaded->model);
  EXPECT_EQ(loaded->tokenizer->Encode("hello <|im_end|>"), tok->Encode("hello <|im_end|>"));
}

TEST_P(RoundTrip, Bf16AndF16StoreRoundedValues) {
  CausalLM m = Tiny(GetParam());
  for (auto [dtype, type] :
       {std::pair{safetensors::Dtype::kBF16, torch::kBFloat16}, std::pair{safetensors::Dtype::kF16, torch::kHalf}}) {
    std::string dir = TempDir("half") + "/model";
    SaveOptions opts;
    opts.dtype = dtype;
    ASSERT_TRUE(SaveModelDir(dir, *m, nullptr, {}, opts).ok());
    LoadOptions lo;
    lo.load_tokenizer = false;
    auto loaded = LoadModelDir(dir, lo);
    ASSERT_TRUE(loaded.ok()) << loaded.status();
    EXPECT_EQ(loaded->config.torch_dtype, type == torch::kHalf ? "float16" : "bfloat16");
    for (auto& p : m->named_parameters()) {
      torch::Tensor expect = p.value().detach().to(type).to(torch::kFloat);
      EXPECT_TRUE(torch::equal(loaded->model->named_parameters()[p.key()], expect)) << p.key();
    }
  }
}

TEST_P(RoundTrip, ShardedWithIndex) {
  CausalLM m = Tiny(GetParam());
  std::string dir = TempDir("sharded") + "/model";
  SaveOptions opts;
  opts.max_shard_bytes = 40 * 1024;
  ASSERT_TRUE(SaveModelDir(dir, *m, nullptr, {}, opts).ok());
  EXPECT_TRUE(PathExists(JoinPath(dir, "model.safetensors.index.json")));
  EXPECT_FALSE(PathExists(JoinPath(dir, "model.safetensors")));
  EXPECT_TRUE(PathExists(JoinPath(dir, "model-00002-of-00003.safetensors")) ||
              PathExists(JoinPath(dir, "model-00002-of-00004.safetensors")) ||
              PathExists(JoinPath(dir, "model-00002-of-00005.safetensors")));
  CausalLM other = Tiny(GetParam(), /*seed=*/99);
  ASSERT_TRUE(LoadWeights(dir, *other).ok());
  ExpectSameParameters(*m, *other);
}

// ---- Errors ----------------------------------------------------------------------------------------------------

TEST(HfModelErrors, MissingFolderIsNotFound) {
  EXPECT_EQ(LoadModelDir("/nonexistent/model").status().code(), absl::StatusCode::kNotFound);
}

TEST(HfModelErrors, UnsupportedArchitectureIsNamed) {
  std::string dir = TempDir("arch");
  ASSERT_TRUE(WriteFileAtomic(dir + "/config.json", R"({"architectures": ["BertModel"]})").ok());
  auto s = LoadModelDir(dir).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("\"architectures\""));
  EXPECT_THAT(std::string(s.message()), HasSubstr("BertModel"));
}

TEST(HfModelErrors, MissingConfigFieldIsNamed) {
  std::string dir = TempDir("field");
  ASSERT_TRUE(
      WriteFileAtomic(dir + "/config.json", R"({"architectures": ["LlamaForCausalLM"], "vocab_size": 10})").ok());
  auto s = LoadModelDir(dir).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("config.json: field \"hidden_size\" is missing"));
}

TEST(HfModelErrors, ShapeMismatchNamesTheTensor) {
  CausalLM m = Tiny(ModelFamily::kLlama);
  std::string dir = TempDir("shape") + "/model";
  ASSERT_TRUE(SaveModelDir(dir, *m, nullptr).ok());
  ModelConfig c = m->config();
  c.intermediate_size += 16;
  CausalLM other(c);
  absl::Status s = LoadWeights(dir, *other);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()),
              HasSubstr("mlp.down_proj.weight\" has shape [32, 96], config.json implies [32, 112]"));
}

TEST(HfModelErrors, MissingAndUnexpectedTensors) {
  CausalLM m = Tiny(ModelFamily::kLlama);
  std::string dir = TempDir("missing") + "/model";
  ASSERT_TRUE(SaveModelDir(dir, *m, nullptr).ok());
  ModelConfig deeper = m->config();
  deeper.num_layers = 3;
  CausalLM three(deeper);
  absl::Status s = LoadWeights(dir, *three);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("missing tensors: model.layers.2."));

  ModelConfig shallower = m->config();
  shallower.num_layers = 1;
  CausalLM one(shallower);
  s = LoadWeights(dir, *one);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("unexpected tensor \"model.layers.1."));
}

TEST(HfModelErrors, FailedSaveKeepsThePreviousFolder) {
  CausalLM m = Tiny(ModelFamily::kGpt2);
  std::string dir = TempDir("keep") + "/model";
  ASSERT_TRUE(SaveModelDir(dir, *m, nullptr).ok());
  SaveOptions bad;
  bad.dtype = safetensors::Dtype::kI64;
  EXPECT_EQ(SaveModelDir(dir, *m, nullptr, {}, bad).code(), absl::StatusCode::kInvalidArgument);
  LoadOptions lo;
  lo.load_tokenizer = false;
  EXPECT_TRUE(LoadModelDir(dir, lo).ok());
  EXPECT_FALSE(fs::exists(dir + ".partial-" + std::to_string(::getpid())));
}

// ---- Perplexity over chosen tokens ----------------------------------------------------------------------------

// The scored-token form of perplexity (what `alignd eval --assistant_only` uses) counts exactly the marked targets,
// each predicted from the tokens before it in its window.
TEST(Perplexity, ScoredTokensCountOnlyTheMarkedTargets) {
  CausalLM m = Tiny(ModelFamily::kLlama);
  const std::vector<int32_t> ids = {1, 72, 101, 108, 108, 111, 32, 119, 111, 114};
  ScoredTokens all{ids, std::vector<uint8_t>(ids.size(), 1)};
  ScoredTokens some{ids, {0, 0, 0, 0, 1, 1, 1, 1, 0, 0}};  // tokens 4..7

  torch::NoGradGuard g;
  torch::Tensor t = torch::tensor(std::vector<int64_t>(ids.begin(), ids.end())).unsqueeze(0);
  torch::Tensor logp = TokenLogProbs(m->forward(t, torch::ones_like(t)).logits, t).squeeze(0);  // [t - 1]
  const double want_all = -logp.sum().item<double>();
  const double want_some = -logp.narrow(0, 3, 4).sum().item<double>();  // logp[k] scores token k + 1

  auto full = ComputePerplexity(*m, {all}, /*pad_id=*/0);
  ASSERT_TRUE(full.ok()) << full.status();
  EXPECT_EQ(full->tokens, 9);
  EXPECT_NEAR(full->nll, want_all, 1e-4 * std::abs(want_all));
  auto part = ComputePerplexity(*m, {some}, /*pad_id=*/0);
  ASSERT_TRUE(part.ok()) << part.status();
  EXPECT_EQ(part->tokens, 4);
  EXPECT_NEAR(part->nll, want_some, 1e-4 * std::abs(want_some));
  EXPECT_NEAR(part->perplexity, std::exp(want_some / 4), 1e-4 * part->perplexity);

  // Windows of 4 tokens: each window's first token is not predicted (3 + 3 + 1 of the 10).
  PerplexityOptions windows;
  windows.max_length = 4;
  auto windowed = ComputePerplexity(*m, {all}, 0, windows);
  ASSERT_TRUE(windowed.ok()) << windowed.status();
  EXPECT_EQ(windowed->tokens, 7);

  EXPECT_EQ(ComputePerplexity(*m, {{ids, {1, 1}}}, 0).status().code(), absl::StatusCode::kInvalidArgument);
  auto none = ComputePerplexity(*m, {{ids, std::vector<uint8_t>(ids.size(), 0)}}, 0);
  EXPECT_EQ(none.status().code(), absl::StatusCode::kInvalidArgument);
}

// ---- Against the independent Python reference --------------------------------------------------------------------

class Reference : public alignd::testing::ReferenceFixture {};
INSTANTIATE_TEST_SUITE_P(Variants, Reference, ::testing::ValuesIn(alignd::testing::kReferenceVariants));

TEST_P(Reference, TokensLogitsAndPerplexityMatch) {
  const json& want = expected()[GetParam()];
  auto loaded = LoadModelDir(variant_dir());
  ASSERT_TRUE(loaded.ok()) << loaded.status();

  // The tokenizer agrees with the reference's own byte-level BPE.
  std::vector<std::string> texts;
  std::ifstream in(dir() + "/texts.jsonl");
  for (std::string line; std::getline(in, line);) texts.push_back(json::parse(line)["text"]);
  ASSERT_EQ(texts.size(), want["token_ids"].size());
  for (size_t i = 0; i < texts.size(); ++i) {
    std::vector<int32_t> ids = loaded->tokenizer->Encode(texts[i], /*add_special_tokens=*/true);
    EXPECT_EQ(ids, want["token_ids"][i].get<std::vector<int32_t>>()) << texts[i];
  }

  // Logits of a left-padded batch, on the real positions.
  auto file = safetensors::File::Read(variant_dir() + ".expected.safetensors");
  ASSERT_TRUE(file.ok()) << file.status();
  torch::Tensor ids = TensorFromView(*file->Get("input_ids")).value().to(torch::kLong);
  torch::Tensor mask = TensorFromView(*file->Get("attention_mask")).value().to(torch::kLong);
  torch::Tensor logits = TensorFromView(*file->Get("logits")).value();
  torch::NoGradGuard g;
  torch::Tensor ours = loaded->model->forward(ids, mask).logits;
  torch::Tensor real = mask.to(torch::kBool);
  torch::Tensor a = ours.index({real}), b = logits.index({real});
  double rel = ((a - b).abs().max() / b.abs().max()).item<double>();
  EXPECT_LT(rel, 1e-5) << "max relative logit error";

  auto ppl = ComputePerplexity(*loaded->model, *loaded->tokenizer, texts);
  ASSERT_TRUE(ppl.ok()) << ppl.status();
  EXPECT_EQ(ppl->tokens, want["tokens"].get<int64_t>());
  EXPECT_NEAR(ppl->perplexity / want["perplexity"].get<double>(), 1.0, 1e-5);
}

}  // namespace
}  // namespace alignd
