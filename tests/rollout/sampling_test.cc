#include "rollout/sampling.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include <cmath>
#include <set>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace alignd::rollout {
namespace {

using ::testing::HasSubstr;

// Logits of the distribution [0.5, 0.3, 0.2] (one row).
at::Tensor Logits532() { return at::log(at::tensor({0.5f, 0.3f, 0.2f})).unsqueeze(0); }

std::vector<double> Probs(const at::Tensor& log_probs) {
  at::Tensor p = log_probs.exp().squeeze(0).to(at::kDouble);
  return std::vector<double>(p.data_ptr<double>(), p.data_ptr<double>() + p.numel());
}

void ExpectProbs(const at::Tensor& log_probs, const std::vector<double>& want) {
  std::vector<double> got = Probs(log_probs);
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) EXPECT_NEAR(got[i], want[i], 1e-6) << "token " << i;
}

TEST(SamplingLogProbs, TemperatureOneIsTheModelDistribution) {
  ExpectProbs(SamplingLogProbs(Logits532(), 1.0, 0, 1.0), {0.5, 0.3, 0.2});
}

TEST(SamplingLogProbs, TemperatureSharpensAndFlattens) {
  // T = 0.5 squares the probabilities before normalising: 0.25, 0.09, 0.04 over 0.38.
  ExpectProbs(SamplingLogProbs(Logits532(), 0.5, 0, 1.0), {0.25 / 0.38, 0.09 / 0.38, 0.04 / 0.38});
  // T = 2 takes square roots.
  const double a = std::sqrt(0.5), b = std::sqrt(0.3), c = std::sqrt(0.2);
  ExpectProbs(SamplingLogProbs(Logits532(), 2.0, 0, 1.0), {a / (a + b + c), b / (a + b + c), c / (a + b + c)});
}

TEST(SamplingLogProbs, TopKKeepsTheKMostLikely) {
  ExpectProbs(SamplingLogProbs(Logits532(), 1.0, 2, 1.0), {0.625, 0.375, 0.0});
  ExpectProbs(SamplingLogProbs(Logits532(), 1.0, 1, 1.0), {1.0, 0.0, 0.0});
  ExpectProbs(SamplingLogProbs(Logits532(), 1.0, 3, 1.0), {0.5, 0.3, 0.2});
  ExpectProbs(SamplingLogProbs(Logits532(), 1.0, 50, 1.0), {0.5, 0.3, 0.2});  // k beyond the vocabulary: off
}

TEST(SamplingLogProbs, TopPKeepsTheSmallestNucleusReachingP) {
  ExpectProbs(SamplingLogProbs(Logits532(), 1.0, 0, 0.6), {0.625, 0.375, 0.0});
  ExpectProbs(SamplingLogProbs(Logits532(), 1.0, 0, 0.5), {1.0, 0.0, 0.0});  // 0.5 alone reaches 0.5
  ExpectProbs(SamplingLogProbs(Logits532(), 1.0, 0, 0.81), {0.5, 0.3, 0.2});
  ExpectProbs(SamplingLogProbs(Logits532(), 1.0, 0, 1e-9), {1.0, 0.0, 0.0});  // never empty
}

TEST(SamplingLogProbs, RowsAreIndependentAndOrderDoesNotMatter) {
  // Row 1 is row 0 permuted: the nucleus follows the probabilities, not the positions.
  at::Tensor logits = at::log(at::tensor({0.5f, 0.3f, 0.2f, 0.2f, 0.5f, 0.3f})).view({2, 3});
  at::Tensor lp = SamplingLogProbs(logits, 1.0, 0, 0.6).exp();
  EXPECT_NEAR(lp[0][0].item<double>(), 0.625, 1e-6);
  EXPECT_NEAR(lp[1][1].item<double>(), 0.625, 1e-6);
  EXPECT_NEAR(lp[1][2].item<double>(), 0.375, 1e-6);
  EXPECT_EQ(lp[1][0].item<double>(), 0.0);
}

TEST(DrawTokens, FrequenciesFollowTheDistribution) {
  at::Tensor lp = SamplingLogProbs(Logits532(), 1.0, 0, 1.0);
  std::vector<at::Generator> gen = {at::detail::createCPUGenerator(11)};
  std::vector<int> counts(3, 0);
  const int draws = 20000;
  for (int i = 0; i < draws; ++i) ++counts[static_cast<size_t>(DrawTokens(lp, gen)[0])];
  EXPECT_NEAR(counts[0] / static_cast<double>(draws), 0.5, 0.015);
  EXPECT_NEAR(counts[1] / static_cast<double>(draws), 0.3, 0.015);
  EXPECT_NEAR(counts[2] / static_cast<double>(draws), 0.2, 0.015);
}

