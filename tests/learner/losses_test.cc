// Each loss against values worked out by hand; the working is in the comments.
#include "learner/losses.h"

#include <cmath>

#include "gtest/gtest.h"

namespace alignd::learner {
namespace {

torch::Tensor T(std::vector<double> v) { return torch::tensor(v, torch::kDouble); }
double D(const torch::Tensor& t) { return t.item<double>(); }

TEST(Losses, NextTokenLogProbsOfUniformLogits) {
  // Zero logits over V = 4: every token has log-prob -ln 4; column 0 predicts nothing and is 0.
  torch::Tensor lp = NextTokenLogProbs(torch::zeros({1, 3, 4}, torch::kDouble), torch::tensor({{1, 2, 3}}));
  EXPECT_DOUBLE_EQ(D(lp[0][0]), 0.0);
  EXPECT_NEAR(D(lp[0][1]), -std::log(4.0), 1e-12);
  EXPECT_NEAR(D(lp[0][2]), -std::log(4.0), 1e-12);
}

// The head's log-probs and entropies computed in full, for the chunked function to match.
HeadLogProbs FullHeadLogProbs(const torch::Tensor& hidden, const torch::Tensor& weight, const torch::Tensor& targets) {
  torch::Tensor lsm = at::log_softmax(at::mm(hidden, weight.t()), -1);
  return {lsm.gather(1, targets.unsqueeze(1)).squeeze(1), -(lsm.exp() * lsm).sum(1)};
}

TEST(Losses, ChunkedHeadLogProbsEqualTheFullLogitsWithGradients) {
  // 11 rows over a 37-entry vocabulary, in chunks of 1, 4 (the last one short) and all at once: the log-probs, the
  // entropies and the gradients of a loss mixing both must be the full computation's.
  torch::manual_seed(3);
  torch::Tensor hidden = torch::randn({11, 8}, torch::kDouble), weight = torch::randn({37, 8}, torch::kDouble);
  torch::Tensor targets = torch::randint(0, 37, {11}, torch::kLong);
  torch::Tensor a = torch::randn({11}, torch::kDouble), b = torch::randn({11}, torch::kDouble);
  auto grads = [&](auto compute) {
    torch::Tensor h = hidden.clone().requires_grad_(), w = weight.clone().requires_grad_();
    HeadLogProbs r = compute(h, w);
    ((r.logp.to(torch::kDouble) * a).sum() + (r.entropy.to(torch::kDouble) * b).sum()).backward();
    return std::vector<torch::Tensor>{r.logp.detach().to(torch::kDouble), r.entropy.detach().to(torch::kDouble),
                                      h.grad(), w.grad()};
  };
  auto full = grads([&](const torch::Tensor& h, const torch::Tensor& w) { return FullHeadLogProbs(h, w, targets); });
  for (int64_t chunk : {1, 4, 0}) {
    auto chunked = grads([&](const torch::Tensor& h, const torch::Tensor& w) {
      return ComputeHeadLogProbs(h, w, targets, /*with_entropy=*/true, chunk);
    });
    // The chunked function's softmax runs in float32: float32 rounding of values of order 1 to 10.
    for (size_t i = 0; i < full.size(); ++i) {
      EXPECT_TRUE(torch::allclose(chunked[i], full[i], 1e-5, 1e-5))
          << "chunk " << chunk << ", output " << i << ": " << (chunked[i] - full[i]).abs().max();
    }
  }
  // Only the log-probs used: the entropy's gradient is skipped, and the weight may be frozen.
  torch::Tensor h = hidden.clone().requires_grad_();
  (ComputeHeadLogProbs(h, weight, targets, false, 4).logp.to(torch::kDouble) * a).sum().backward();
  torch::Tensor h2 = hidden.clone().requires_grad_();
  (FullHeadLogProbs(h2, weight, targets).logp * a).sum().backward();
  EXPECT_TRUE(torch::allclose(h.grad(), h2.grad(), 1e-5, 1e-5));
}

TEST(Losses, HeadNllSumEqualsTheFullCrossEntropyWithGradients) {
  // The gradients are made in the forward and scaled by the incoming gradient (here 0.25) in the backward.
  torch::manual_seed(5);
  torch::Tensor hidden = torch::randn({9, 8}, torch::kDouble), weight = torch::randn({29, 8}, torch::kDouble);
  torch::Tensor targets = torch::randint(0, 29, {9}, torch::kLong);
  torch::Tensor h = hidden.clone().requires_grad_(), w = weight.clone().requires_grad_();
  torch::Tensor full = -FullHeadLogProbs(h, w, targets).logp.sum();
  (full * 0.25).backward();
  for (int64_t chunk : {1, 4, 0}) {
    torch::Tensor h2 = hidden.clone().requires_grad_(), w2 = weight.clone().requires_grad_();
    torch::Tensor nll = HeadNllSum(h2, w2, targets, chunk);
    EXPECT_NEAR(D(nll), D(full), 1e-4) << "chunk " << chunk;
    (nll * 0.25).backward();
    EXPECT_TRUE(torch::allclose(h2.grad(), h.grad(), 1e-5, 1e-5)) << "chunk " << chunk;
    EXPECT_TRUE(torch::allclose(w2.grad(), w.grad(), 1e-5, 1e-5)) << "chunk " << chunk;
  }
  // A frozen weight gets no gradient, and without grad mode only the value is made.
  torch::Tensor h3 = hidden.clone().requires_grad_();
  (HeadNllSum(h3, weight, targets, 4) * 0.25).backward();
  EXPECT_TRUE(torch::allclose(h3.grad(), h.grad(), 1e-5, 1e-5));
  torch::NoGradGuard no_grad;
  EXPECT_NEAR(D(HeadNllSum(hidden, weight, targets)), D(full), 1e-4);
  // The masked form sums the trained tokens only: NextTokenLogProbs on the full logits, times the mask.
  torch::Tensor h4 = torch::randn({2, 5, 8}, torch::kDouble);
  torch::Tensor ids = torch::randint(0, 29, {2, 5}, torch::kLong);
  torch::Tensor mask = torch::tensor({0, 1, 1, 0, 0, 0, 0, 1, 1, 1}, torch::kLong).view({2, 5});
  EXPECT_NEAR(D(MaskedNextTokenNllSum(h4, weight, ids, mask)),
              D(-(NextTokenLogProbs(at::matmul(h4, weight.t()), ids) * mask).sum()), 1e-4);
}

TEST(Losses, MaskedNextTokenLogProbsEqualTheFullLogitsOnTrainedTokens) {
  torch::manual_seed(4);
  torch::Tensor hidden = torch::randn({2, 5, 6}, torch::kDouble), weight = torch::randn({13, 6}, torch::kDouble);
  torch::Tensor ids = torch::randint(0, 13, {2, 5}, torch::kLong);
  torch::Tensor mask = torch::tensor({0, 0, 1, 1, 0, 0, 1, 1, 1, 1}, torch::kLong).view({2, 5});
  torch::Tensor h = hidden.clone().requires_grad_(), h2 = hidden.clone().requires_grad_();
  HeadLogProbs r = MaskedNextTokenLogProbs(h, weight, ids, mask, true, 2);
  torch::Tensor logits = at::matmul(h2, weight.t());
  torch::Tensor expected = NextTokenLogProbs(logits, ids) * mask;
  EXPECT_TRUE(torch::allclose(r.logp.to(torch::kDouble), expected, 1e-5, 1e-5));
  // Entropy at column t is that of the distribution at t - 1; zero where the mask is.
  torch::Tensor lsm = at::log_softmax(logits, -1);
  torch::Tensor ent = -(lsm.exp() * lsm).sum(-1);
  EXPECT_NEAR(D(r.entropy[1][4]), D(ent[1][3]), 1e-5);
  EXPECT_NEAR(D(r.entropy[0][2]), D(ent[0][1]), 1e-5);
  EXPECT_EQ(D(r.entropy[0][4]), 0.0);
  r.logp.sum().backward();
  expected.sum().backward();
  EXPECT_TRUE(torch::allclose(h.grad(), h2.grad(), 1e-5, 1e-5));
  // Nothing trained: zeros, and a gradient of zeros rather than an error.
  torch::Tensor h3 = hidden.clone().requires_grad_();
  HeadLogProbs none = MaskedNextTokenLogProbs(h3, weight, ids, torch::zeros_like(mask));
  EXPECT_EQ(D(none.logp.abs().sum()), 0.0);
  none.logp.sum().backward();
  EXPECT_EQ(D(h3.grad().abs().sum()), 0.0);
}

TEST(Losses, BradleyTerry) {
  // -log σ(1) = log(1 + e^-1) = 0.313261687518; with margin 0.5: log(1 + e^-0.5) = 0.474076984180.
  EXPECT_NEAR(D(BradleyTerryLoss(T({1.0}), T({0.0}))), 0.313261687518223, 1e-12);
  EXPECT_NEAR(D(BradleyTerryLoss(T({1.0}), T({0.0}), 0.5)), 0.474076984180107, 1e-12);
}

TEST(Losses, DpoAndConservativeDpo) {
  // π_c = -10, π_r = -12, ref_c = ref_r = -11, β = 0.1: z = 0.1 * ((-10 + 12) - 0) = 0.2.
  // DPO: -log σ(0.2) = log(1 + e^-0.2) = 0.598138869382. Rewards: 0.1 * (-10 + 11) = 0.1, 0.1 * (-12 + 11) = -0.1.
  PreferenceLoss l = DpoLoss(T({-10}), T({-12}), T({-11}), T({-11}), 0.1);
  EXPECT_NEAR(D(l.loss), 0.598138869381592, 1e-12);
  EXPECT_NEAR(D(l.chosen_rewards[0]), 0.1, 1e-12);
  EXPECT_NEAR(D(l.rejected_rewards[0]), -0.1, 1e-12);
  // cDPO with ε = 0.1: 0.9 * 0.598138869382 + 0.1 * log(1 + e^0.2) (= 0.798138869382) = 0.618138869382.
  EXPECT_NEAR(D(DpoLoss(T({-10}), T({-12}), T({-11}), T({-11}), 0.1, 0.1).loss), 0.618138869381592, 1e-12);
}

TEST(Losses, RewardAwareDpoFitsTheMarginToTheScoreGap) {
  // z = 0.2 as above. Scores 2 apart at reward_scale 0.5: label t = σ(1) = 0.731058578630005;
  // loss = -(t log σ(0.2) + (1 - t) log σ(-0.2)) = 0.798138869382 - 0.2 t = 0.651927153656.
  PreferenceLoss l = RewardAwareDpoLoss(T({-10}), T({-12}), T({-11}), T({-11}), 0.1, T({2}), 0.5);
  EXPECT_NEAR(D(l.loss), 0.6519271536555908, 1e-12);
  EXPECT_NEAR(D(l.chosen_rewards[0]), 0.1, 1e-12);
  EXPECT_NEAR(D(l.rejected_rewards[0]), -0.1, 1e-12);
  // A gap far beyond the margin is DPO's label 1; label 1 - ε is conservative DPO's ε.
  EXPECT_NEAR(D(RewardAwareDpoLoss(T({-10}), T({-12}), T({-11}), T({-11}), 0.1, T({100}), 1).loss), 0.598138869381592,
              1e-12);
  const double eps_gap = -std::log(0.1 / 0.9);  // σ(gap) = 0.9
  EXPECT_NEAR(D(RewardAwareDpoLoss(T({-10}), T({-12}), T({-11}), T({-11}), 0.1, T({eps_gap}), 1).loss),
              D(DpoLoss(T({-10}), T({-12}), T({-11}), T({-11}), 0.1, 0.1).loss), 1e-12);
  // The loss is lowest where the implied margin z equals reward_scale x gap (0.2 = 0.1 x 2): no gradient there, where
  // DPO still pushes the margin up.
  torch::Tensor pc = T({-10}).requires_grad_(true);
  RewardAwareDpoLoss(pc, T({-12}), T({-11}), T({-11}), 0.1, T({2}), 0.1).loss.backward();
  EXPECT_NEAR(D(pc.grad()[0]), 0.0, 1e-12);
  torch::Tensor dpo_pc = T({-10}).requires_grad_(true);
  DpoLoss(dpo_pc, T({-12}), T({-11}), T({-11}), 0.1).loss.backward();
  EXPECT_LT(D(dpo_pc.grad()[0]), -0.04);  // -β σ(-z) = -0.045
  // ReferencePreferenceLoss picks it for "sigmoid" with reward_scale > 0.
  EXPECT_NEAR(D(ReferencePreferenceLoss("sigmoid", T({-10}), T({-12}), T({-1}), T({-1}), T({-11}), T({-11}), 0.1, 0.0,
                                        0.0, nullptr, 0.5, T({2}))
                    .loss),
              0.6519271536555908, 1e-12);
}

TEST(Losses, Ipo) {
  // h = (π_c - π_r) - (ref_c - ref_r) = 2 - 0 = 2; β = 0.1 so 1/(2β) = 5; loss = (2 - 5)² = 9.
  EXPECT_NEAR(D(IpoLoss(T({-10}), T({-12}), T({-11}), T({-11}), 0.1).loss), 9.0, 1e-12);
}

TEST(Losses, Orpo) {
  // a_c = ln 0.5, a_r = ln 0.25: odds ratio = (0.5/0.5) / (0.25/0.75) = 3, so log_odds = ln 3 and σ(ln 3) = 3/4.
  // loss = nll_c - β log σ(ln 3) = ln 2 - 0.1 ln 0.75 = 0.693147180560 + 0.028768207245 = 0.721915387805.
  PreferenceLoss l = OrpoLoss(T({std::log(0.5)}), T({std::log(0.25)}), T({std::log(2.0)}), 0.1);
  EXPECT_NEAR(D(l.loss), 0.721915387805, 1e-11);
}

TEST(Losses, Gae) {
  // Rewards [0, 0, 1], values 0.5 everywhere, γ = λ = 1: δ = [0, 0, 0.5], so A = [0.5, 0.5, 0.5], returns = A + V = 1.
  auto [a, r] = Gae(T({0, 0, 1}).view({1, 3}), T({.5, .5, .5}).view({1, 3}), T({1, 1, 1}).view({1, 3}), 1.0, 1.0);
  EXPECT_TRUE(torch::allclose(a, T({.5, .5, .5}).view({1, 3})));
  EXPECT_TRUE(torch::allclose(r, T({1, 1, 1}).view({1, 3})));
  // λ = 0.5: A2 = 0.5, A1 = 0 + 0.5 * 0.5 = 0.25, A0 = 0.125.
  auto [a2, r2] = Gae(T({0, 0, 1}).view({1, 3}), T({.5, .5, .5}).view({1, 3}), T({1, 1, 1}).view({1, 3}), 1.0, 0.5);
  EXPECT_TRUE(torch::allclose(a2, T({.125, .25, .5}).view({1, 3})));
  // A padded position after the response contributes nothing: mask [1, 1, 0], reward 1 on the last real token:
  // δ1 = 1 - 0.5 = 0.5, δ0 = 0 + 0.5 - 0.5 = 0, so A = [0.5, 0.5, 0].
  auto [a3, r3] = Gae(T({0, 1, 7}).view({1, 3}), T({.5, .5, 9}).view({1, 3}), T({1, 1, 0}).view({1, 3}), 1.0, 1.0);
  EXPECT_TRUE(torch::allclose(a3, T({.5, .5, 0}).view({1, 3})));
  EXPECT_TRUE(torch::allclose(r3, T({1, 1, 0}).view({1, 3})));
}

TEST(Losses, PpoPolicyLossClipsAndReports) {
  // Token 1: ratio 1.5, A = 1: max(-1.5, -1.2) = -1.2 (clipped). Token 2: ratio 0.5, A = 1: max(-0.5, -0.8) = -0.5.
  // loss = -0.85, clipfrac = 1/2, approxkl = ½ mean((ln 1.5)², (ln 0.5)²) = ½ (0.164402 + 0.480453) / 2 = 0.161214.
  torch::Tensor old = T({-1, -1}).view({1, 2});
  torch::Tensor logp = old + T({std::log(1.5), std::log(0.5)}).view({1, 2});
  PolicyLoss l = PpoPolicyLoss(logp, old, T({1, 1}).view({1, 2}), T({1, 1}).view({1, 2}), 0.2);
  EXPECT_NEAR(D(l.loss), -0.85, 1e-12);
  EXPECT_NEAR(D(l.clipfrac), 0.5, 1e-12);
  EXPECT_NEAR(D(l.approxkl), 0.5 * (std::pow(std::log(1.5), 2) + std::pow(std::log(0.5), 2)) / 2, 1e-12);
}

TEST(Losses, ClippedValueLoss) {
  // V = 1, V_old = 0.5, R = 2, c = 0.2: (1 - 2)² = 1; clipped V = 0.7: (0.7 - 2)² = 1.69; ½ max = 0.845.
  torch::Tensor m = T({1}).view({1, 1});
  EXPECT_NEAR(D(ClippedValueLoss(T({1}).view({1, 1}), T({.5}).view({1, 1}), T({2}).view({1, 1}), m, 0.2)), 0.845,
              1e-12);
}

TEST(Losses, EntropyOfUniformIsLogV) {
  EXPECT_NEAR(D(Entropy(torch::zeros({1, 1, 4}, torch::kDouble))[0][0]), std::log(4.0), 1e-12);
}

TEST(Losses, GroupBaselines) {
  // GRPO, groups [1, 0] and [0, 1]: mean 0.5, unbiased std √0.5 = 0.707107; (±0.5) / (0.707107 + 1e-4) = ±0.707007.
  torch::Tensor g = GrpoAdvantages(T({1, 0, 0, 1}), 2);
  const double v = 0.5 / (std::sqrt(0.5) + 1e-4);
  EXPECT_TRUE(torch::allclose(g, T({v, -v, -v, v})));
  // "batch": the batch's std, std([1, 0, 0, 1]) = 0.57735; "none": centred only.
  const double b = 0.5 / (std::sqrt(1.0 / 3.0) + 1e-4);
  EXPECT_TRUE(torch::allclose(GrpoAdvantages(T({1, 0, 0, 1}), 2, "batch"), T({b, -b, -b, b})));
  EXPECT_TRUE(torch::allclose(GrpoAdvantages(T({1, 0, 0, 1}), 2, "none"), T({.5, -.5, -.5, .5})));
  // The group std makes a group's advantages the same whatever the gap in its scores; the others keep the ratio.
  // (Equal but for the 1e-4 in the denominator: 1.5 / (2.1213 + 1e-4) against 0.5 / (0.7071 + 1e-4).)
  EXPECT_TRUE(torch::allclose(GrpoAdvantages(T({3, 0, 1, 0}), 2), GrpoAdvantages(T({1, 0, 3, 0}), 2), 1e-3));
  torch::Tensor none = GrpoAdvantages(T({3, 0, 1, 0}), 2, "none");
  EXPECT_NEAR(D(none[0]) / D(none[2]), 3.0, 1e-9);
  torch::Tensor batch = GrpoAdvantages(T({3, 0, 1, 0}), 2, "batch");
  EXPECT_NEAR(D(batch[0]) / D(batch[2]), 3.0, 1e-9);
  // RLOO, one group [1, 0, 0]: baselines are the others' means 0, 0.5, 0.5, so A = [1, -0.5, -0.5].
  EXPECT_TRUE(torch::allclose(RlooAdvantages(T({1, 0, 0}), 3), T({1, -.5, -.5})));
}

TEST(Losses, BestWorstPairsPickEachGroupsExtremesAndSkipTies) {
  // Groups of 3: [0.5, 2, -1] -> chosen row 1, rejected row 2; [1, 1, 1] says nothing; [0, 3, 3] -> chosen row 7 (the
  // first of the two best), rejected row 6.
  torch::Tensor pairs = BestWorstPairs(T({0.5, 2, -1, 1, 1, 1, 0, 3, 3}), 3);
  ASSERT_EQ(pairs.sizes(), (std::vector<int64_t>{2, 2}));
  EXPECT_TRUE(torch::equal(pairs, torch::tensor({1, 2, 7, 6}, torch::kLong).view({2, 2})));
  // Pairs of two, as TRL's online DPO samples them; all tied: no pairs.
  EXPECT_TRUE(torch::equal(BestWorstPairs(T({0, 1, 4, 3}), 2), torch::tensor({1, 0, 2, 3}, torch::kLong).view({2, 2})));
  EXPECT_EQ(BestWorstPairs(T({2, 2, 2, 2}), 2).size(0), 0);
}

TEST(Losses, WhitenHasZeroMeanUnitStdOnTheMask) {
  torch::Tensor x = T({1, 2, 3, 100}).view({1, 4});
  torch::Tensor m = T({1, 1, 1, 0}).view({1, 4});
  torch::Tensor w = MaskedWhiten(x, m);
  // mean 2, unbiased var 1: w = [-1, 0, 1, 0].
  EXPECT_TRUE(torch::allclose(w, T({-1, 0, 1, 0}).view({1, 4}), 1e-6, 1e-6));
}

}  // namespace
}  // namespace alignd::learner
