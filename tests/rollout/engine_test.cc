#include "rollout/engine.h"

#include <torch/nn.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <memory>
#include <random>
#include <set>
#include <thread>
#include <vector>

#include "common/data/collate.h"
#include "common/model/model_config.h"
#include "common/text/tokenizer.h"
#include "common/text/utf8.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "rollout/logprob_gap.h"

namespace alignd::rollout {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr int32_t kVocab = 261;  // the byte tokenizer's
constexpr int32_t kEos = 258;
constexpr int32_t kImEnd = 260;

enum class Arch { kLlama, kGpt2 };

// Untied: with a tied lm_head a freshly initialised model mostly predicts its input token again, and greedy
// decoding repeats one token forever; an untied head gives varied continuations.
ModelConfig TinyConfig(Arch arch, int64_t hidden = 32, int64_t layers = 2, int64_t context = 96) {
  ModelConfig c = arch == Arch::kLlama ? TinyLlamaConfig(kVocab, hidden, layers, 4, 2, context)
                                       : TinyGpt2Config(kVocab, hidden, layers, 4, context);
  c.tie_word_embeddings = false;
  return c;
}

CausalLM TinyModel(Arch arch, uint64_t seed) {
  CausalLM model(TinyConfig(arch));
  model->InitWeights(seed);
  return model;
}

std::shared_ptr<const Tokenizer> ByteTokenizer() { return std::shared_ptr<const Tokenizer>(MakeByteTokenizer()); }

std::unique_ptr<Engine> MakeEngine(CausalLM model, const std::function<void(Engine::Options&)>& edit = nullptr) {
  Engine::Options options;
  options.model = std::move(model);
  options.tokenizer = ByteTokenizer();
  if (edit) edit(options);
  auto engine = Engine::Create(std::move(options));
  EXPECT_TRUE(engine.ok()) << engine.status();
  return engine.ok() ? std::move(engine).value() : nullptr;
}

// Random byte prompts of the given lengths, from a fixed seed.
std::vector<std::vector<int32_t>> Prompts(const std::vector<int>& lengths, uint32_t seed = 1) {
  std::mt19937 rng(seed);
  std::vector<std::vector<int32_t>> prompts;
  for (int n : lengths) {
    std::vector<int32_t> p;
    for (int i = 0; i < n; ++i) p.push_back(static_cast<int32_t>(rng() % 256));
    prompts.push_back(p);
  }
  return prompts;
}

// Greedy decoding with no stop tokens, so every sample runs max_new_tokens.
SamplingParams Greedy(int64_t max_new_tokens) {
  SamplingParams p;
  p.temperature = 0;
  p.max_new_tokens = max_new_tokens;
  p.stop_token_ids = std::vector<int32_t>{};
  return p;
}

SamplingParams Sampled(int64_t max_new_tokens, uint64_t seed, int64_t n = 1) {
  SamplingParams p;
  p.temperature = 1.0;
  p.max_new_tokens = max_new_tokens;
  p.stop_token_ids = std::vector<int32_t>{};
  p.seed = seed;
  p.n = n;
  return p;
}

std::vector<Sample> Gen(Engine& engine, const std::vector<std::vector<int32_t>>& prompts, const SamplingParams& p,
                        GenerateStats* stats = nullptr) {
  auto samples = engine.Generate(prompts, p, stats);
  EXPECT_TRUE(samples.ok()) << samples.status();
  return samples.ok() ? *samples : std::vector<Sample>();
}

std::vector<std::vector<int32_t>> Tokens(const std::vector<Sample>& samples) {
  std::vector<std::vector<int32_t>> out;
  for (const Sample& s : samples) out.push_back(s.token_ids);
  return out;
}

// The slow reference: one prompt, no padding, no cache; the whole sequence is run again for every new token.
struct Reference {
  std::vector<int32_t> tokens;
  std::vector<float> logprobs;
  std::vector<int32_t> runner_up;  // the second most likely token at each step
  double min_margin = 1e9;         // smallest gap between the two best logits over the steps
};

Reference GreedyReference(CausalLMImpl& model, std::vector<int32_t> ids, int64_t steps) {
  torch::NoGradGuard no_grad;
  Reference ref;
  for (int64_t s = 0; s < steps; ++s) {
    torch::Tensor input = torch::tensor(std::vector<int64_t>(ids.begin(), ids.end()), torch::kLong).view({1, -1});
    torch::Tensor logits = model.forward(input).logits[0][-1].to(torch::kFloat);
    auto [top, index] = logits.topk(2);
    auto token = static_cast<int32_t>(index[0].item<int64_t>());
    ref.tokens.push_back(token);
    ref.runner_up.push_back(static_cast<int32_t>(index[1].item<int64_t>()));
    ref.logprobs.push_back(torch::log_softmax(logits, -1)[token].item<float>());
    ref.min_margin = std::min(ref.min_margin, (top[0] - top[1]).item<double>());
    ids.push_back(token);
  }
  return ref;
}

void ExpectLogProbsNear(const std::vector<float>& got, const std::vector<float>& want, double tolerance = 1e-5) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) EXPECT_NEAR(got[i], want[i], tolerance) << "token " << i;
}

class EngineFamilies : public ::testing::TestWithParam<Arch> {};
INSTANTIATE_TEST_SUITE_P(Families, EngineFamilies, ::testing::Values(Arch::kLlama, Arch::kGpt2),
                         [](const auto& info) { return info.param == Arch::kLlama ? "Llama" : "Gpt2"; });

