#include "learner/losses.h"

#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>
#include <c10/core/impl/LocalDispatchKeySet.h>
#include <torch/csrc/autograd/custom_function.h>

#include <algorithm>
#include <vector>

namespace alignd::learner {
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

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// Chunk rows for about 32 MB of float32 logits.
int64_t ChunkRows(int64_t requested, int64_t vocab) {
  return requested > 0 ? requested : std::max<int64_t>(1, (int64_t{8} << 20) / std::max<int64_t>(vocab, 1));
}

// The float32 logits of rows [start, start + rows) of `hidden` under `weight` (already in the compute dtype).
Tensor ChunkLogits(const Tensor& hidden, const Tensor& weight, int64_t start, int64_t rows, at::ScalarType compute) {
  return at::mm(hidden.narrow(0, start, rows).to(compute), weight.t()).to(torch::kFloat);
}

// Outputs: logp [N], entropy [N] (empty when not asked). Saved: hidden, weight, targets, the log-sum-exp per row and
// the entropies; with a single chunk, its log-softmax too, so the backward needs no second product.
class HeadLogProbsFunction : public torch::autograd::Function<HeadLogProbsFunction> {
 public:
  // `keep`: a backward will follow (the caller's grad mode and inputs say so; inside forward grad mode may be off).
  static variable_list forward(AutogradContext* ctx, Tensor hidden, Tensor weight, Tensor targets, bool with_entropy,
                               bool keep, int64_t chunk, at::ScalarType compute) {
    // The dtypes are chosen here, explicitly; autocast must not recast the products.
    c10::impl::ExcludeDispatchKeyGuard no_autocast(c10::autocast_dispatch_keyset);
    const int64_t n = hidden.size(0);
    Tensor w = weight.to(compute);
    auto f32 = hidden.options().dtype(torch::kFloat);
    Tensor logp = at::empty({n}, f32), lse = at::empty({n}, f32);
    Tensor entropy = with_entropy ? at::empty({n}, f32) : at::empty({0}, f32);
    Tensor kept;  // the single chunk's log-softmax
    for (int64_t s = 0; s < n; s += chunk) {
      const int64_t rows = std::min(chunk, n - s);
      Tensor z = ChunkLogits(hidden, w, s, rows, compute);
      Tensor l = z.logsumexp(1);
      lse.narrow(0, s, rows).copy_(l);
      Tensor lsm = z.sub_(l.unsqueeze(1));  // log-softmax, in place of the logits
      logp.narrow(0, s, rows).copy_(lsm.gather(1, targets.narrow(0, s, rows).unsqueeze(1)).squeeze(1));
      if (with_entropy) entropy.narrow(0, s, rows).copy_(-(lsm.exp() * lsm).sum(1));
      if (rows == n && keep) kept = lsm;
    }
    ctx->save_for_backward({hidden, weight, targets, lse, entropy, kept});
    ctx->saved_data["chunk"] = chunk;
    ctx->saved_data["compute"] = compute;
    ctx->set_materialize_grads(false);
    return {logp, entropy};
  }

  // d logp_i / dz_iv = [v = t_i] - p_iv;  d H_i / dz_iv = -p_iv (log p_iv + H_i).
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    c10::impl::ExcludeDispatchKeyGuard no_autocast(c10::autocast_dispatch_keyset);
    auto saved = ctx->get_saved_variables();
    const Tensor &hidden = saved[0], &weight = saved[1], &targets = saved[2], &lse = saved[3], &entropy = saved[4],
                 &kept = saved[5];
    const int64_t chunk = ctx->saved_data["chunk"].toInt();
    const auto compute = static_cast<at::ScalarType>(ctx->saved_data["compute"].toScalarType());
    const Tensor &g_logp = grads[0], &g_ent = grads[1];
    const bool want_h = ctx->needs_input_grad(0), want_w = ctx->needs_input_grad(1);
    if ((!g_logp.defined() && !g_ent.defined()) || (!want_h && !want_w)) {
      return {Tensor(), Tensor(), Tensor(), Tensor(), Tensor(), Tensor(), Tensor()};
    }
    const int64_t n = hidden.size(0);
    Tensor w = weight.to(compute);
    Tensor grad_h = want_h ? at::empty_like(hidden) : Tensor();
    Tensor grad_w = want_w ? at::zeros(weight.sizes(), weight.options().dtype(torch::kFloat)) : Tensor();
    for (int64_t s = 0; s < n; s += chunk) {
      const int64_t rows = std::min(chunk, n - s);
      Tensor lsm =
          kept.defined() ? kept : ChunkLogits(hidden, w, s, rows, compute).sub_(lse.narrow(0, s, rows).unsqueeze(1));
      Tensor p = lsm.exp();
      Tensor dz = at::zeros_like(p);
      if (g_logp.defined()) {
        Tensor g = g_logp.narrow(0, s, rows).to(torch::kFloat).unsqueeze(1);
        dz.sub_(p * g).scatter_add_(1, targets.narrow(0, s, rows).unsqueeze(1), g);
      }
      if (g_ent.defined()) {
        Tensor g = g_ent.narrow(0, s, rows).to(torch::kFloat).unsqueeze(1);
        dz.sub_(p * (lsm + entropy.narrow(0, s, rows).unsqueeze(1)) * g);
      }
      Tensor dzc = dz.to(compute);
      if (want_h) grad_h.narrow(0, s, rows).copy_(at::mm(dzc, w));
      if (want_w) grad_w.add_(at::mm(dzc.t(), hidden.narrow(0, s, rows).to(compute)).to(torch::kFloat));
    }
    return {grad_h,  want_w ? grad_w.to(weight.scalar_type()) : Tensor(), Tensor(), Tensor(), Tensor(), Tensor(),
            Tensor()};
  }
};

