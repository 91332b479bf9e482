#include "common/model/peft.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/optim/adam.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "absl/strings/match.h"
#include "common/base/file_util.h"
#include "common/model/hf_model.h"
#include "common/model/safetensors.h"
#include "gtest/gtest.h"

namespace alignd {
namespace {

namespace fs = std::filesystem;
namespace F = torch::nn::functional;
using json = nlohmann::json;
using torch::Tensor;

ModelConfig Config(ModelFamily family) {
  if (family == ModelFamily::kGpt2) return TinyGpt2Config(/*vocab=*/50, /*hidden=*/32, /*layers=*/2, /*heads=*/4, 64);
  ModelConfig c = TinyLlamaConfig(/*vocab=*/50, /*hidden=*/32, /*layers=*/2, /*heads=*/4, /*kv_heads=*/2, 64);
  c.tie_word_embeddings = false;
  return c;
}

CausalLM MakeBase(ModelFamily family, uint64_t seed = 7, HeadKind head = HeadKind::kLanguageModel) {
  ModelConfig c = Config(family);
  if (head == HeadKind::kScore) {  // a reward model: *ForSequenceClassification
    c.head = HeadKind::kScore;
    c.num_labels = 1;
    c.architecture = family == ModelFamily::kGpt2 ? "GPT2ForSequenceClassification" : "LlamaForSequenceClassification";
  }
  CausalLM m(c);
  m->InitWeights(seed);
  // Non-trivial biases and norms so that a wrong layout shows up in the numbers.
  torch::NoGradGuard g;
  torch::manual_seed(static_cast<int64_t>(seed));
  for (auto& p : m->parameters()) p.add_(torch::randn_like(p) * 0.05);
  return m;
}

// A second model holding the same base weights.
CausalLM CopyOf(const CausalLM& m) {
  CausalLM out(m->config());
  torch::NoGradGuard g;
  auto src = m->named_parameters();
  for (auto& p : out->named_parameters()) p.value().copy_(src[p.key()]);
  return out;
}

std::map<std::string, Tensor> Snapshot(const CausalLM& m) {
  std::map<std::string, Tensor> out;
  for (const auto& p : m->named_parameters()) out[p.key()] = p.value().detach().clone();
  return out;
}

bool SameAsSnapshot(const CausalLM& m, const std::map<std::string, Tensor>& snap, double atol = 0.0) {
  auto params = m->named_parameters();
  if (params.size() != snap.size()) return false;
  for (const auto& [name, t] : snap) {
    const Tensor& p = params[name];
    if (atol == 0.0 ? !torch::equal(p, t) : !torch::allclose(p, t, 0.0, atol)) return false;
  }
  return true;
}

std::string TempDir(const std::string& name) {
  fs::path dir = fs::temp_directory_path() / ("alignd_peft_test_" + std::to_string(::getpid())) / name;
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir.string();
}

Tensor Batch() { return ((torch::arange(18, torch::kLong) * 7 + 3) % 50).reshape({2, 9}); }

Tensor Logits(CausalLM& m, const Tensor& ids = Batch()) {
  torch::NoGradGuard g;
  return m->forward(ids).logits;
}

Tensor LmLoss(CausalLM& m, const Tensor& ids) {
  const int64_t t = ids.size(1);
  Tensor logits = m->forward(ids).logits.narrow(1, 0, t - 1);
  return F::cross_entropy(logits.reshape({-1, logits.size(-1)}), ids.narrow(1, 1, t - 1).reshape({-1}));
}

// Random values in every adapter tensor, so that the adapters change the output.
void Randomize(PeftModel& peft, uint64_t seed, double scale = 0.1) {
  torch::NoGradGuard g;
  torch::manual_seed(static_cast<int64_t>(seed));
  for (auto& p : peft.parameters()) p.copy_(torch::randn_like(p) * scale);
}

double MaxDiff(const Tensor& a, const Tensor& b) { return (a - b).abs().max().item<double>(); }

LoraConfig Lora(std::vector<std::string> targets) {
  LoraConfig c;
  c.target_modules = std::move(targets);
  c.r = 4;
  c.alpha = 8;
  c.seed = 3;
  c.base_model_name_or_path = "tiny-base";
  return c;
}

// The attention projections the tests target in each family.
std::vector<std::string> AttentionTargets(ModelFamily f) {
  return f == ModelFamily::kGpt2 ? std::vector<std::string>{"c_attn"} : std::vector<std::string>{"q_proj", "v_proj"};
}

std::unique_ptr<PeftModel> MustCreateLora(CausalLM m, const LoraConfig& c) {
  auto peft = PeftModel::CreateLora(std::move(m), c);
  EXPECT_TRUE(peft.ok()) << peft.status();
  return peft.ok() ? std::move(*peft) : nullptr;
}

std::unique_ptr<PeftModel> MustCreateBottleneck(CausalLM m, const BottleneckConfig& c) {
  auto peft = PeftModel::CreateBottleneck(std::move(m), c);
  EXPECT_TRUE(peft.ok()) << peft.status();
  return peft.ok() ? std::move(*peft) : nullptr;
}

Tensor ParamNamed(const PeftModel& peft, const std::string& name) {
  for (const auto& [n, t] : peft.named_parameters()) {
    if (n == name) return t;
  }
  ADD_FAILURE() << "no adapter tensor " << name;
  return {};
}

bool NoHooks(const CausalLM& m) {
  for (const auto& p : m->Projections()) {
    if (p.module->delta() != nullptr) return false;
  }
  for (const auto& l : m->Layers()) {
    if (l.module->adapter(AdapterSite::kAfterAttention) || l.module->adapter(AdapterSite::kAfterMlp)) return false;
  }
  return true;
}

// Every family-parameterised suite runs on both model families, named by family.
const auto kFamilies = ::testing::Values(ModelFamily::kLlama, ModelFamily::kGpt2);
std::string FamilyName(const ::testing::TestParamInfo<ModelFamily>& info) {
  return info.param == ModelFamily::kGpt2 ? "Gpt2" : "Llama";
}

class Families : public ::testing::TestWithParam<ModelFamily> {};
INSTANTIATE_TEST_SUITE_P(Family, Families, kFamilies, FamilyName);

// ---- Hook points in the transformer ------------------------------------------------------------------------------

TEST(Hooks, ProjectionIsADropInForTorchLinear) {
  torch::manual_seed(5);
  torch::nn::Linear linear(torch::nn::LinearOptions(12, 6).bias(true));
  Tensor after_linear = torch::rand({1});
  torch::manual_seed(5);
  Projection proj(12, 6, /*bias=*/true, ProjectionImpl::Layout::kLinear);
  EXPECT_TRUE(torch::equal(torch::rand({1}), after_linear)) << "different draws from the global generator";
  EXPECT_TRUE(torch::equal(proj->weight, linear->weight));
  EXPECT_TRUE(torch::equal(proj->bias, linear->bias));
  Tensor x = torch::randn({3, 4, 12});
  EXPECT_TRUE(torch::equal(proj->forward(x), linear->forward(x)));
  std::vector<std::string> names;
  for (const auto& p : Projection(12, 6, false, ProjectionImpl::Layout::kLinear)->named_parameters()) {
    names.push_back(p.key());
  }
  EXPECT_EQ(names, std::vector<std::string>{"weight"});
}

TEST_P(Families, ProjectionsAndLayersHaveHfPaths) {
  CausalLM m = MakeBase(GetParam());
  std::vector<NamedProjection> projections = m->Projections();
  std::vector<NamedLayer> layers = m->Layers();
  ASSERT_EQ(layers.size(), 2u);
  if (GetParam() == ModelFamily::kGpt2) {
    ASSERT_EQ(projections.size(), 8u);
    EXPECT_EQ(projections[0].path, "transformer.h.0.attn.c_attn");
    EXPECT_EQ(projections[7].path, "transformer.h.1.mlp.c_proj");
    EXPECT_EQ(projections[0].module->layout(), ProjectionImpl::Layout::kConv1D);
    EXPECT_EQ(projections[0].module->weight.sizes(), (std::vector<int64_t>{32, 96}));
    EXPECT_EQ(projections[0].module->out_features(), 96);
    EXPECT_EQ(layers[1].path, "transformer.h.1");
  } else {
    ASSERT_EQ(projections.size(), 14u);
    EXPECT_EQ(projections[0].path, "model.layers.0.self_attn.q_proj");
    EXPECT_EQ(projections[13].path, "model.layers.1.mlp.down_proj");
    EXPECT_EQ(projections[0].module->layout(), ProjectionImpl::Layout::kLinear);
    EXPECT_EQ(projections[1].module->weight.sizes(), (std::vector<int64_t>{16, 32}));  // k_proj: 2 kv heads of 8
    EXPECT_EQ(layers[1].path, "model.layers.1");
  }
  // The projection paths are the module paths of the state dict's weights.
  auto params = m->named_parameters();
  for (const auto& p : projections) EXPECT_TRUE(params.contains(p.path + ".weight")) << p.path;
}

// ---- LoRA ------------------------------------------------------------------------------------------------------

class LoraTest : public Families {};
INSTANTIATE_TEST_SUITE_P(Family, LoraTest, kFamilies, FamilyName);

TEST_P(LoraTest, StepZeroEqualsBaseAndKeepsTheStateDict) {
  CausalLM m = MakeBase(GetParam());
  Tensor base = Logits(m);
  std::set<std::string> keys_before;
  for (const auto& p : m->named_parameters()) keys_before.insert(p.key());
  auto peft = MustCreateLora(m, Lora(AttentionTargets(GetParam())));
  ASSERT_NE(peft, nullptr);
  EXPECT_TRUE(torch::equal(Logits(m), base));
  std::set<std::string> keys_after;
  for (const auto& p : m->named_parameters()) keys_after.insert(p.key());
  EXPECT_EQ(keys_after, keys_before);
  // 2 layers x (q: 4x32 + 32x4, v: 4x32 + 16x4) for Llama; 2 x (c_attn: 4x32 + 96x4) for GPT-2.
  int64_t count = 0;
  for (const auto& p : peft->parameters()) count += p.numel();
  EXPECT_EQ(count, GetParam() == ModelFamily::kGpt2 ? 2 * (128 + 384) : 2 * (128 + 128 + 128 + 64));
}

TEST_P(LoraTest, InitFollowsPeftAndFreezesTheBase) {
  CausalLM m = MakeBase(GetParam());
  auto peft = MustCreateLora(m, Lora(AttentionTargets(GetParam())));
  ASSERT_NE(peft, nullptr);
  const double bound = 1.0 / std::sqrt(32.0);  // kaiming_uniform(a = sqrt(5)) over fan_in = 32
  for (const auto& [name, t] : peft->named_parameters()) {
    EXPECT_TRUE(t.requires_grad()) << name;
    if (absl::EndsWith(name, "lora_B.weight")) {
      EXPECT_EQ(t.abs().max().item<double>(), 0.0) << name;
    } else {
      EXPECT_LE(t.abs().max().item<double>(), bound) << name;
      EXPECT_GT(t.abs().max().item<double>(), 0.8 * bound) << name;
      EXPECT_NEAR(t.pow(2).mean().item<double>(), bound * bound / 3.0, 0.25 * bound * bound / 3.0) << name;
    }
  }
  for (const auto& p : m->parameters()) EXPECT_FALSE(p.requires_grad());
  // Same seed, same init.
  CausalLM m2 = MakeBase(GetParam());
  auto again = MustCreateLora(m2, Lora(AttentionTargets(GetParam())));
  EXPECT_TRUE(torch::equal(peft->parameters()[0], again->parameters()[0]));
}

TEST_P(LoraTest, TrainingChangesOnlyLoraAndLowersTheLoss) {
  CausalLM m = MakeBase(GetParam());
  auto base = Snapshot(m);
  auto peft = MustCreateLora(m, Lora({"all-linear"}));
  ASSERT_NE(peft, nullptr);
  std::vector<Tensor> lora_before;
  for (const auto& p : peft->parameters()) lora_before.push_back(p.detach().clone());
  torch::optim::Adam opt(peft->parameters(), torch::optim::AdamOptions(1e-2));
  Tensor ids = Batch();
  double first = 0, last = 0;
  for (int step = 0; step < 10; ++step) {
    opt.zero_grad();
    Tensor loss = LmLoss(m, ids);
    loss.backward();
    opt.step();
    (step == 0 ? first : last) = loss.item<double>();
  }
  EXPECT_LT(last, first - 0.3) << "first " << first << " last " << last;
  EXPECT_TRUE(SameAsSnapshot(m, base)) << "a base tensor changed";
  for (const auto& p : m->parameters()) EXPECT_FALSE(p.grad().defined());
  auto after = peft->parameters();
  for (size_t i = 0; i < after.size(); ++i) EXPECT_FALSE(torch::equal(after[i], lora_before[i])) << i;
}

TEST_P(LoraTest, ProjectionOutputEqualsHandMergedWeight) {
  CausalLM m = MakeBase(GetParam());
  LoraConfig c = Lora(AttentionTargets(GetParam()));
  auto peft = MustCreateLora(m, c);
  ASSERT_NE(peft, nullptr);
  Randomize(*peft, 21);
  const bool gpt2 = GetParam() == ModelFamily::kGpt2;
  const std::string path = gpt2 ? "transformer.h.1.attn.c_attn" : "model.layers.1.self_attn.q_proj";
  std::shared_ptr<ProjectionImpl> proj;
  for (const auto& p : m->Projections()) {
    if (p.path == path) proj = p.module;
  }
  ASSERT_NE(proj, nullptr);
  Tensor a = ParamNamed(*peft, "base_model.model." + path + ".lora_A.weight");
  Tensor b = ParamNamed(*peft, "base_model.model." + path + ".lora_B.weight");
  const double scale = c.alpha / c.r;
  torch::NoGradGuard g;
  torch::manual_seed(4);
  Tensor x = torch::randn({2, 5, 32});
  Tensor expected;
  if (gpt2) {  // Conv1D: weight [in, out], y = x W + b
    Tensor w = proj->weight + scale * torch::matmul(b, a).t();
    expected = torch::matmul(x, w) + proj->bias;
  } else {
    Tensor w = proj->weight + scale * torch::matmul(b, a);
    expected = torch::matmul(x, w.t());
  }
  Tensor got = proj->forward(x);
  EXPECT_LT(MaxDiff(got, expected), 1e-5);
  EXPECT_GT(MaxDiff(got, proj->forward(x) - proj->delta()->Delta(x, false)), 1e-2) << "the delta is negligible";
}

TEST_P(LoraTest, MergeEqualsUnmergedAndUnmergeRestoresTheBase) {
  CausalLM m = MakeBase(GetParam());
  auto base = Snapshot(m);
  auto peft = MustCreateLora(m, Lora(AttentionTargets(GetParam())));
  ASSERT_NE(peft, nullptr);
  Randomize(*peft, 22);
  Tensor unmerged = Logits(m);
  ASSERT_TRUE(peft->Merge().ok());
  EXPECT_TRUE(peft->merged());
  EXPECT_TRUE(NoHooks(m));
  EXPECT_FALSE(SameAsSnapshot(m, base, 1e-3));
  EXPECT_LT(MaxDiff(Logits(m), unmerged), 1e-5);
  EXPECT_EQ(peft->Merge().code(), absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(peft->Unmerge().ok());
  EXPECT_TRUE(SameAsSnapshot(m, base, 1e-6));
  EXPECT_LT(MaxDiff(Logits(m), unmerged), 1e-5);
  EXPECT_EQ(peft->Unmerge().code(), absl::StatusCode::kFailedPrecondition);
}

TEST_P(LoraTest, DisabledEqualsBase) {
  CausalLM m = MakeBase(GetParam());
  Tensor base = Logits(m);
  auto peft = MustCreateLora(m, Lora(AttentionTargets(GetParam())));
  ASSERT_NE(peft, nullptr);
  Randomize(*peft, 23);
  Tensor tuned = Logits(m);
  EXPECT_GT(MaxDiff(tuned, base), 1e-2);
  {
    ScopedPeftDisabled off(*peft);
    EXPECT_FALSE(peft->enabled());
    EXPECT_TRUE(torch::equal(Logits(m), base));
  }
  EXPECT_TRUE(torch::equal(Logits(m), tuned));
  // Merged, disabling unmerges first.
  ASSERT_TRUE(peft->Merge().ok());
  {
    ScopedPeftDisabled off(*peft);
    EXPECT_FALSE(peft->merged());
    EXPECT_LT(MaxDiff(Logits(m), base), 1e-5);
  }
  EXPECT_LT(MaxDiff(Logits(m), tuned), 1e-5);
}

TEST_P(LoraTest, SaveLoadRoundTripGivesIdenticalLogits) {
  CausalLM m = MakeBase(GetParam());
  auto peft = MustCreateLora(m, Lora(AttentionTargets(GetParam())));
  ASSERT_NE(peft, nullptr);
  Randomize(*peft, 24);
  Tensor tuned = Logits(m);
  std::string dir = TempDir("lora_round_trip") + "/adapter";
  ASSERT_TRUE(peft->Save(dir).ok());
  ASSERT_TRUE(peft->Save(dir).ok()) << "saving over a previous folder";
  CausalLM fresh = CopyOf(m);  // m's state dict is the base alone
  auto loaded = PeftModel::Load(dir, fresh);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ((*loaded)->type(), PeftType::kLora);
  EXPECT_TRUE(torch::equal(Logits(fresh), tuned));
  for (const auto& p : (*loaded)->parameters()) EXPECT_FALSE(p.requires_grad());  // PEFT's is_trainable=False
  loaded->reset();
  PeftLoadOptions trainable;
  trainable.trainable = true;
  auto again = PeftModel::Load(dir, fresh, trainable);
  ASSERT_TRUE(again.ok()) << again.status();
  for (const auto& p : (*again)->parameters()) EXPECT_TRUE(p.requires_grad());
  EXPECT_FALSE(fs::exists(dir + ".partial-" + std::to_string(::getpid())));
}

TEST_P(LoraTest, AdapterConfigHasPeftFields) {
  CausalLM m = MakeBase(GetParam());
  LoraConfig c = Lora(AttentionTargets(GetParam()));
  c.dropout = 0.05;
  auto peft = MustCreateLora(m, c);
  ASSERT_NE(peft, nullptr);
  std::string dir = TempDir("lora_config") + "/adapter";
  ASSERT_TRUE(peft->Save(dir).ok());
  json j = json::parse(ReadFile(dir + "/adapter_config.json").value());
  const bool gpt2 = GetParam() == ModelFamily::kGpt2;
  EXPECT_EQ(j["peft_type"], "LORA");
  EXPECT_EQ(j["task_type"], "CAUSAL_LM");
  EXPECT_EQ(j["r"], 4);
  EXPECT_EQ(j["lora_alpha"], 8.0);
  EXPECT_EQ(j["lora_dropout"], 0.05);
  EXPECT_EQ(j["target_modules"].get<std::vector<std::string>>(), AttentionTargets(GetParam()));
  EXPECT_EQ(j["bias"], "none");
  EXPECT_EQ(j["fan_in_fan_out"], gpt2);
  EXPECT_EQ(j["base_model_name_or_path"], "tiny-base");
  EXPECT_EQ(j["inference_mode"], true);
  EXPECT_TRUE(j["modules_to_save"].is_null());
  EXPECT_EQ(j["use_rslora"], false);
  EXPECT_EQ(j["use_dora"], false);
  EXPECT_EQ(j["init_lora_weights"], true);
  EXPECT_TRUE(j["rank_pattern"].is_object() && j["rank_pattern"].empty());

  auto file = safetensors::File::Read(dir + "/adapter_model.safetensors");
  ASSERT_TRUE(file.ok()) << file.status();
  std::map<std::string, std::vector<int64_t>> shapes;
  for (const auto& name : file->names()) shapes[name] = file->Get(name)->shape;
  std::map<std::string, std::vector<int64_t>> want;
  for (int layer = 0; layer < 2; ++layer) {
    std::string l = std::to_string(layer);
    if (gpt2) {
      want["base_model.model.transformer.h." + l + ".attn.c_attn.lora_A.weight"] = {4, 32};
      want["base_model.model.transformer.h." + l + ".attn.c_attn.lora_B.weight"] = {96, 4};
    } else {
      want["base_model.model.model.layers." + l + ".self_attn.q_proj.lora_A.weight"] = {4, 32};
      want["base_model.model.model.layers." + l + ".self_attn.q_proj.lora_B.weight"] = {32, 4};
      want["base_model.model.model.layers." + l + ".self_attn.v_proj.lora_A.weight"] = {4, 32};
      want["base_model.model.model.layers." + l + ".self_attn.v_proj.lora_B.weight"] = {16, 4};
    }
  }
  EXPECT_EQ(shapes, want);
  EXPECT_EQ(file->Get(file->names()[0])->dtype, safetensors::Dtype::kF32);
}

TEST_P(LoraTest, AllLinearTargetsEveryProjectionButTheHead) {
  CausalLM m = MakeBase(GetParam());
  auto peft = MustCreateLora(m, Lora({"all-linear"}));
  ASSERT_NE(peft, nullptr);
  for (const auto& p : m->Projections()) EXPECT_NE(p.module->delta(), nullptr) << p.path;
  EXPECT_EQ(peft->named_parameters().size(), 2 * m->Projections().size());
  std::string dir = TempDir("all_linear") + "/adapter";
  ASSERT_TRUE(peft->Save(dir).ok());
  json j = json::parse(ReadFile(dir + "/adapter_config.json").value());
  std::vector<std::string> want =
      GetParam() == ModelFamily::kGpt2
          ? std::vector<std::string>{"c_attn", "c_fc", "c_proj"}
          : std::vector<std::string>{"down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj", "v_proj"};
  EXPECT_EQ(j["target_modules"].get<std::vector<std::string>>(), want);
}

TEST_P(LoraTest, DropoutOnlyInTrainingMode) {
  CausalLM m = MakeBase(GetParam());
  LoraConfig c = Lora(AttentionTargets(GetParam()));
  c.dropout = 0.5;
  auto peft = MustCreateLora(m, c);
  ASSERT_NE(peft, nullptr);
  Randomize(*peft, 25);
  Tensor base_path;
  {
    ScopedPeftDisabled off(*peft);
    base_path = Logits(m);
  }
  m->eval();
  Tensor eval1 = Logits(m), eval2 = Logits(m);
  EXPECT_TRUE(torch::equal(eval1, eval2));
  m->train();
  torch::manual_seed(1);
  Tensor train1 = Logits(m);
  Tensor train2 = Logits(m);
  EXPECT_GT(MaxDiff(train1, train2), 1e-4) << "dropout masks should differ between calls";
  EXPECT_GT(MaxDiff(train1, eval1), 1e-4);
  // Dropout touches the LoRA input only: disabled, training mode is the base exactly.
  ScopedPeftDisabled off(*peft);
  EXPECT_TRUE(torch::equal(Logits(m), base_path));
}

TEST_P(LoraTest, DropoutFromARunsOwnGeneratorRepeatsAndLeavesTheGlobalOneAlone) {
  CausalLM m = MakeBase(GetParam());
  LoraConfig c = Lora(AttentionTargets(GetParam()));
  c.dropout = 0.5;
  auto peft = MustCreateLora(m, c);
  ASSERT_NE(peft, nullptr);
  Randomize(*peft, 25);
  m->train();
  auto logits_from = [&](uint64_t seed) {
    peft->SetDropoutGenerator(at::detail::createCPUGenerator(seed));
    return std::pair{Logits(m), Logits(m)};
  };
  torch::manual_seed(3);
  const double global_next = torch::rand({1}).item<double>();
  torch::manual_seed(3);
  auto [first, second] = logits_from(7);
  EXPECT_EQ(torch::rand({1}).item<double>(), global_next) << "the masks came from the global generator";
  auto [again_first, again_second] = logits_from(7);
  EXPECT_TRUE(torch::equal(first, again_first));
  EXPECT_TRUE(torch::equal(second, again_second));
  EXPECT_GT(MaxDiff(first, second), 1e-4) << "the generator advances from mask to mask";
  EXPECT_GT(MaxDiff(first, logits_from(8).first), 1e-4);
  m->eval();
  Tensor eval = Logits(m);
  m->train();
  EXPECT_GT(MaxDiff(first, eval), 1e-4) << "dropout is on in training mode";
}

TEST_P(LoraTest, KvCacheDecodeEqualsFullForward) {
  CausalLM m = MakeBase(GetParam());
  auto peft = MustCreateLora(m, Lora({"all-linear"}));
  ASSERT_NE(peft, nullptr);
  Randomize(*peft, 26);
  torch::NoGradGuard g;
  Tensor ids = Batch();
  Tensor full = m->forward(ids).logits;
  KVCache cache;
  std::vector<Tensor> steps = {m->forward(ids.narrow(1, 0, 4), {}, {}, &cache).logits};
  for (int64_t t = 4; t < ids.size(1); ++t) steps.push_back(m->forward(ids.narrow(1, t, 1), {}, {}, &cache).logits);
  EXPECT_LT(MaxDiff(torch::cat(steps, 1), full), 1e-5);
}

TEST_P(LoraTest, DetachRestoresTheBase) {
  CausalLM m = MakeBase(GetParam());
  Tensor base = Logits(m);
  {
    auto peft = MustCreateLora(m, Lora(AttentionTargets(GetParam())));
    ASSERT_NE(peft, nullptr);
    Randomize(*peft, 27);
    peft->Detach();
    EXPECT_FALSE(peft->attached());
    EXPECT_TRUE(NoHooks(m));
    EXPECT_TRUE(torch::equal(Logits(m), base));
    for (const auto& p : m->parameters()) EXPECT_TRUE(p.requires_grad());
    EXPECT_EQ(peft->Merge().code(), absl::StatusCode::kFailedPrecondition);
    // A second PeftModel can attach now; destroying it detaches too.
    auto second = MustCreateLora(m, Lora(AttentionTargets(GetParam())));
    ASSERT_NE(second, nullptr);
    EXPECT_FALSE(NoHooks(m));
  }
  EXPECT_TRUE(NoHooks(m));
  for (const auto& p : m->parameters()) EXPECT_TRUE(p.requires_grad());
}

// ---- LoRA errors -----------------------------------------------------------------------------------------------

TEST(LoraErrors, UnknownTargetModuleIsInvalidArgument) {
  CausalLM m = MakeBase(ModelFamily::kGpt2);
  auto peft = PeftModel::CreateLora(m, Lora({"c_attn", "q_proj"}));
  EXPECT_EQ(peft.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(peft.status().message().find("\"q_proj\""), std::string::npos) << peft.status();
  EXPECT_NE(peft.status().message().find("c_fc"), std::string::npos) << "lists what exists: " << peft.status();
  EXPECT_TRUE(NoHooks(m));
}

TEST(LoraErrors, BadConfigIsInvalidArgument) {
  CausalLM m = MakeBase(ModelFamily::kLlama);
  LoraConfig zero_rank = Lora({"q_proj"});
  zero_rank.r = 0;
  EXPECT_EQ(PeftModel::CreateLora(m, zero_rank).status().code(), absl::StatusCode::kInvalidArgument);
  LoraConfig bad_dropout = Lora({"q_proj"});
  bad_dropout.dropout = 1.0;
  EXPECT_EQ(PeftModel::CreateLora(m, bad_dropout).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(PeftModel::CreateLora(m, Lora({})).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(PeftModel::CreateLora(m, Lora({"all-linear", "q_proj"})).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(PeftModel::CreateLora(CausalLM(nullptr), Lora({"q_proj"})).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(LoraErrors, SecondAttachIsFailedPrecondition) {
  CausalLM m = MakeBase(ModelFamily::kLlama);
  auto first = MustCreateLora(m, Lora({"q_proj"}));
  auto second = PeftModel::CreateLora(m, Lora({"q_proj", "k_proj"}));
  EXPECT_EQ(second.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(second.status().message().find("model.layers.0.self_attn.q_proj"), std::string::npos);
  EXPECT_EQ(PeftModel::CreateBottleneck(m, {}).status().code(), absl::StatusCode::kOk)
      << "layer adapters use other hook points";
}

TEST(LoraErrors, MissingFolderIsNotFound) {
  CausalLM m = MakeBase(ModelFamily::kLlama);
  EXPECT_EQ(PeftModel::Load("/nonexistent/adapter", m).status().code(), absl::StatusCode::kNotFound);
  std::string dir = TempDir("no_weights");
  ASSERT_TRUE(WriteFileAtomic(dir + "/adapter_config.json",
                              R"({"peft_type": "LORA", "r": 4, "lora_alpha": 8, "target_modules": ["q_proj"]})")
                  .ok());
  EXPECT_EQ(PeftModel::Load(dir, m).status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(NoHooks(m));
}

// Saves a Llama q/v adapter and returns its folder.
std::string SavedLlamaAdapter(const std::string& name) {
  CausalLM m = MakeBase(ModelFamily::kLlama);
  auto peft = MustCreateLora(m, Lora({"q_proj", "v_proj"}));
  std::string dir = TempDir(name) + "/adapter";
  EXPECT_TRUE(peft->Save(dir).ok());
  return dir;
}

// Rewrites the adapter's safetensors file through `edit` (which may drop, add or reshape entries).
void RewriteWeights(const std::string& dir, const std::function<void(std::vector<safetensors::TensorToWrite>&)>& edit) {
  std::string path = dir + "/adapter_model.safetensors";
  auto file = safetensors::File::Read(path);
  ASSERT_TRUE(file.ok());
  std::vector<safetensors::TensorToWrite> tensors;
  for (const auto& name : file->names()) {
    auto v = file->Get(name).value();
    tensors.push_back({name, v.dtype, v.shape, v.data, v.nbytes});
  }
  edit(tensors);
  ASSERT_TRUE(safetensors::Write(path, tensors).ok());
}

void ExpectLoadError(const std::string& dir, const std::string& needle, ModelFamily family = ModelFamily::kLlama) {
  CausalLM m = MakeBase(family);
  auto loaded = PeftModel::Load(dir, m);
  EXPECT_EQ(loaded.status().code(), absl::StatusCode::kInvalidArgument) << loaded.status();
  EXPECT_NE(loaded.status().message().find(needle), std::string::npos) << loaded.status();
  EXPECT_TRUE(NoHooks(m)) << "a failed load must detach";
  for (const auto& p : m->parameters()) EXPECT_TRUE(p.requires_grad()) << "a failed load must unfreeze";
}

TEST(LoraErrors, MissingTensorIsNamed) {
  std::string dir = SavedLlamaAdapter("missing_tensor");
  RewriteWeights(dir, [](auto& t) {
    t.erase(std::remove_if(t.begin(), t.end(),
                           [](const auto& x) {
                             return x.name == "base_model.model.model.layers.1.self_attn.v_proj.lora_B.weight";
                           }),
            t.end());
  });
  ExpectLoadError(dir, "missing tensors: base_model.model.model.layers.1.self_attn.v_proj.lora_B.weight");
}

TEST(LoraErrors, UnexpectedTensorIsNamed) {
  std::string dir = SavedLlamaAdapter("extra_tensor");
  static const std::vector<float> zeros(4 * 32, 0.0f);
  RewriteWeights(dir, [](auto& t) {
    t.push_back({"base_model.model.model.layers.0.self_attn.k_proj.lora_A.weight",
                 safetensors::Dtype::kF32,
                 {4, 32},
                 zeros.data(),
                 zeros.size() * sizeof(float)});
  });
  ExpectLoadError(dir, "unexpected tensor \"base_model.model.model.layers.0.self_attn.k_proj.lora_A.weight\"");
}

TEST(LoraErrors, ShapeMismatchIsNamed) {
  std::string dir = SavedLlamaAdapter("bad_shape");
  RewriteWeights(dir, [](auto& t) {
    for (auto& x : t) {
      if (x.name == "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight") x.shape = {8, 16};
    }
  });
  ExpectLoadError(dir,
                  "\"base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight\" has shape [8, 16], "
                  "expected [4, 32]");
}

// Rewrites one field of adapter_config.json.
void EditConfig(const std::string& dir, const std::string& field, const json& value) {
  json j = json::parse(ReadFile(dir + "/adapter_config.json").value());
  j[field] = value;
  ASSERT_TRUE(WriteFileAtomic(dir + "/adapter_config.json", j.dump()).ok());
}

TEST(LoraErrors, UnsupportedConfigIsNamed) {
  std::string dir = SavedLlamaAdapter("unsupported");
  EditConfig(dir, "peft_type", "IA3");
  ExpectLoadError(dir, "\"peft_type\" is \"IA3\"");
  EditConfig(dir, "peft_type", "LORA");
  EditConfig(dir, "use_dora", true);
  ExpectLoadError(dir, "\"use_dora\"");
  EditConfig(dir, "use_dora", false);
  EditConfig(dir, "target_modules", ".*q_proj");
  ExpectLoadError(dir, "\"target_modules\"");
  EditConfig(dir, "target_modules", json::array({"q_proj", "v_proj"}));
  EditConfig(dir, "modules_to_save", json::array({"lm_head"}));
  ExpectLoadError(dir, "\"modules_to_save\"");
  EditConfig(dir, "modules_to_save", nullptr);
  EditConfig(dir, "r", "four");
  ExpectLoadError(dir, "\"r\"");
}

TEST(LoraErrors, AdapterForAnotherFamilyNamesTheTarget) {
  ExpectLoadError(SavedLlamaAdapter("wrong_family"), "\"q_proj\" matches no projection of GPT2LMHeadModel",
                  ModelFamily::kGpt2);
}

// ---- Bottleneck adapters ---------------------------------------------------------------------------------------

class BottleneckTest : public Families {};
INSTANTIATE_TEST_SUITE_P(Family, BottleneckTest, kFamilies, FamilyName);

BottleneckConfig Bottleneck() {
  BottleneckConfig c;
  c.bottleneck_size = 8;
  c.seed = 5;
  c.non_linearity = "gelu";
  return c;
}

// ---- Reward models: the score head trains in full, as PEFT's task_type SEQ_CLS (modules_to_save ["score"]) -----

CausalLM MakeScoreModel(ModelFamily family) { return MakeBase(family, 7, HeadKind::kScore); }

// Trains `peft` a few Adam steps towards higher scores at every position; returns the scores after.
Tensor TrainScores(CausalLM& m, PeftModel& peft) {
  torch::optim::Adam opt(peft.parameters(), torch::optim::AdamOptions(1e-2));
  for (int step = 0; step < 5; ++step) {
    opt.zero_grad();
    Tensor loss = -m->forward(Batch()).logits.mean();
    loss.backward();
    opt.step();
  }
  return Logits(m);
}

class ScoreHeadTest : public Families {};
INSTANTIATE_TEST_SUITE_P(Family, ScoreHeadTest, kFamilies, FamilyName);

TEST_P(ScoreHeadTest, LoraTrainsTheHeadAndDisablingRestoresTheBase) {
  CausalLM m = MakeScoreModel(GetParam());
  CausalLM base_copy = CopyOf(m);
  auto snap = Snapshot(m);
  Tensor before = Logits(m);
  auto peft = MustCreateLora(m, Lora(AttentionTargets(GetParam())));
  ASSERT_NE(peft, nullptr);
  EXPECT_TRUE(torch::equal(Logits(m), before));  // step 0: unchanged
  auto named = peft->named_parameters();
  ASSERT_FALSE(named.empty());
  EXPECT_EQ(named.back().first, "base_model.model.score.weight");
  EXPECT_TRUE(named.back().second.requires_grad());
  Tensor trained = TrainScores(m, *peft);
  EXPECT_GT(MaxDiff(trained, before), 1e-3);
  // The trunk is untouched; only the head (and the LoRA tensors) moved.
  for (const auto& p : m->named_parameters()) {
    if (p.key() == "score.weight") {
      EXPECT_FALSE(torch::equal(p.value(), snap[p.key()]));
    } else {
      EXPECT_TRUE(torch::equal(p.value(), snap[p.key()])) << p.key();
    }
  }
  // Disabled: exactly the base reward model, head included; enabled again: the trained one.
  peft->SetEnabled(false);
  EXPECT_TRUE(torch::equal(Logits(m), before));
  peft->SetEnabled(true);
  EXPECT_TRUE(torch::equal(Logits(m), trained));

  // Saved as PEFT saves a SEQ_CLS adapter, and loaded onto the base it gives the trained scores.
  std::string dir = TempDir(GetParam() == ModelFamily::kGpt2 ? "score_gpt2" : "score_llama");
  ASSERT_TRUE(peft->Save(dir).ok());
  json config = json::parse(ReadFile(dir + "/adapter_config.json").value());
  EXPECT_EQ(config["task_type"], "SEQ_CLS");
  EXPECT_EQ(config["modules_to_save"], json::array({"score"}));
  auto file = safetensors::File::Read(dir + "/adapter_model.safetensors");
  ASSERT_TRUE(file.ok()) << file.status();
  std::vector<std::string> names = file->names();
  EXPECT_NE(std::find(names.begin(), names.end(), "base_model.model.score.weight"), names.end());
  auto loaded = PeftModel::Load(dir, base_copy);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_LT(MaxDiff(Logits(base_copy), trained), 1e-6);
  // Loaded for inference (PEFT's is_trainable=False), the head is frozen too.
  for (const auto& p : (*loaded)->parameters()) EXPECT_FALSE(p.requires_grad());
}

TEST_P(ScoreHeadTest, BottleneckAdaptersTrainTheHeadToo) {
  CausalLM m = MakeScoreModel(GetParam());
  Tensor before = Logits(m);
  auto peft = MustCreateBottleneck(m, Bottleneck());
  ASSERT_NE(peft, nullptr);
  EXPECT_TRUE(torch::equal(Logits(m), before));
  Tensor trained = TrainScores(m, *peft);
  EXPECT_GT(MaxDiff(trained, before), 1e-3);
  peft->SetEnabled(false);
  EXPECT_TRUE(torch::equal(Logits(m), before));
  peft->SetEnabled(true);
  std::string dir = TempDir(GetParam() == ModelFamily::kGpt2 ? "score_bn_gpt2" : "score_bn_llama");
  ASSERT_TRUE(peft->Save(dir).ok());
  CausalLM fresh = MakeScoreModel(GetParam());
  auto loaded = PeftModel::Load(dir, fresh);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_LT(MaxDiff(Logits(fresh), trained), 1e-6);
}

TEST(ScoreHeadErrors, LanguageModelAdapterOnARewardModelNamesTheHead) {
  // An adapter saved for a language model lacks the head a reward model trains: loading says which tensor.
  std::string dir = TempDir("lm_adapter_on_rm");
  CausalLM lm = MakeBase(ModelFamily::kLlama);
  auto peft = MustCreateLora(lm, Lora({"q_proj"}));
  ASSERT_TRUE(peft->Save(dir).ok());
  CausalLM rm = MakeScoreModel(ModelFamily::kLlama);
  auto loaded = PeftModel::Load(dir, rm);
  ASSERT_FALSE(loaded.ok());
  EXPECT_EQ(loaded.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(loaded.status().message(), "base_model.model.score.weight")) << loaded.status();
}

TEST_P(BottleneckTest, StepZeroEqualsBaseAndFreezesTheBase) {
  CausalLM m = MakeBase(GetParam());
  Tensor base = Logits(m);
  auto peft = MustCreateBottleneck(m, Bottleneck());
  ASSERT_NE(peft, nullptr);
  EXPECT_TRUE(torch::equal(Logits(m), base));
  // 2 layers x 2 sites x (8x32 + 8 + 32x8 + 32).
  int64_t count = 0;
  for (const auto& p : peft->parameters()) count += p.numel();
  EXPECT_EQ(count, 2 * 2 * (256 + 8 + 256 + 32));
  for (const auto& p : m->parameters()) EXPECT_FALSE(p.requires_grad());
  Tensor down = ParamNamed(*peft, "base_model.model." + m->Layers()[0].path + ".attn_adapter.down.weight");
  EXPECT_NEAR(down.std().item<double>(), 0.01, 0.002);
  EXPECT_EQ(ParamNamed(*peft, "base_model.model." + m->Layers()[0].path + ".attn_adapter.up.weight")
                .abs()
                .max()
                .item<double>(),
            0.0);
}

TEST_P(BottleneckTest, TrainingChangesOnlyAdaptersAndLowersTheLoss) {
  CausalLM m = MakeBase(GetParam());
  auto base = Snapshot(m);
  BottleneckConfig c = Bottleneck();
  c.init_std = 0.1;
  auto peft = MustCreateBottleneck(m, c);
  ASSERT_NE(peft, nullptr);
  std::vector<Tensor> before;
  for (const auto& p : peft->parameters()) before.push_back(p.detach().clone());
  torch::optim::Adam opt(peft->parameters(), torch::optim::AdamOptions(1e-2));
  Tensor ids = Batch();
  double first = 0, last = 0;
  for (int step = 0; step < 10; ++step) {
    opt.zero_grad();
    Tensor loss = LmLoss(m, ids);
    loss.backward();
    opt.step();
    (step == 0 ? first : last) = loss.item<double>();
  }
  EXPECT_LT(last, first - 0.3) << "first " << first << " last " << last;
  EXPECT_TRUE(SameAsSnapshot(m, base)) << "a base tensor changed";
  auto after = peft->parameters();
  for (size_t i = 0; i < after.size(); ++i) EXPECT_FALSE(torch::equal(after[i], before[i])) << i;
}

TEST_P(BottleneckTest, DisabledEqualsBaseAndMergeIsRefused) {
  CausalLM m = MakeBase(GetParam());
  Tensor base = Logits(m);
  auto peft = MustCreateBottleneck(m, Bottleneck());
  ASSERT_NE(peft, nullptr);
  Randomize(*peft, 31);
  Tensor tuned = Logits(m);
  EXPECT_GT(MaxDiff(tuned, base), 1e-2);
  {
    ScopedPeftDisabled off(*peft);
    EXPECT_TRUE(torch::equal(Logits(m), base));
  }
  EXPECT_TRUE(torch::equal(Logits(m), tuned));
  EXPECT_EQ(peft->Merge().code(), absl::StatusCode::kFailedPrecondition);
}

TEST_P(BottleneckTest, SaveLoadRoundTrip) {
  CausalLM m = MakeBase(GetParam());
  BottleneckConfig c = Bottleneck();
  c.after_attention = false;  // MLP only (Pfeiffer's placement)
  c.non_linearity = "relu";
  auto peft = MustCreateBottleneck(m, c);
  ASSERT_NE(peft, nullptr);
  Randomize(*peft, 32);
  Tensor tuned = Logits(m);
  std::string dir = TempDir("bottleneck_round_trip") + "/adapter";
  ASSERT_TRUE(peft->Save(dir).ok());

  json j = json::parse(ReadFile(dir + "/adapter_config.json").value());
  EXPECT_EQ(j["peft_type"], "BOTTLENECK");
  EXPECT_EQ(j["bottleneck_size"], 8);
  EXPECT_EQ(j["sites"], json::array({"mlp"}));
  EXPECT_EQ(j["non_linearity"], "relu");
  EXPECT_EQ(j["hidden_size"], 32);
  auto file = safetensors::File::Read(dir + "/adapter_model.safetensors");
  ASSERT_TRUE(file.ok());
  const std::string l1 = m->Layers()[1].path;
  std::vector<std::string> want;
  for (const auto& l : {m->Layers()[0].path, l1}) {
    for (const char* t : {"down.bias", "down.weight", "up.bias", "up.weight"}) {
      want.push_back("base_model.model." + l + ".mlp_adapter." + t);
    }
  }
  EXPECT_EQ(file->names(), want);
  EXPECT_EQ(file->Get("base_model.model." + l1 + ".mlp_adapter.down.weight")->shape, (std::vector<int64_t>{8, 32}));
  EXPECT_EQ(file->Get("base_model.model." + l1 + ".mlp_adapter.up.weight")->shape, (std::vector<int64_t>{32, 8}));

  CausalLM fresh = CopyOf(m);
  auto loaded = PeftModel::Load(dir, fresh);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ((*loaded)->type(), PeftType::kBottleneck);
  EXPECT_FALSE((*loaded)->bottleneck_config().after_attention);
  EXPECT_TRUE(torch::equal(Logits(fresh), tuned));
}

TEST(BottleneckErrors, BadConfigIsInvalidArgument) {
  CausalLM m = MakeBase(ModelFamily::kLlama);
  BottleneckConfig c = Bottleneck();
  c.bottleneck_size = 0;
  EXPECT_EQ(PeftModel::CreateBottleneck(m, c).status().code(), absl::StatusCode::kInvalidArgument);
  c = Bottleneck();
  c.after_attention = c.after_mlp = false;
  EXPECT_EQ(PeftModel::CreateBottleneck(m, c).status().code(), absl::StatusCode::kInvalidArgument);
  c = Bottleneck();
  c.non_linearity = "tanh";
  EXPECT_EQ(PeftModel::CreateBottleneck(m, c).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(NoHooks(m));
}

TEST(BottleneckErrors, AdapterForAnotherWidthIsNamed) {
  CausalLM m = MakeBase(ModelFamily::kLlama);
  auto peft = MustCreateBottleneck(m, Bottleneck());
  std::string dir = TempDir("bottleneck_width") + "/adapter";
  ASSERT_TRUE(peft->Save(dir).ok());
  ModelConfig wide = TinyLlamaConfig(50, 64, 2, 4, 2, 64);
  CausalLM other(wide);
  auto loaded = PeftModel::Load(dir, other);
  EXPECT_EQ(loaded.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(loaded.status().message().find("\"hidden_size\" is 32 but the model has 64"), std::string::npos)
      << loaded.status();
}

// ---- Against an independent Python reference ----------------------------------------------------------------------

struct ReferenceCase {
  ModelFamily family;
  PeftType type;
};

void PrintTo(const ReferenceCase& c, std::ostream* os) {
  *os << (c.family == ModelFamily::kGpt2 ? "GPT-2 " : "Llama ") << (c.type == PeftType::kLora ? "LoRA" : "bottleneck");
}

class Reference : public ::testing::TestWithParam<ReferenceCase> {};
INSTANTIATE_TEST_SUITE_P(Case, Reference,
                         ::testing::Values(ReferenceCase{ModelFamily::kLlama, PeftType::kLora},
                                           ReferenceCase{ModelFamily::kGpt2, PeftType::kLora},
                                           ReferenceCase{ModelFamily::kLlama, PeftType::kBottleneck},
                                           ReferenceCase{ModelFamily::kGpt2, PeftType::kBottleneck}),
                         [](const auto& info) {
                           return std::string(info.param.family == ModelFamily::kGpt2 ? "Gpt2" : "Llama") +
                                  (info.param.type == PeftType::kLora ? "Lora" : "Bottleneck");
                         });

// alignd writes the base folder and the adapter folder; the reference loads the base with transformers, puts LoRA on
// it with peft (a bottleneck adapter with its own forward hooks: peft has no such type) and recomputes the logits of
// a left-padded batch.
TEST_P(Reference, LogitsMatchFromTheSavedFolders) {
  const ReferenceCase rc = GetParam();
  std::string dir = TempDir(std::string("reference_") + (rc.family == ModelFamily::kGpt2 ? "gpt2" : "llama") +
                            (rc.type == PeftType::kLora ? "_lora" : "_bottleneck"));
  CausalLM m = MakeBase(rc.family);
  ASSERT_TRUE(SaveModelDir(dir + "/model", *m, nullptr).ok());
  std::unique_ptr<PeftModel> peft;
  if (rc.type == PeftType::kLora) {
    LoraConfig c = Lora({"all-linear"});
    c.use_rslora = rc.family == ModelFamily::kGpt2;  // scaling alpha / sqrt(r) on one of the two
    peft = MustCreateLora(m, c);
  } else {
    BottleneckConfig c = Bottleneck();
    if (rc.family == ModelFamily::kLlama) c.non_linearity = "relu";
    peft = MustCreateBottleneck(m, c);
  }
  ASSERT_NE(peft, nullptr);
  Randomize(*peft, 41, 0.2);
  ASSERT_TRUE(peft->Save(dir + "/adapter").ok());

  // Ours, from the folders: a fresh base from model.safetensors plus the loaded adapter.
  LoadOptions lo;
  lo.load_tokenizer = false;
  auto base = LoadModelDir(dir + "/model", lo);
  ASSERT_TRUE(base.ok()) << base.status();
  auto loaded = PeftModel::Load(dir + "/adapter", base->model);
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  Tensor ids =
      torch::tensor({0, 0, 0, 5, 9, 13, 2, 44, 11, 7, 3, 8, 31, 1, 20, 49, 0, 0, 6, 17, 23, 42, 38, 12}, torch::kLong)
          .reshape({3, 8});
  Tensor mask = torch::ones({3, 8}, torch::kLong);
  mask.index_put_({0, torch::indexing::Slice(0, 3)}, 0);
  mask.index_put_({2, torch::indexing::Slice(0, 2)}, 0);
  Tensor ours;
  {
    torch::NoGradGuard g;
    ours = base->model->forward(ids, mask).logits;
  }
  Tensor ids_f = ids.to(torch::kFloat), mask_f = mask.to(torch::kFloat);
  ASSERT_TRUE(
      safetensors::Write(dir + "/inputs.safetensors",
                         {{"input_ids", safetensors::Dtype::kF32, {3, 8}, ids_f.data_ptr(), ids_f.nbytes()},
                          {"attention_mask", safetensors::Dtype::kF32, {3, 8}, mask_f.data_ptr(), mask_f.nbytes()}})
          .ok());
  ASSERT_EQ(::access(ALIGND_PYTHON, X_OK), 0) << "ALIGND_PYTHON (" ALIGND_PYTHON
                                                 ") is not an executable: run "
                                                 "scripts/bootstrap";
  std::string cmd = std::string("'") + ALIGND_PYTHON + "' '" + ALIGND_SOURCE_DIR +
                    "/tests/reference/peft_reference.py' '" + dir + "/model' '" + dir + "/adapter' '" + dir +
                    "/inputs.safetensors' '" + dir + "/expected.safetensors'";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << "the reference failed (its output is above): " << cmd;
  auto file = safetensors::File::Read(dir + "/expected.safetensors");
  ASSERT_TRUE(file.ok()) << file.status();
  Tensor want = TensorFromView(file->Get("logits").value()).value();
  ASSERT_EQ(want.sizes(), ours.sizes());
  Tensor real = mask.to(torch::kBool);
  Tensor a = ours.index({real}), b = want.index({real});
  double rel = ((a - b).abs().max() / b.abs().max()).item<double>();
  EXPECT_LT(rel, 1e-5) << "max relative logit error";
  std::cout << "max relative logit error against the reference: " << rel << "\n";
  // And the adapter matters: the base alone is far off.
  Tensor plain;
  {
    ScopedPeftDisabled off(**loaded);
    torch::NoGradGuard g;
    plain = base->model->forward(ids, mask).logits.index({real});
  }
  EXPECT_GT(((plain - b).abs().max() / b.abs().max()).item<double>(), 1e-2);
}

}  // namespace
}  // namespace alignd