// ---- The KV cache against full recomputation ----

TEST_P(EngineFamilies, KvCacheDecodingEqualsFullRecomputation) {
  CausalLM model = TinyModel(GetParam(), 3);
  auto engine = MakeEngine(model);
  auto prompts = Prompts({3, 11, 6, 17});
  std::vector<Sample> samples = Gen(*engine, prompts, Greedy(12));
  ASSERT_EQ(samples.size(), prompts.size());
  for (size_t i = 0; i < prompts.size(); ++i) {
    Reference ref = GreedyReference(*model, prompts[i], 12);
    ASSERT_GT(ref.min_margin, 1e-4) << "near-tie in the reference; the comparison would be fragile";
    EXPECT_EQ(samples[i].prompt_index, static_cast<int64_t>(i));
    EXPECT_EQ(samples[i].token_ids, ref.tokens) << "prompt " << i;
    ExpectLogProbsNear(samples[i].logprobs, ref.logprobs);
    EXPECT_EQ(samples[i].finish_reason, FinishReason::kLength);
    EXPECT_THAT(samples[i].sampling_logprobs, ::testing::Each(0.0f));
  }
  // Not a degenerate model: varied continuations.
  std::set<int32_t> distinct;
  for (const Sample& s : samples) distinct.insert(s.token_ids.begin(), s.token_ids.end());
  EXPECT_GE(distinct.size(), 12u) << ::testing::PrintToString(Tokens(samples));
}

TEST_P(EngineFamilies, BatchedEqualsOneAtATime) {
  auto engine = MakeEngine(TinyModel(GetParam(), 4));
  auto prompts = Prompts({9, 2, 14, 5, 7}, 2);
  std::vector<Sample> batched = Gen(*engine, prompts, Greedy(10));
  ASSERT_EQ(batched.size(), prompts.size());
  for (size_t i = 0; i < prompts.size(); ++i) {
    std::vector<Sample> alone = Gen(*engine, {prompts[i]}, Greedy(10));
    ASSERT_EQ(alone.size(), 1u);
    EXPECT_EQ(batched[i].token_ids, alone[0].token_ids) << "prompt " << i;
    ExpectLogProbsNear(batched[i].logprobs, alone[0].logprobs);
  }
  // Split into batches of two rows: the same again.
  auto small = MakeEngine(TinyModel(GetParam(), 4), [](Engine::Options& o) { o.max_batch_rows = 2; });
  GenerateStats stats;
  EXPECT_EQ(Tokens(Gen(*small, prompts, Greedy(10), &stats)), Tokens(batched));
  EXPECT_EQ(stats.batches, 3);
}

// ---- Continuous batching ----

// Ten prompts of mixed lengths, each with its own budget of new tokens: the rows finish at different steps.
const std::vector<int> kMixedLengths = {3, 17, 6, 25, 9, 2, 12, 30, 5, 14};
const std::vector<int64_t> kMixedBudgets = {4, 20, 9, 2, 15, 11, 1, 7, 18, 5};

SamplingParams MixedGreedy() {
  SamplingParams p = Greedy(20);
  p.max_new_tokens_per_prompt = kMixedBudgets;
  return p;
}

std::unique_ptr<Engine> SmallBatchEngine(CausalLM model, int64_t rows, bool continuous = true) {
  return MakeEngine(std::move(model), [&](Engine::Options& o) {
    o.max_batch_rows = rows;
    o.continuous_batching = continuous;
  });
}

TEST_P(EngineFamilies, ContinuousBatchingEqualsEachPromptAlone) {
  CausalLM model = TinyModel(GetParam(), 18);
  auto engine = SmallBatchEngine(model, 3);
  auto prompts = Prompts(kMixedLengths, 13);
  GenerateStats stats;
  std::vector<Sample> got = Gen(*engine, prompts, MixedGreedy(), &stats);
  ASSERT_EQ(got.size(), prompts.size());
  for (size_t i = 0; i < prompts.size(); ++i) {
    std::vector<Sample> alone = Gen(*engine, {prompts[i]}, Greedy(kMixedBudgets[i]));
    ASSERT_EQ(alone.size(), 1u);
    EXPECT_EQ(got[i].token_ids.size(), static_cast<size_t>(kMixedBudgets[i])) << "prompt " << i;
    EXPECT_EQ(got[i].token_ids, alone[0].token_ids) << "prompt " << i;
    ExpectLogProbsNear(got[i].logprobs, alone[0].logprobs);
  }
  // Rows joined one or two at a time as others finished, not in ceil(10 / 3) = 4 groups.
  EXPECT_GT(stats.batches, 4);
  // Batch at a time gives the same tokens.
  EXPECT_EQ(Tokens(Gen(*SmallBatchEngine(model, 3, /*continuous=*/false), prompts, MixedGreedy())), Tokens(got));
}