// The NLL sum with its gradients made in the forward (see HeadNllSum). Saved: the two gradients, unscaled.
class HeadNllSumFunction : public torch::autograd::Function<HeadNllSumFunction> {
 public:
  static Tensor forward(AutogradContext* ctx, Tensor hidden, Tensor weight, Tensor targets, bool want_h, bool want_w,
                        int64_t chunk, at::ScalarType compute) {
    c10::impl::ExcludeDispatchKeyGuard no_autocast(c10::autocast_dispatch_keyset);
    const int64_t n = hidden.size(0);
    Tensor w = weight.to(compute);
    Tensor nll = at::zeros({}, hidden.options().dtype(torch::kFloat));
    Tensor grad_h = want_h ? at::empty_like(hidden) : Tensor();
    Tensor grad_w = want_w ? at::zeros(weight.sizes(), weight.options().dtype(torch::kFloat)) : Tensor();
    for (int64_t s = 0; s < n; s += chunk) {
      const int64_t rows = std::min(chunk, n - s);
      Tensor tgt = targets.narrow(0, s, rows).unsqueeze(1);
      Tensor z = ChunkLogits(hidden, w, s, rows, compute);
      Tensor lsm = z.sub_(z.logsumexp(1, /*keepdim=*/true));
      nll.sub_(lsm.gather(1, tgt).sum());
      if (!want_h && !want_w) continue;
      // d NLL / dz = softmax - onehot(target), made in place of the log-softmax.
      Tensor dz = lsm.exp_().scatter_add_(1, tgt, at::full({rows, 1}, -1.0f, lsm.options()));
      Tensor dzc = dz.to(compute);
      if (want_h) grad_h.narrow(0, s, rows).copy_(at::mm(dzc, w));
      if (want_w) grad_w.add_(at::mm(dzc.t(), hidden.narrow(0, s, rows).to(compute)).to(torch::kFloat));
    }
    ctx->saved_data["grad_h"] = grad_h;
    ctx->saved_data["grad_w"] = want_w ? grad_w.to(weight.scalar_type()) : grad_w;
    return nll;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    Tensor grad_h = ctx->saved_data["grad_h"].toTensor(), grad_w = ctx->saved_data["grad_w"].toTensor();
    const Tensor& g = grads[0];
    return {grad_h.defined() ? grad_h * g.to(grad_h.scalar_type()) : Tensor(),
            grad_w.defined() ? grad_w * g.to(grad_w.scalar_type()) : Tensor(),
            Tensor(),
            Tensor(),
            Tensor(),
            Tensor(),
            Tensor()};
  }
};

// The products' dtype: autocast's when it is on for the device, else the weight's.
at::ScalarType HeadComputeType(const Tensor& hidden, const Tensor& weight) {
  const at::DeviceType device = hidden.device().type();
  at::ScalarType compute = weight.scalar_type();
  if ((device == at::kCPU || device == at::kCUDA) && at::autocast::is_autocast_enabled(device) &&
      compute != torch::kFloat64) {
    compute = at::autocast::get_autocast_dtype(device);
  }
  return compute;
}

