#include "common/model/transformer.h"

#include <cmath>
#include <limits>
#include <map>
#include <set>

#include "common/model/perplexity.h"
#include "gtest/gtest.h"

namespace alignd {
namespace {

ModelConfig Llama() {
  ModelConfig c = TinyLlamaConfig(/*vocab=*/50, /*hidden=*/32, /*layers=*/2, /*heads=*/4, /*kv_heads=*/2, 64);
  c.tie_word_embeddings = false;
  return c;
}
ModelConfig Qwen2() {
  ModelConfig c = TinyLlamaConfig(50, 32, 2, 4, 1, 64);
  c.model_type = "qwen2";
  c.architecture = "Qwen2ForCausalLM";
  c.attention_bias = true;
  return c;
}
ModelConfig Gpt2() { return TinyGpt2Config(50, 32, 2, 4, 64); }

CausalLM Make(const ModelConfig& c, uint64_t seed = 7) {
  CausalLM m(c);
  m->InitWeights(seed);
  // Non-trivial biases and norms so that a wrong layout shows up in the numbers.
  torch::NoGradGuard g;
  torch::manual_seed(static_cast<int64_t>(seed));
  for (auto& p : m->parameters()) p.add_(torch::randn_like(p) * 0.05);
  return m;
}

torch::Tensor Ids(std::vector<int64_t> v) { return torch::tensor(v, torch::kLong).unsqueeze(0); }

class BothFamilies : public ::testing::TestWithParam<int> {
 protected:
  ModelConfig config() const { return GetParam() == 0 ? Llama() : GetParam() == 1 ? Qwen2() : Gpt2(); }
};
INSTANTIATE_TEST_SUITE_P(Families, BothFamilies, ::testing::Values(0, 1, 2), [](const auto& info) {
  return std::string(info.param == 0 ? "Llama" : info.param == 1 ? "Qwen2" : "Gpt2");
});

TEST_P(BothFamilies, ParameterNamesAreHuggingFaces) {
  CausalLM m = Make(config());
  std::set<std::string> names;
  int64_t count = 0;
  for (auto& p : m->named_parameters()) {
    names.insert(p.key());
    count += p.value().numel();
  }
  EXPECT_EQ(count, config().NumParameters());
  if (config().family == ModelFamily::kGpt2) {
    for (const char* n : {"transformer.wte.weight", "transformer.wpe.weight", "transformer.h.1.attn.c_attn.weight",
                          "transformer.h.0.mlp.c_fc.bias", "transformer.ln_f.weight"}) {
      EXPECT_TRUE(names.count(n)) << n;
    }
    EXPECT_EQ(m->named_parameters()["transformer.h.0.attn.c_attn.weight"].sizes(), (std::vector<int64_t>{32, 96}));
  } else {
    for (const char* n :
         {"model.embed_tokens.weight", "model.layers.1.self_attn.q_proj.weight", "model.layers.0.mlp.gate_proj.weight",
          "model.layers.0.post_attention_layernorm.weight", "model.norm.weight"}) {
      EXPECT_TRUE(names.count(n)) << n;
    }
    EXPECT_EQ(names.count("model.layers.0.self_attn.q_proj.bias"), config().attention_bias ? 1u : 0u);
    EXPECT_EQ(names.count("lm_head.weight"), config().tie_word_embeddings ? 0u : 1u);
  }
}

TEST_P(BothFamilies, KvCacheDecodeEqualsFullForward) {
  CausalLM m = Make(config());
  torch::NoGradGuard g;
  torch::Tensor ids = torch::randint(0, 50, {3, 12}, torch::kLong);
  torch::Tensor full = m->forward(ids).logits;
  KVCache cache;
  std::vector<torch::Tensor> steps = {m->forward(ids.narrow(1, 0, 5), {}, {}, &cache).logits};
  for (int64_t t = 5; t < 12; ++t) steps.push_back(m->forward(ids.narrow(1, t, 1), {}, {}, &cache).logits);
  EXPECT_EQ(cache.length(), 12);
  EXPECT_TRUE(torch::allclose(torch::cat(steps, 1), full, 1e-5, 1e-5));
}

TEST_P(BothFamilies, PackedSequencesGiveEachSequencesOwnForwardAndGradients) {
  // Three sequences end to end in one padding-free row: each one's hidden states (and the head on them) must equal
  // its own forward, so no sequence sees another's tokens; the gradient of a loss over the packed row must equal the
  // sum of the per-sequence gradients.
  CausalLM m = Make(config());
  std::vector<torch::Tensor> seqs = {torch::randint(0, 50, {1, 7}, torch::kLong),
                                     torch::randint(0, 50, {1, 1}, torch::kLong),
                                     torch::randint(0, 50, {1, 12}, torch::kLong)};
  const std::vector<int64_t> offsets = {0, 7, 8, 20};
  torch::Tensor packed_ids = torch::cat(seqs, 1);
  torch::Tensor weights = torch::randn({1, 20, 50});  // a fixed linear function of the logits to differentiate

  torch::Tensor packed = m->head(m->forward_packed_hidden(packed_ids, offsets));
  (packed * weights).sum().backward();
  std::map<std::string, torch::Tensor> packed_grads;
  for (const auto& p : m->named_parameters()) packed_grads[p.key()] = p.value().grad().clone();
  m->zero_grad();

  std::vector<torch::Tensor> alone;
  torch::Tensor total = torch::zeros({});
  for (size_t i = 0; i < seqs.size(); ++i) {
    alone.push_back(m->forward(seqs[i]).logits);
    total = total + (alone.back() * weights.narrow(1, offsets[i], offsets[i + 1] - offsets[i])).sum();
  }
  total.backward();
  EXPECT_TRUE(torch::allclose(packed, torch::cat(alone, 1), 1e-5, 1e-5));
  for (const auto& p : m->named_parameters()) {
    EXPECT_TRUE(torch::allclose(packed_grads[p.key()], p.value().grad(), 1e-4, 1e-5)) << p.key();
  }
}

TEST(Transformer, PackedForwardRejectsOffsetsThatDoNotCoverTheRow) {
  CausalLM m = Make(Llama());
  torch::NoGradGuard g;
  torch::Tensor ids = torch::randint(0, 50, {1, 6}, torch::kLong);
  EXPECT_THROW(m->forward_packed_hidden(ids, {0, 4}), c10::Error);               // stops short of the row's 6 tokens
  EXPECT_THROW(m->forward_packed_hidden(ids, {0, 4, 4, 6}), c10::Error);         // an empty sequence
  EXPECT_THROW(m->forward_packed_hidden(ids.view({2, 3}), {0, 3}), c10::Error);  // two rows
  EXPECT_EQ(m->forward_packed_hidden(ids, {0, 2, 6}).sizes(), (std::vector<int64_t>{1, 6, 32}));
}

TEST_P(BothFamilies, LeftPaddingDoesNotChangeResults) {
  CausalLM m = Make(config());
  torch::NoGradGuard g;
  torch::Tensor alone = m->forward(Ids({5, 9, 2, 33, 7})).logits;
  // The same sequence left-padded by three pad tokens in a batch with a longer row.
  torch::Tensor ids =
      torch::tensor({0, 0, 0, 5, 9, 2, 33, 7, 11, 12, 13, 14, 15, 16, 17, 18}, torch::kLong).view({2, 8});
  torch::Tensor mask = torch::tensor({0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1}, torch::kLong).view({2, 8});
  torch::Tensor batch = m->forward(ids, mask).logits;
  EXPECT_TRUE(torch::isfinite(batch).all().item<bool>());
  EXPECT_TRUE(torch::allclose(batch[0].narrow(0, 3, 5), alone[0], 1e-5, 1e-5));

  // And decoding after a left-padded prefill matches the unpadded run.
  KVCache cache;
  m->forward(ids.narrow(1, 0, 7), mask.narrow(1, 0, 7), {}, &cache);
  torch::Tensor next = m->forward(ids.narrow(1, 7, 1), mask, {}, &cache).logits;
  EXPECT_TRUE(torch::allclose(next[0][0], alone[0][4], 1e-5, 1e-5));
}

TEST_P(BothFamilies, RowsOfACacheCanBeDropped) {
  CausalLM m = Make(config());
  torch::NoGradGuard g;
  torch::Tensor ids = torch::randint(0, 50, {3, 6}, torch::kLong);
  KVCache cache;
  m->forward(ids.narrow(1, 0, 5), {}, {}, &cache);
  cache.SelectRows(torch::tensor({0, 2}, torch::kLong));
  torch::Tensor kept =
      m->forward(ids.index_select(0, torch::tensor({0, 2}, torch::kLong)).narrow(1, 5, 1), {}, {}, &cache).logits;
  torch::Tensor full = m->forward(ids).logits;
  EXPECT_TRUE(torch::allclose(kept.select(1, 0), full.index_select(0, torch::tensor({0, 2}, torch::kLong)).select(1, 5),
                              1e-5, 1e-5));
}

TEST_P(BothFamilies, InitIsDeterministicAndGradientsFlow) {
  CausalLM a(config()), b(config());
  a->InitWeights(3);
  b->InitWeights(3);
  for (auto& p : a->named_parameters()) {
    EXPECT_TRUE(torch::equal(p.value(), b->named_parameters()[p.key()])) << p.key();
  }
  torch::Tensor ids = torch::randint(0, 50, {2, 10}, torch::kLong);
  torch::Tensor loss = -TokenLogProbs(a->forward(ids).logits, ids).mean();
  loss.backward();
  for (auto& p : a->named_parameters()) {
    ASSERT_TRUE(p.value().grad().defined()) << p.key();
  }
  // A fresh model predicts close to uniform: loss near log(vocab).
  EXPECT_NEAR(loss.item<double>(), std::log(50.0), 0.3);
}

// at::scaled_dot_product_attention (with GQA and a left-padding mask) against attention written out: repeat each kv
// head for its query heads, softmax over the visible keys, weight the values.
TEST(Transformer, AttentionMatchesTheFormulaWithGqaAndLeftPadding) {
  torch::manual_seed(3);
  const int64_t b = 2, heads = 4, kv_heads = 2, t = 6, d = 8;
  torch::Tensor q = torch::randn({b, heads, t, d}), k = torch::randn({b, kv_heads, t, d});
  torch::Tensor v = torch::randn({b, kv_heads, t, d});
  torch::Tensor mask = torch::tensor({0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1}, torch::kLong).view({b, t});
  torch::Tensor allowed = BuildMask(mask, t, /*past=*/0);
  torch::Tensor out = Attend(q, k, v, allowed);
  ASSERT_EQ(out.sizes(), (std::vector<int64_t>{b, t, heads * d}));
  EXPECT_TRUE(torch::isfinite(out).all().item<bool>()) << "rows that see no key must stay finite";

  torch::Tensor kr = k.repeat_interleave(heads / kv_heads, 1), vr = v.repeat_interleave(heads / kv_heads, 1);
  torch::Tensor scores = torch::matmul(q, kr.transpose(-1, -2)) / std::sqrt(static_cast<double>(d));
  scores = scores.masked_fill(allowed.logical_not(), -std::numeric_limits<float>::infinity());
  torch::Tensor want = torch::matmul(torch::softmax(scores, -1), vr).transpose(1, 2).reshape({b, t, heads * d});
  // Query rows that see at least one key: row 0 from position 2 on, all of row 1. float32 sums of 6 terms: 1e-5.
  torch::Tensor seen = mask.to(torch::kBool);
  EXPECT_TRUE(torch::allclose(out.index({seen}), want.index({seen}), 1e-5, 1e-5))
      << (out.index({seen}) - want.index({seen})).abs().max().item<float>();
}

TEST(Transformer, GradientMatchesFiniteDifferences) {
  ModelConfig c = Llama();
  CausalLM m = Make(c);
  m->to(torch::kDouble);
  torch::Tensor ids = torch::randint(0, 50, {2, 6}, torch::kLong);
  auto loss_fn = [&]() { return -TokenLogProbs(m->forward(ids).logits, ids).sum(); };
  torch::Tensor w = m->named_parameters()["model.layers.1.self_attn.k_proj.weight"];
  loss_fn().backward();
  torch::Tensor grad = w.grad().clone();
  torch::NoGradGuard g;
  const double eps = 1e-6;
  for (int64_t idx : {0, 17, 130}) {
    double orig = w.view(-1)[idx].item<double>();
    w.view(-1)[idx].fill_(orig + eps);
    double up = loss_fn().item<double>();
    w.view(-1)[idx].fill_(orig - eps);
    double down = loss_fn().item<double>();
    w.view(-1)[idx].fill_(orig);
    EXPECT_NEAR((up - down) / (2 * eps), grad.view(-1)[idx].item<double>(), 1e-6);
  }
}

TEST(Transformer, ScoreHeadGivesOneValuePerPosition) {
  ModelConfig c = Llama();
  c.head = HeadKind::kScore;
  c.architecture = "LlamaForSequenceClassification";
  CausalLM m = Make(c);
  torch::Tensor out = m->forward(Ids({1, 2, 3, 4})).logits;
  EXPECT_EQ(out.sizes(), (std::vector<int64_t>{1, 4, 1}));
  EXPECT_TRUE(m->named_parameters().contains("score.weight"));
  EXPECT_FALSE(m->named_parameters().contains("lm_head.weight"));
}

TEST(Transformer, PositionIdsSkipLeftPadding) {
  torch::Tensor mask = torch::tensor({0, 0, 1, 1, 1, 1, 1, 1}, torch::kLong).view({2, 4});
  EXPECT_TRUE(torch::equal(PositionIdsFromMask(mask, 4), torch::tensor({0, 0, 0, 1, 0, 1, 2, 3}).view({2, 4})));
  EXPECT_TRUE(torch::equal(PositionIdsFromMask(mask, 1), torch::tensor({1, 3}).view({2, 1})));
}

}  // namespace
}  // namespace alignd