TEST(ContinuousBatching, FewerDecodeStepsThanBatchAtATime) {
  CausalLM model = TinyModel(Arch::kLlama, 19);
  auto prompts = Prompts(kMixedLengths, 14);
  GenerateStats continuous, at_a_time;
  Gen(*SmallBatchEngine(model, 3), prompts, MixedGreedy(), &continuous);
  Gen(*SmallBatchEngine(model, 3, /*continuous=*/false), prompts, MixedGreedy(), &at_a_time);
  // Every row spends budget - 1 decode steps either way (its first token comes from the prefill).
  int64_t row_steps = 0;
  for (int64_t b : kMixedBudgets) row_steps += b - 1;
  EXPECT_EQ(continuous.decode_row_steps, row_steps);
  EXPECT_EQ(at_a_time.decode_row_steps, row_steps);
  // Batch at a time: the rows, sorted by prompt length, make groups of 3 with prompts of {2, 3, 5} {6, 9, 12}
  // {14, 17, 25} {30} tokens and budgets {11, 4, 18} {9, 15, 1} {5, 20, 2} {7}; a group decodes until its largest
  // budget is spent.
  EXPECT_EQ(at_a_time.batches, 4);
  EXPECT_EQ(at_a_time.decode_steps, (18 - 1) + (15 - 1) + (20 - 1) + (7 - 1));
  // Continuous: places freed by short rows are refilled, so the decode steps are far fewer and fuller.
  EXPECT_LT(continuous.decode_steps, at_a_time.decode_steps * 3 / 4);
  EXPECT_GT(static_cast<double>(continuous.decode_row_steps) / continuous.decode_steps,
            static_cast<double>(at_a_time.decode_row_steps) / at_a_time.decode_steps);
  EXPECT_EQ(continuous.generated_tokens, at_a_time.generated_tokens);
}

TEST(ContinuousBatching, PaddingFromRowsThatLeftIsCut) {
  // Two places and a stream of rows that overlap: a long row keeps the batch alive while short ones pass through,
  // so without cutting the padding left by finished rows the cache would widen by one column every step.
  CausalLM model = TinyModel(Arch::kGpt2, 20);
  auto engine = SmallBatchEngine(model, 2);
  std::vector<int> lengths;
  std::vector<int64_t> budgets;
  for (int i = 0; i < 16; ++i) {
    lengths.push_back(4 + (i * 7) % 11);
    budgets.push_back(i % 2 == 0 ? 12 : 5);
  }
  auto prompts = Prompts(lengths, 15);
  SamplingParams p = Greedy(12);
  p.max_new_tokens_per_prompt = budgets;
  GenerateStats stats;
  std::vector<Sample> got = Gen(*engine, prompts, p, &stats);
  ASSERT_EQ(got.size(), prompts.size());
  const int64_t longest_row = 14 + 12;             // longest prompt + largest budget
  EXPECT_GT(stats.decode_steps, 2 * longest_row);  // long enough for unbounded growth to show
  EXPECT_LE(stats.max_decode_width, longest_row * 4 / 3 + 1);
  for (size_t i = 0; i < prompts.size(); i += 5) {
    EXPECT_EQ(got[i].token_ids, Gen(*engine, {prompts[i]}, Greedy(budgets[i]))[0].token_ids) << "prompt " << i;
  }
}

// ---- Log-probs: what the learner recomputes ----

TEST_P(EngineFamilies, LogProbsEqualTheLearnersRecomputation) {
  CausalLM model = TinyModel(GetParam(), 5);
  auto engine = MakeEngine(model);
  auto prompts = Prompts({4, 13, 8}, 3);
  SamplingParams p = Sampled(16, 21, /*n=*/2);
  p.temperature = 0.7;
  p.top_k = 40;
  p.top_p = 0.9;
  std::vector<Sample> samples = Gen(*engine, prompts, p);
  ASSERT_EQ(samples.size(), 6u);
  auto reference = RecomputeLogProbs(*model, prompts, samples, /*batch_size=*/4);
  ASSERT_TRUE(reference.ok()) << reference.status();
  auto gap = MaxLogProbGap(samples, *reference);
  ASSERT_TRUE(gap.ok()) << gap.status();
  EXPECT_LT(*gap, 1e-5);
  // The sampling distribution (T = 0.7, top-k, top-p) is another distribution: its log-probs differ.
  double differ = 0;
  for (const Sample& s : samples) {
    ASSERT_EQ(s.sampling_logprobs.size(), s.token_ids.size());
    for (size_t t = 0; t < s.token_ids.size(); ++t)
      differ = std::max<double>(differ, std::abs(s.sampling_logprobs[t] - s.logprobs[t]));
  }
  EXPECT_GT(differ, 0.1);
  // The check notices a wrong log-prob.
  samples[3].logprobs[2] += 0.01f;
  EXPECT_NEAR(*MaxLogProbGap(samples, *reference), 0.01, 1e-4);
}