void CheckHeadShapes(const char* what, const Tensor& hidden, const Tensor& weight, const Tensor& targets) {
  TORCH_CHECK(hidden.dim() == 2 && weight.dim() == 2 && hidden.size(1) == weight.size(1) && targets.dim() == 1 &&
                  targets.size(0) == hidden.size(0),
              what, ": hidden [N, H], weight [V, H], targets [N]; got ", hidden.sizes(), ", ", weight.sizes(), ", ",
              targets.sizes());
}

// Rows of hidden [B, T, H] that predict a trained token of input_ids [B, T] (mask nonzero at t >= 1: row t - 1), and
// the flat [B * T] index of the token each one predicts.
std::pair<Tensor, Tensor> PredictingRows(const Tensor& hidden, const Tensor& input_ids, const Tensor& mask) {
  const int64_t b = input_ids.size(0), t = input_ids.size(1);
  Tensor pos = mask.narrow(1, 1, t - 1).ne(0).nonzero();  // [M, 2]: (row, t - 1)
  Tensor from = pos.select(1, 0) * t + pos.select(1, 1);
  return {hidden.reshape({b * t, hidden.size(-1)}).index_select(0, from), from + 1};
}

}  // namespace

Tensor HeadNllSum(const Tensor& hidden, const Tensor& weight, const Tensor& targets, int64_t chunk_rows) {
  CheckHeadShapes("HeadNllSum", hidden, weight, targets);
  const bool grad = at::GradMode::is_enabled();
  return HeadNllSumFunction::apply(hidden, weight, targets.to(torch::kLong), grad && hidden.requires_grad(),
                                   grad && weight.requires_grad(), ChunkRows(chunk_rows, weight.size(0)),
                                   HeadComputeType(hidden, weight));
}

Tensor MaskedNextTokenNllSum(const Tensor& hidden, const Tensor& weight, const Tensor& input_ids, const Tensor& mask,
                             int64_t chunk_rows) {
  auto [rows, to] = PredictingRows(hidden, input_ids, mask);
  return HeadNllSum(rows, weight, input_ids.reshape({-1}).index_select(0, to), chunk_rows);
}

HeadLogProbs ComputeHeadLogProbs(const Tensor& hidden, const Tensor& weight, const Tensor& targets, bool with_entropy,
                                 int64_t chunk_rows) {
  CheckHeadShapes("ComputeHeadLogProbs", hidden, weight, targets);
  HeadLogProbs out;
  if (hidden.size(0) == 0) {
    out.logp = at::zeros({0}, hidden.options().dtype(torch::kFloat)) + (hidden.sum() + weight.sum()) * 0;
    if (with_entropy) out.entropy = out.logp;
    return out;
  }
  const bool keep = at::GradMode::is_enabled() && (hidden.requires_grad() || weight.requires_grad());
  variable_list r = HeadLogProbsFunction::apply(hidden, weight, targets.to(torch::kLong), with_entropy, keep,
                                                ChunkRows(chunk_rows, weight.size(0)), HeadComputeType(hidden, weight));
  out.logp = r[0];
  if (with_entropy) out.entropy = r[1];
  return out;
}

HeadLogProbs MaskedNextTokenLogProbs(const Tensor& hidden, const Tensor& weight, const Tensor& input_ids,
                                     const Tensor& mask, bool with_entropy, int64_t chunk_rows) {
  const int64_t b = input_ids.size(0), t = input_ids.size(1);
  auto [rows, to] = PredictingRows(hidden, input_ids, mask);
  HeadLogProbs sel =
      ComputeHeadLogProbs(rows, weight, input_ids.reshape({b * t}).index_select(0, to), with_entropy, chunk_rows);
  auto scatter = [&](const Tensor& x) { return at::zeros({b * t}, x.options()).index_copy(0, to, x).view({b, t}); };
  HeadLogProbs out;
  out.logp = scatter(sel.logp);
  if (with_entropy) out.entropy = scatter(sel.entropy);
  return out;
}

Tensor BradleyTerryLoss(const Tensor& chosen, const Tensor& rejected, double margin) {
  return -at::log_sigmoid(chosen - rejected - margin).mean();
}