TEST(DrawTokens, SameSeedSameTokensAndRowsUseTheirOwnGenerator) {
  at::Tensor lp = SamplingLogProbs(at::zeros({2, 50}), 1.0, 0, 1.0);  // uniform over 50 tokens
  auto run = [&](uint64_t seed0, uint64_t seed1) {
    std::vector<at::Generator> gens = {at::detail::createCPUGenerator(seed0), at::detail::createCPUGenerator(seed1)};
    std::vector<int64_t> out;
    for (int i = 0; i < 20; ++i) {
      for (int64_t t : DrawTokens(lp, gens)) out.push_back(t);
    }
    return out;
  };
  std::vector<int64_t> a = run(1, 2);
  EXPECT_EQ(a, run(1, 2));
  EXPECT_NE(a, run(1, 3));
  // Row 0's stream does not depend on row 1's seed.
  std::vector<int64_t> b = run(1, 3);
  for (size_t i = 0; i < a.size(); i += 2) EXPECT_EQ(a[i], b[i]) << i;
}

TEST(DrawTokens, OnlyKeptTokensAreDrawn) {
  at::Tensor lp = SamplingLogProbs(at::randn({1, 100}, at::detail::createCPUGenerator(5)), 1.0, 3, 1.0);
  std::set<int64_t> kept;
  for (int64_t i = 0; i < 100; ++i) {
    if (std::isfinite(lp[0][i].item<double>())) kept.insert(i);
  }
  ASSERT_EQ(kept.size(), 3u);
  std::vector<at::Generator> gen = {at::detail::createCPUGenerator(6)};
  std::set<int64_t> drawn;
  for (int i = 0; i < 300; ++i) drawn.insert(DrawTokens(lp, gen)[0]);
  EXPECT_EQ(drawn, kept);
}

TEST(RowSeed, DistinctRowsGetDistinctSeeds) {
  std::set<uint64_t> seeds;
  for (int64_t p = 0; p < 20; ++p) {
    for (int64_t s = 0; s < 20; ++s) seeds.insert(RowSeed(7, p, s));
  }
  EXPECT_EQ(seeds.size(), 400u);
  EXPECT_EQ(RowSeed(7, 3, 4), RowSeed(7, 3, 4));
  EXPECT_NE(RowSeed(7, 3, 4), RowSeed(8, 3, 4));
  EXPECT_NE(RowSeed(0, 0, 1), RowSeed(0, 1, 0));
}

// ---- Validation ----

void ExpectInvalid(const SamplingParams& p, const std::string& field) {
  absl::Status s = ValidateSamplingParams(p);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << field << ": " << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr(field));
}

TEST(ValidateSamplingParams, DefaultsAreValid) { EXPECT_TRUE(ValidateSamplingParams(SamplingParams()).ok()); }

TEST(ValidateSamplingParams, EachBadFieldIsNamed) {
  SamplingParams p;
  p.temperature = -0.1;
  ExpectInvalid(p, "temperature");
  p = SamplingParams();
  p.temperature = std::nan("");
  ExpectInvalid(p, "temperature");
  p = SamplingParams();
  p.top_p = 0;
  ExpectInvalid(p, "top_p");
  p.top_p = 1.5;
  ExpectInvalid(p, "top_p");
  p = SamplingParams();
  p.top_k = -1;
  ExpectInvalid(p, "top_k");
  p = SamplingParams();
  p.n = 0;
  ExpectInvalid(p, "n must be");
  p = SamplingParams();
  p.max_new_tokens = 0;
  ExpectInvalid(p, "max_new_tokens");
  p = SamplingParams();
  p.min_new_tokens = p.max_new_tokens + 1;
  ExpectInvalid(p, "min_new_tokens");
  p = SamplingParams();
  p.stop_strings = {"ok", ""};
  ExpectInvalid(p, "stop_strings[1]");
  p = SamplingParams();
  p.first_prompt_index = -1;
  ExpectInvalid(p, "first_prompt_index");
}

}  // namespace
}  // namespace alignd::rollout