TEST(LogProbGap, MismatchedSizesAreInvalid) {
  Sample s;
  s.token_ids = {1, 2};
  s.logprobs = {-1.0f, -2.0f};
  EXPECT_EQ(MaxLogProbGap({s}, {}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(MaxLogProbGap({s}, {{-1.0f}}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_DOUBLE_EQ(*MaxLogProbGap({s}, {{-1.5f, -2.0f}}), 0.5);
  CausalLM model = TinyModel(Arch::kLlama, 1);
  s.prompt_index = 1;
  EXPECT_EQ(RecomputeLogProbs(*model, {{1, 2}}, {s}).status().code(), absl::StatusCode::kInvalidArgument);
}

// ---- Seeds ----

TEST(Seeds, SameSeedSameSamplesDifferentSeedDifferentSamples) {
  auto engine = MakeEngine(TinyModel(Arch::kLlama, 6));
  auto prompts = Prompts({5, 9}, 4);
  auto a = Tokens(Gen(*engine, prompts, Sampled(12, 100, 3)));
  ASSERT_EQ(a.size(), 6u);
  EXPECT_EQ(Tokens(Gen(*engine, prompts, Sampled(12, 100, 3))), a);
  auto b = Tokens(Gen(*engine, prompts, Sampled(12, 101, 3)));
  for (size_t i = 0; i < a.size(); ++i) EXPECT_NE(a[i], b[i]) << "sample " << i;
  // The n samples of one prompt are not copies of each other.
  EXPECT_NE(a[0], a[1]);
  EXPECT_NE(a[1], a[2]);
}

TEST(Seeds, SamplesDoNotDependOnHowRowsAreBatched) {
  auto prompts = Prompts({5, 9, 3}, 5);
  auto big = MakeEngine(TinyModel(Arch::kGpt2, 7));
  auto one_row = MakeEngine(TinyModel(Arch::kGpt2, 7), [](Engine::Options& o) { o.max_batch_rows = 1; });
  auto all = Tokens(Gen(*big, prompts, Sampled(12, 9, 2)));
  EXPECT_EQ(Tokens(Gen(*one_row, prompts, Sampled(12, 9, 2))), all);
  // Prompt 0 alone gets what it got in the batch.
  auto alone = Tokens(Gen(*big, {prompts[0]}, Sampled(12, 9, 2)));
  EXPECT_EQ(alone, std::vector<std::vector<int32_t>>(all.begin(), all.begin() + 2));
  // Prompts 1 and 2 sent on their own, as the rest of the batch (a stream's second part, a second rollout worker),
  // get what they got in it; as a batch of their own they draw other samples.
  SamplingParams rest = Sampled(12, 9, 2);
  rest.first_prompt_index = 1;
  const std::vector<std::vector<int32_t>> want(all.begin() + 2, all.end());
  EXPECT_EQ(Tokens(Gen(*big, {prompts[1], prompts[2]}, rest)), want);
  EXPECT_NE(Tokens(Gen(*big, {prompts[1], prompts[2]}, Sampled(12, 9, 2))), want);
}

TEST(Seeds, SampledRowsJoiningMidBatchGetTheirOwnStreams) {
  CausalLM model = TinyModel(Arch::kLlama, 21);
  auto prompts = Prompts(kMixedLengths, 16);
  SamplingParams p = Sampled(20, 33, /*n=*/2);
  p.max_new_tokens_per_prompt = kMixedBudgets;
  auto all = Tokens(Gen(*MakeEngine(model), prompts, p));
  EXPECT_EQ(Tokens(Gen(*SmallBatchEngine(model, 3), prompts, p)), all);
  EXPECT_EQ(Tokens(Gen(*SmallBatchEngine(model, 3, /*continuous=*/false), prompts, p)), all);
  // Prompt 0 alone (its index, hence its seeds, unchanged) gets what it got when it joined the batch.
  SamplingParams one = p;
  one.max_new_tokens_per_prompt = {kMixedBudgets[0]};
  EXPECT_EQ(Tokens(Gen(*MakeEngine(model), {prompts[0]}, one)),
            std::vector<std::vector<int32_t>>(all.begin(), all.begin() + 2));
  // Log-probs of rows that joined a running batch are still the learner's.
  std::vector<Sample> samples = Gen(*SmallBatchEngine(model, 3), prompts, p);
  auto reference = RecomputeLogProbs(*model, prompts, samples, /*batch_size=*/4);
  ASSERT_TRUE(reference.ok()) << reference.status();
  EXPECT_LT(*MaxLogProbGap(samples, *reference), 1e-5);
}

TEST(Seeds, TopK1AndTinyTopPEqualGreedy) {
  auto engine = MakeEngine(TinyModel(Arch::kLlama, 8));
  auto prompts = Prompts({6, 10}, 6);
  std::vector<Sample> greedy = Gen(*engine, prompts, Greedy(12));
  SamplingParams top_k = Sampled(12, 1);
  top_k.top_k = 1;
  SamplingParams top_p = Sampled(12, 2);
  top_p.top_p = 1e-6;
  for (const SamplingParams& p : {top_k, top_p}) {
    std::vector<Sample> got = Gen(*engine, prompts, p);
    ASSERT_EQ(got.size(), greedy.size());
    for (size_t i = 0; i < got.size(); ++i) {
      EXPECT_EQ(got[i].token_ids, greedy[i].token_ids);
      ExpectLogProbsNear(got[i].logprobs, greedy[i].logprobs);
      EXPECT_THAT(got[i].sampling_logprobs, ::testing::Each(0.0f));  // one token kept: probability 1
    }
  }
}

// ---- Stopping ----

TEST(Stopping, StopTokenEndsTheSampleAndIsKeptInTheTokens) {
  CausalLM model = TinyModel(Arch::kLlama, 9);
  auto engine = MakeEngine(model);
  auto prompt = Prompts({7}, 7)[0];
  Reference ref = GreedyReference(*model, prompt, 16);
  // A stop token whose first occurrence is not at the start.
  size_t first = 0;
  for (size_t i = 2; i < ref.tokens.size() && first == 0; ++i) {
    if (std::find(ref.tokens.begin(), ref.tokens.begin() + static_cast<std::ptrdiff_t>(i), ref.tokens[i]) ==
        ref.tokens.begin() + static_cast<std::ptrdiff_t>(i)) {
      first = i;
    }
  }
  ASSERT_GT(first, 0u);
  SamplingParams p = Greedy(16);
  p.stop_token_ids = std::vector<int32_t>{ref.tokens[first]};
  std::vector<Sample> got = Gen(*engine, {prompt}, p);
  ASSERT_EQ(got.size(), 1u);
  std::vector<int32_t> expected(ref.tokens.begin(), ref.tokens.begin() + static_cast<std::ptrdiff_t>(first) + 1);
  EXPECT_EQ(got[0].token_ids, expected);
  EXPECT_EQ(got[0].logprobs.size(), expected.size());
  EXPECT_EQ(got[0].finish_reason, FinishReason::kStop);
  expected.pop_back();
  EXPECT_EQ(got[0].text, ValidUtf8(engine->tokenizer().Decode(expected, /*skip_special_tokens=*/true)));
  EXPECT_EQ(FinishReasonName(got[0].finish_reason), "stop");
}

TEST(Stopping, StopStringCutsTheText) {
  CausalLM model = TinyModel(Arch::kGpt2, 10);
  auto engine = MakeEngine(model);
  auto prompt = Prompts({5}, 8)[0];
  Reference ref = GreedyReference(*model, prompt, 20);
  const Tokenizer& tok = engine->tokenizer();
  std::string full = tok.Decode(ref.tokens, true);
  ASSERT_GE(full.size(), 8u);
  std::string stop = full.substr(5, 2);
  const size_t cut = full.find(stop);
  size_t needed = 1;  // tokens until the text first contains the stop string
  while (tok.Decode(std::vector<int32_t>(ref.tokens.begin(), ref.tokens.begin() + static_cast<std::ptrdiff_t>(needed)),
                    true)
             .find(stop) == std::string::npos) {
    ++needed;
  }
  SamplingParams p = Greedy(20);
  p.stop_strings = {"never appears \x01\x02\x03", stop};
  std::vector<Sample> got = Gen(*engine, {prompt}, p);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].text, ValidUtf8(full.substr(0, cut)));
  EXPECT_EQ(got[0].token_ids,
            std::vector<int32_t>(ref.tokens.begin(), ref.tokens.begin() + static_cast<std::ptrdiff_t>(needed)));
  EXPECT_EQ(got[0].finish_reason, FinishReason::kStop);
}

// A byte-level model can spell bytes that are no UTF-8 (a random one does, often): the sample's text reads them as
// U+FFFD, whoever reads it (a reward in-process or on a reward server, a proto3 string), and its tokens stay exact.
TEST(Text, IsValidUtf8WhateverBytesTheTokensSpell) {
  auto engine = MakeEngine(TinyModel(Arch::kLlama, 12));
  std::vector<Sample> got = Gen(*engine, Prompts({3, 5, 7, 9}), Sampled(24, 5, /*n=*/2));
  ASSERT_EQ(got.size(), 8u);
  int replaced = 0;
  for (const Sample& s : got) {
    const std::string bytes = engine->tokenizer().Decode(s.token_ids, /*skip_special_tokens=*/true);
    EXPECT_EQ(s.text, ValidUtf8(bytes));
    EXPECT_EQ(ValidUtf8(s.text), s.text);
    if (s.text != bytes) ++replaced;
  }
  EXPECT_GT(replaced, 0) << "no sample spelled an invalid byte: the test checks nothing";
}

TEST(Stopping, MaxNewTokensEndsWithLength) {
  auto engine = MakeEngine(TinyModel(Arch::kLlama, 11));
  std::vector<Sample> got = Gen(*engine, Prompts({4, 8}), Greedy(5));
  ASSERT_EQ(got.size(), 2u);
  for (const Sample& s : got) {
    EXPECT_EQ(s.token_ids.size(), 5u);
    EXPECT_EQ(s.finish_reason, FinishReason::kLength);
    EXPECT_EQ(FinishReasonName(s.finish_reason), "length");
  }
}

TEST(Stopping, MinNewTokensSuppressesEarlyStops) {
  CausalLM model = TinyModel(Arch::kLlama, 12);
  auto engine = MakeEngine(model);
  auto prompt = Prompts({6}, 9)[0];
  Reference ref = GreedyReference(*model, prompt, 1);
  SamplingParams p = Greedy(10);
  p.stop_token_ids = std::vector<int32_t>{ref.tokens[0]};
  std::vector<Sample> early = Gen(*engine, {prompt}, p);
  ASSERT_EQ(early.size(), 1u);
  EXPECT_THAT(early[0].token_ids, ElementsAre(ref.tokens[0]));
  EXPECT_EQ(early[0].finish_reason, FinishReason::kStop);

  p.min_new_tokens = 4;
  std::vector<Sample> got = Gen(*engine, {prompt}, p);
  ASSERT_EQ(got.size(), 1u);
  ASSERT_GE(got[0].token_ids.size(), 5u);
  for (size_t i = 0; i < 4; ++i) EXPECT_NE(got[0].token_ids[i], ref.tokens[0]) << i;
  EXPECT_EQ(got[0].token_ids[0], ref.runner_up[0]);  // the best token that is not the stop token
  // logprobs stay the raw model's, suppression or not.
  auto reference = RecomputeLogProbs(*model, {prompt}, got);
  ASSERT_TRUE(reference.ok());
  EXPECT_LT(*MaxLogProbGap(got, *reference), 1e-5);
}

TEST(Stopping, FinishedRowsLeaveTheBatch) {
  CausalLM model = TinyModel(Arch::kLlama, 13);
  auto engine = MakeEngine(model);
  auto prompts = Prompts({6, 4, 9, 12, 5}, 10);
  Reference a = GreedyReference(*model, prompts[0], 1);
  // A second prompt whose first 10 greedy tokens avoid the first prompt's first token.
  int other = -1;
  Reference b;
  for (size_t i = 1; i < prompts.size() && other < 0; ++i) {
    b = GreedyReference(*model, prompts[i], 10);
    if (std::find(b.tokens.begin(), b.tokens.end(), a.tokens[0]) == b.tokens.end()) other = static_cast<int>(i);
  }
  ASSERT_GE(other, 0);
  SamplingParams p = Greedy(10);
  p.stop_token_ids = std::vector<int32_t>{a.tokens[0]};
  GenerateStats stats;
  std::vector<Sample> got = Gen(*engine, {prompts[0], prompts[static_cast<size_t>(other)]}, p, &stats);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].token_ids.size(), 1u);
  EXPECT_EQ(got[1].token_ids, b.tokens);
  ExpectLogProbsNear(got[1].logprobs, b.logprobs);
  // The first row leaves after its first token: 9 decode steps with one row, not 2 x 9.
  EXPECT_EQ(stats.decode_steps, 9);
  EXPECT_EQ(stats.decode_row_steps, 9);
  EXPECT_EQ(stats.generated_tokens, 11);
  EXPECT_EQ(stats.batches, 1);
  const auto longest = static_cast<int64_t>(std::max(prompts[0].size(), prompts[static_cast<size_t>(other)].size()));
  EXPECT_EQ(stats.prefill_tokens, 2 * longest);
}