namespace {

// The sigmoid DPO family: z = β((π_c - π_r) - (ref_c - ref_r)); loss = mean(-w_c log σ(z) - w_r log σ(-z)), with the
// label's weights as doubles (DPO, cDPO) or [B] tensors (reward-aware). Rewards are β(π - ref).
template <typename Weight>
PreferenceLoss SigmoidPreferenceLoss(const Tensor& pc, const Tensor& pr, const Tensor& rc, const Tensor& rr,
                                     double beta, const Weight& chosen_wins, const Weight& rejected_wins) {
  Tensor z = beta * ((pc - pr) - (rc - rr));
  PreferenceLoss out;
  out.loss = (-chosen_wins * at::log_sigmoid(z) - rejected_wins * at::log_sigmoid(-z)).mean();
  out.chosen_rewards = (beta * (pc - rc)).detach();
  out.rejected_rewards = (beta * (pr - rr)).detach();
  return out;
}

}  // namespace

PreferenceLoss DpoLoss(const Tensor& pc, const Tensor& pr, const Tensor& rc, const Tensor& rr, double beta,
                       double label_smoothing) {
  return SigmoidPreferenceLoss(pc, pr, rc, rr, beta, 1.0 - label_smoothing, label_smoothing);
}

PreferenceLoss RewardAwareDpoLoss(const Tensor& pc, const Tensor& pr, const Tensor& rc, const Tensor& rr, double beta,
                                  const Tensor& score_gap, double reward_scale) {
  Tensor t = at::sigmoid(reward_scale * score_gap.to(pc.device(), pc.scalar_type())).detach();
  return SigmoidPreferenceLoss(pc, pr, rc, rr, beta, t, 1.0 - t);
}

PreferenceLoss IpoLoss(const Tensor& pc, const Tensor& pr, const Tensor& rc, const Tensor& rr, double beta) {
  Tensor h = (pc - pr) - (rc - rr);
  PreferenceLoss out;
  out.loss = (h - 1.0 / (2.0 * beta)).pow(2).mean();
  out.chosen_rewards = (beta * (pc - rc)).detach();
  out.rejected_rewards = (beta * (pr - rr)).detach();
  return out;
}

PreferenceLoss ReferencePreferenceLoss(absl::string_view loss, const Tensor& sum_c, const Tensor& sum_r,
                                       const Tensor& avg_c, const Tensor& avg_r, const Tensor& ref_c,
                                       const Tensor& ref_r, double beta, double label_smoothing, double rpo_alpha,
                                       Tensor* nll, double reward_scale, const Tensor& score_gap) {
  PreferenceLoss out = loss == "ipo" ? IpoLoss(avg_c, avg_r, ref_c, ref_r, beta)
                       : reward_scale > 0
                           ? RewardAwareDpoLoss(sum_c, sum_r, ref_c, ref_r, beta, score_gap, reward_scale)
                           : DpoLoss(sum_c, sum_r, ref_c, ref_r, beta, label_smoothing);
  if (rpo_alpha > 0) {
    Tensor chosen_nll = -avg_c.mean();
    out.loss = out.loss + rpo_alpha * chosen_nll;
    if (nll != nullptr) *nll = chosen_nll.detach();
  }
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

Tensor GrpoAdvantages(const Tensor& scores, int64_t k, absl::string_view scale) {
  Tensor g = scores.view({-1, k});
  Tensor centred = g - g.mean(1, true);
  if (scale == "none") return centred.view(-1);
  Tensor std;
  if (scale == "batch") {
    std = scores.numel() > 1 ? scores.std(/*unbiased=*/true) : at::zeros({}, scores.options());
  } else {
    std = k > 1 ? g.std(1, /*unbiased=*/true, true) : at::zeros_like(centred.narrow(1, 0, 1));
  }
  return (centred / (std + 1e-4)).view(-1);
}

Tensor RlooAdvantages(const Tensor& scores, int64_t k) {
  Tensor g = scores.view({-1, k});
  if (k == 1) return at::zeros_like(scores);
  Tensor others = (g.sum(1, true) - g) / static_cast<double>(k - 1);
  return (g - others).view(-1);
}

Tensor BestWorstPairs(const Tensor& scores, int64_t k) {
  Tensor g = scores.detach().to(torch::kCPU, torch::kDouble).contiguous().view({-1, k});
  auto rows = g.accessor<double, 2>();
  std::vector<int64_t> pairs;
  for (int64_t i = 0; i < g.size(0); ++i) {
    int64_t best = 0, worst = 0;
    for (int64_t j = 1; j < k; ++j) {
      if (rows[i][j] > rows[i][best]) best = j;
      if (rows[i][j] < rows[i][worst]) worst = j;
    }
    if (rows[i][best] > rows[i][worst]) {
      pairs.push_back(i * k + best);
      pairs.push_back(i * k + worst);
    }
  }
  return torch::tensor(pairs, torch::kLong).view({-1, 2});
}

}  // namespace alignd::learner
