#include "worker/losses.h"

#include <ATen/ATen.h>

namespace alignd::worker {
namespace F = at;
using torch::Tensor;

Tensor NextTokenLogProbs(const Tensor& logits, const Tensor& input_ids) {
  const int64_t t = logits.size(1);
  Tensor shifted = logits.narrow(1, 0, t - 1);
  shifted = shifted.to(at::promote_types(shifted.scalar_type(), torch::kFloat));
  Tensor targets = input_ids.narrow(1, 1, t - 1).unsqueeze(-1);
  Tensor lp = shifted.gather(-1, targets).squeeze(-1) - shifted.logsumexp(-1);
  return at::cat({at::zeros({lp.size(0), 1}, lp.options()), lp}, 1);
}

Tensor BradleyTerryLoss(const Tensor& chosen, const Tensor& rejected, double margin) {
  return -at::log_sigmoid(chosen - rejected - margin).mean();
}

PreferenceLoss DpoLoss(const Tensor& pc, const Tensor& pr, const Tensor& rc, const Tensor& rr, double beta,
                       double label_smoothing) {
  Tensor z = beta * ((pc - pr) - (rc - rr));
  PreferenceLoss out;
  out.loss = (-(1.0 - label_smoothing) * at::log_sigmoid(z) - label_smoothing * at::log_sigmoid(-z)).mean();
  out.chosen_rewards = (beta * (pc - rc)).detach();
  out.rejected_rewards = (beta * (pr - rr)).detach();
  return out;
}

PreferenceLoss IpoLoss(const Tensor& pc, const Tensor& pr, const Tensor& rc, const Tensor& rr, double beta) {
  Tensor h = (pc - pr) - (rc - rr);
  PreferenceLoss out;
  out.loss = (h - 1.0 / (2.0 * beta)).pow(2).mean();
  out.chosen_rewards = (beta * (pc - rc)).detach();
  out.rejected_rewards = (beta * (pr - rr)).detach();
  return out;
}

PreferenceLoss OrpoLoss(const Tensor& ac, const Tensor& ar, const Tensor& nll_chosen, double beta) {
  // log(1 - e^a) computed as log(-expm1(a)), stable for a close to 0.
  Tensor log_odds = (ac - ar) - (at::log(-at::expm1(ac)) - at::log(-at::expm1(ar)));
  PreferenceLoss out;
  out.loss = nll_chosen.mean() - beta * at::log_sigmoid(log_odds).mean();
  out.chosen_rewards = (beta * ac).detach();
  out.rejected_rewards = (beta * ar).detach();
  return out;
}

std::pair<Tensor, Tensor> Gae(const Tensor& rewards, const Tensor& values, const Tensor& mask, double gamma,
                              double lam) {
  const int64_t t = rewards.size(1);
  Tensor r = rewards * mask, v = values * mask;
  Tensor adv = at::zeros_like(r);
  Tensor next_adv = at::zeros({r.size(0)}, r.options());
  Tensor next_value = at::zeros({r.size(0)}, r.options());
  for (int64_t i = t - 1; i >= 0; --i) {
    Tensor m = mask.select(1, i);
    Tensor delta = r.select(1, i) + gamma * next_value - v.select(1, i);
    Tensor a = (delta + gamma * lam * next_adv) * m;
    adv.select(1, i).copy_(a);
    // Positions outside the mask (padding after the response) pass nothing back.
    next_adv = a;
    next_value = v.select(1, i) * m;
  }
  return {adv, (adv + v) * mask};
}

Tensor MaskedMean(const Tensor& x, const Tensor& mask) { return (x * mask).sum() / mask.sum().clamp_min(1); }

Tensor MaskedWhiten(const Tensor& x, const Tensor& mask, bool shift_mean) {
  Tensor mean = MaskedMean(x, mask);
  Tensor n = mask.sum();
  Tensor var = ((x - mean).pow(2) * mask).sum() / (n - 1).clamp_min(1);
  Tensor w = (x - mean) * at::rsqrt(var + 1e-8);
  if (!shift_mean) w = w + mean;
  return w * mask;
}

PolicyLoss PpoPolicyLoss(const Tensor& logp, const Tensor& old_logp, const Tensor& adv, const Tensor& mask,
                         double clip) {
  Tensor log_ratio = logp - old_logp;
  Tensor ratio = at::exp(log_ratio);
  Tensor unclipped = -adv * ratio;
  Tensor clipped = -adv * at::clamp(ratio, 1.0 - clip, 1.0 + clip);
  PolicyLoss out;
  out.loss = MaskedMean(at::max(unclipped, clipped), mask);
  out.clipfrac = MaskedMean(at::gt(clipped, unclipped).to(logp.scalar_type()), mask).detach();
  out.approxkl = (0.5 * MaskedMean(log_ratio.pow(2), mask)).detach();
  return out;
}

Tensor ClippedValueLoss(const Tensor& values, const Tensor& old_values, const Tensor& returns, const Tensor& mask,
                        double clip) {
  Tensor clipped = old_values + at::clamp(values - old_values, -clip, clip);
  return 0.5 * MaskedMean(at::max((values - returns).pow(2), (clipped - returns).pow(2)), mask);
}

Tensor Entropy(const Tensor& logits) {
  Tensor lp = at::log_softmax(logits.to(at::promote_types(logits.scalar_type(), torch::kFloat)), -1);
  return -(lp.exp() * lp).sum(-1);
}

Tensor GrpoAdvantages(const Tensor& scores, int64_t k) {
  Tensor g = scores.view({-1, k});
  Tensor mean = g.mean(1, true);
  Tensor std = k > 1 ? g.std(1, /*unbiased=*/true, true) : at::zeros_like(mean);
  return ((g - mean) / (std + 1e-4)).view(-1);
}

Tensor RlooAdvantages(const Tensor& scores, int64_t k) {
  Tensor g = scores.view({-1, k});
  if (k == 1) return at::zeros_like(scores);
  Tensor others = (g.sum(1, true) - g) / static_cast<double>(k - 1);
  return (g - others).view(-1);
}

}  // namespace alignd::worker