TEST(Stopping, SamplesOfOnePromptSharePrefill) {
  auto engine = MakeEngine(TinyModel(Arch::kGpt2, 14));
  GenerateStats stats;
  std::vector<Sample> got = Gen(*engine, Prompts({3, 8}), Sampled(4, 1, /*n=*/3), &stats);
  ASSERT_EQ(got.size(), 6u);
  EXPECT_EQ(stats.prefill_tokens, 2 * 8);  // two distinct prompts, padded to 8
  EXPECT_EQ(stats.decode_row_steps, 6 * 3);
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_EQ(got[i].prompt_index, static_cast<int64_t>(i / 3));
    EXPECT_EQ(got[i].sample_index, static_cast<int64_t>(i % 3));
  }
}

// ---- Defaults, prompts, versions ----

TEST(Defaults, StopTokensComeFromTokenizerAndTemplate) {
  auto stops = [](const std::string& name) {
    return MakeEngine(TinyModel(Arch::kLlama, 1), [&](Engine::Options& o) { o.chat_template = name; })
        ->default_stop_token_ids();
  };
  EXPECT_THAT(stops("chatml"), ElementsAre(kEos, kImEnd));
  EXPECT_THAT(stops("llama3"), ElementsAre(kEos));  // <|eot_id|> is several byte tokens
  EXPECT_THAT(stops("plain"), ElementsAre(kEos));
  EXPECT_THAT(stops("raw"), ElementsAre(kEos));
  auto custom = MakeEngine(TinyModel(Arch::kLlama, 1),
                           [](Engine::Options& o) { o.default_stop_token_ids = std::vector<int32_t>{10}; });
  EXPECT_THAT(custom->default_stop_token_ids(), ElementsAre(10));
}

TEST(Defaults, DefaultStopTokensEndSamples) {
  // A GPT-2 whose final hidden state is all ones and whose <|im_end|> row of lm_head is too: it predicts <|im_end|>.
  CausalLM model = TinyModel(Arch::kGpt2, 2);
  {
    torch::NoGradGuard no_grad;
    for (auto& item : model->named_parameters()) {
      if (item.key() == "transformer.ln_f.weight") item.value().zero_();
      if (item.key() == "transformer.ln_f.bias") item.value().fill_(1.0);
      if (item.key() == "lm_head.weight") item.value()[kImEnd].fill_(1.0);
    }
  }
  auto engine = MakeEngine(model);
  SamplingParams p;
  p.temperature = 0;
  p.max_new_tokens = 8;
  std::vector<Sample> got = Gen(*engine, Prompts({5}), p);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_THAT(got[0].token_ids, ElementsAre(kImEnd));
  EXPECT_EQ(got[0].finish_reason, FinishReason::kStop);
  EXPECT_EQ(got[0].text, "");
}

TEST(Prompts, StringsAreRenderedAsAUserTurn) {
  auto engine = MakeEngine(TinyModel(Arch::kLlama, 1));
  auto tok = MakeByteTokenizer();
  EXPECT_EQ(engine->EncodePrompt("hi"), tok->Encode("<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"));
  Turns conversation = Turns::Messages({{"system", "be brief"}, {"user", "hi"}});
  EXPECT_EQ(engine->EncodePrompt(conversation),
            tok->Encode("<|im_start|>system\nbe brief<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n"
                        "<|im_start|>assistant\n"));
  auto raw = MakeEngine(TinyModel(Arch::kLlama, 1), [](Engine::Options& o) { o.chat_template = "raw"; });
  EXPECT_THAT(raw->EncodePrompt("hi"), ElementsAre(257, 'h', 'i'));

  auto text = engine->GenerateText({"hi", "2 + 2 ="}, Greedy(6));
  ASSERT_TRUE(text.ok()) << text.status();
  EXPECT_EQ(Tokens(*text),
            Tokens(Gen(*engine, {engine->EncodePrompt("hi"), engine->EncodePrompt("2 + 2 =")}, Greedy(6))));
}

TEST(Versions, SamplesCarryTheWeightVersion) {
  CausalLM model = TinyModel(Arch::kLlama, 15);
  auto engine = MakeEngine(model, [](Engine::Options& o) { o.weight_version = 3; });
  auto prompts = Prompts({6});
  std::vector<Sample> before = Gen(*engine, prompts, Greedy(8));
  ASSERT_EQ(before.size(), 1u);
  EXPECT_EQ(before[0].weight_version, 3u);

  ASSERT_TRUE(engine
                  ->UpdateWeights(4,
                                  [](CausalLMImpl& m) {
                                    torch::NoGradGuard no_grad;
                                    m.InitWeights(99);
                                    return absl::OkStatus();
                                  })
                  .ok());
  EXPECT_EQ(engine->weight_version(), 4u);
  std::vector<Sample> after = Gen(*engine, prompts, Greedy(8));
  EXPECT_EQ(after[0].weight_version, 4u);
  EXPECT_NE(after[0].token_ids, before[0].token_ids);

  absl::Status failed = engine->UpdateWeights(5, [](CausalLMImpl&) { return absl::AbortedError("transfer lost"); });
  EXPECT_EQ(failed.code(), absl::StatusCode::kAborted);
  EXPECT_EQ(engine->weight_version(), 4u);

  ASSERT_TRUE(engine->SetModel(TinyModel(Arch::kLlama, 15), 9).ok());
  std::vector<Sample> swapped = Gen(*engine, prompts, Greedy(8));
  EXPECT_EQ(swapped[0].weight_version, 9u);
  EXPECT_EQ(swapped[0].token_ids, before[0].token_ids);
}

TEST(Versions, ConcurrentSwapsNeverMixVersionsWithinACall) {
  CausalLM v1 = TinyModel(Arch::kLlama, 16), v2 = TinyModel(Arch::kGpt2, 17);
  auto prompts = Prompts({4, 7, 3}, 11);
  auto expected1 = Tokens(Gen(*MakeEngine(v1), prompts, Greedy(4)));
  auto expected2 = Tokens(Gen(*MakeEngine(v2), prompts, Greedy(4)));
  ASSERT_NE(expected1, expected2);
  auto engine = MakeEngine(v1, [](Engine::Options& o) {
    o.weight_version = 1;
    o.max_batch_rows = 1;  // several batches per call
  });
  std::thread swapper([&] {
    for (int i = 0; i < 30; ++i) ASSERT_TRUE(engine->SetModel(i % 2 == 0 ? v2 : v1, i % 2 == 0 ? 2 : 1).ok());
  });
  for (int i = 0; i < 30; ++i) {
    std::vector<Sample> got = Gen(*engine, prompts, Greedy(4));
    ASSERT_EQ(got.size(), 3u);
    const uint64_t version = got[0].weight_version;
    for (const Sample& s : got) ASSERT_EQ(s.weight_version, version);
    EXPECT_EQ(Tokens(got), version == 1 ? expected1 : expected2) << "call " << i << " version " << version;
  }
  swapper.join();
}

// ---- Bad requests ----

void ExpectInvalid(const absl::StatusOr<std::vector<Sample>>& result, const std::string& field) {
  EXPECT_EQ(result.status().code(), absl::StatusCode::kInvalidArgument) << field << ": " << result.status();
  EXPECT_THAT(std::string(result.status().message()), HasSubstr(field));
}

TEST(BadRequests, EachIsInvalidArgumentNamingTheField) {
  auto engine = MakeEngine(TinyModel(Arch::kLlama, 1));  // context 96
  auto ok = Prompts({4, 5});
  ExpectInvalid(engine->Generate({}, Greedy(4)), "prompts: no prompts");
  ExpectInvalid(engine->Generate({{1, 2}, {}}, Greedy(4)), "prompts[1]: empty prompt");
  ExpectInvalid(engine->Generate({{1, 2}, {3, 4, kVocab}}, Greedy(4)), "prompts[1][2]: token id 261");
  ExpectInvalid(engine->Generate({{1, 2}, {3, -1}}, Greedy(4)), "prompts[1][1]");
  ExpectInvalid(engine->Generate({std::vector<int32_t>(90, 1)}, Greedy(7)),
                "prompts[0]: 90 prompt tokens + max_new_tokens 7 exceed the model context of 96");
  EXPECT_TRUE(engine->Generate({std::vector<int32_t>(90, 1)}, Greedy(6)).ok());
  SamplingParams p = Greedy(4);
  p.n = 0;
  ExpectInvalid(engine->Generate(ok, p), "n must be >= 1");
  p = Greedy(4);
  p.temperature = -1;
  ExpectInvalid(engine->Generate(ok, p), "temperature");
  p = Sampled(4, 1);
  p.top_p = 0;
  ExpectInvalid(engine->Generate(ok, p), "top_p");
  p.top_p = 1.01;
  ExpectInvalid(engine->Generate(ok, p), "top_p");
  p = Greedy(4);
  p.stop_token_ids = std::vector<int32_t>{kVocab + 5};
  ExpectInvalid(engine->Generate(ok, p), "stop_token_ids[0]");
  p = Greedy(8);
  p.max_new_tokens_per_prompt = {3};
  ExpectInvalid(engine->Generate(ok, p), "max_new_tokens_per_prompt: 1 values for 2 prompts");
  p.max_new_tokens_per_prompt = {3, 9};
  ExpectInvalid(engine->Generate(ok, p), "max_new_tokens_per_prompt[1]");
  p.max_new_tokens_per_prompt = {3, 0};
  ExpectInvalid(engine->Generate(ok, p), "max_new_tokens_per_prompt[1]");
  p = Greedy(8);
  p.max_new_tokens_per_prompt = {8, 6};
  ExpectInvalid(engine->Generate({{1, 2}, std::vector<int32_t>(91, 1)}, p),
                "prompts[1]: 91 prompt tokens + max_new_tokens 6 exceed");
  p = Greedy(0);
  ExpectInvalid(engine->Generate(ok, p), "max_new_tokens");
  ExpectInvalid(engine->GenerateText({}, Greedy(4)), "prompts");
}

TEST(BadRequests, CreateChecksItsOptions) {
  auto create = [](const std::function<void(Engine::Options&)>& edit) {
    Engine::Options o;
    o.model = TinyModel(Arch::kLlama, 1);
    o.tokenizer = ByteTokenizer();
    edit(o);
    return Engine::Create(std::move(o)).status();
  };
  EXPECT_TRUE(create([](Engine::Options&) {}).ok());
  EXPECT_EQ(create([](Engine::Options& o) { o.model = CausalLM(nullptr); }).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(create([](Engine::Options& o) { o.tokenizer = nullptr; }).code(), absl::StatusCode::kInvalidArgument);
  absl::Status unknown = create([](Engine::Options& o) { o.chat_template = "jinja"; });
  EXPECT_EQ(unknown.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(unknown.message()), HasSubstr("jinja"));
  EXPECT_EQ(create([](Engine::Options& o) { o.max_batch_rows = 0; }).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(create([](Engine::Options& o) { o.default_stop_token_ids = std::vector<int32_t>{999}; }).code(),
            absl::StatusCode::kInvalidArgument);
  ModelConfig score = TinyConfig(Arch::kLlama);
  score.head = HeadKind::kScore;
  EXPECT_EQ(create([&](Engine::Options& o) { o.model = CausalLM(score); }).code(),
            absl::StatusCode::kFailedPrecondition);
  auto engine = MakeEngine(TinyModel(Arch::kLlama, 1));
  EXPECT_EQ(engine->SetModel(CausalLM(score), 2).code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(engine->weight_version(), 0u);
}

// ---- Throughput (run by hand: --gtest_also_run_disabled_tests) ----

// Greedy tokens per second for the `alignd init` default model (~0.85M parameters), batch 8, 128 new tokens, with
// the engine's KV cache and with full recomputation of the left-padded batch at every step.
TEST(Throughput, DISABLED_KvCacheAgainstRecomputation) {
  CausalLM model(TinyConfig(Arch::kLlama, 128, 4, 512));
  model->InitWeights(1);
  auto engine = MakeEngine(model);
  auto prompts = Prompts({12, 20, 16, 24, 9, 30, 18, 14}, 12);
  const int64_t steps = 128;
  GenerateStats stats;
  auto start = std::chrono::steady_clock::now();
  std::vector<Sample> cached = Gen(*engine, prompts, Greedy(steps), &stats);
  double cached_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  torch::NoGradGuard no_grad;
  Batch batch = CollatePrompts(prompts, CollateOptions()).value();
  torch::Tensor ids = batch.input_ids, mask = batch.attention_mask;
  start = std::chrono::steady_clock::now();
  for (int64_t s = 0; s < steps; ++s) {
    torch::Tensor next = model->forward(ids, mask).logits.select(1, -1).argmax(-1, true);
    ids = torch::cat({ids, next}, 1);
    mask = torch::cat({mask, torch::ones_like(next)}, 1);
  }
  double full_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const int64_t width = batch.input_ids.size(1);
  for (size_t i = 0; i < prompts.size(); ++i) {
    torch::Tensor row = ids[static_cast<int64_t>(i)].narrow(0, width, steps);
    std::vector<int32_t> tokens(row.data_ptr<int64_t>(), row.data_ptr<int64_t>() + steps);
    EXPECT_EQ(cached[i].token_ids, tokens) << "prompt " << i;
  }
  const double tokens = 8.0 * steps;
  std::printf(
      "params %lld, threads %d: KV cache %.0f tokens/s (%.2fs; prefill %.3fs), recompute %.0f tokens/s "
      "(%.2fs), speed-up %.1fx\n",
      static_cast<long long>(model->config().NumParameters()), at::get_num_threads(), tokens / cached_s, cached_s,
      stats.prefill_seconds, tokens / full_s, full_s, full_s / cached_s);
}

}  // namespace
}  // namespace alignd::rollout
