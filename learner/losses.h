// The losses of alignd's trainers as pure tensor functions, so each is tested on hand-worked inputs. Shapes: B rows,
// T positions. Log-probabilities are natural logs. Formulas follow the papers and TRL's implementations; each
// function's comment gives its formula.
#ifndef ALIGND_LEARNER_LOSSES_H_
#define ALIGND_LEARNER_LOSSES_H_

#include <torch/types.h>

#include "absl/strings/string_view.h"

namespace alignd::learner {

// Per-token log-probs of the next token: logits [B, T, V] and input_ids [B, T] -> [B, T] where column t holds
// log p(input_ids[t] | < t) and column 0 is 0 (nothing predicts the first token). Multiply by a loss mask whose
// column t marks trained tokens (as collate.h's labels) to select them.
torch::Tensor NextTokenLogProbs(const torch::Tensor& logits, const torch::Tensor& input_ids);

// Log-probs of chosen tokens straight from hidden states, computing the LM head only where asked and never the whole
// [N, vocab] logits at once. hidden [N, H] (any float dtype), weight [V, H] (CausalLM::lm_head_weight), targets [N]
// int64. logp[i] = log_softmax(hidden[i] W^T)[targets[i]] in float32; entropy[i] (when `with_entropy`, else
// undefined) = -Σ_v p_v log p_v of that distribution. The logits are made chunk_rows rows at a time ([chunk_rows, V]
// float32 at most, in the forward and again in the backward, which recomputes them instead of keeping them;
// chunk_rows 0 picks rows for about 32 MB per chunk, so a small vocabulary is one chunk, whose log-softmax is kept).
// Differentiable with respect to hidden and weight (both outputs). Under autocast the products run in autocast's
// dtype, as CausalLM::head's would, and the softmax in float32.
struct HeadLogProbs {
  torch::Tensor logp;     // [N] float32
  torch::Tensor entropy;  // [N] float32, or undefined
};
HeadLogProbs ComputeHeadLogProbs(const torch::Tensor& hidden, const torch::Tensor& weight, const torch::Tensor& targets,
                                 bool with_entropy = false, int64_t chunk_rows = 0);

// NextTokenLogProbs(head(hidden), input_ids) * mask, and the matching entropies, without the head on untrained
// positions: hidden [B, T, H], input_ids and mask [B, T] (mask nonzero where a token is trained, as collate.h's labels
// mark them; column 0 is never trained). Returns [B, T] float32 tensors, zero where mask is 0; entropy (when asked)
// at column t is that of the distribution that predicted token t.
HeadLogProbs MaskedNextTokenLogProbs(const torch::Tensor& hidden, const torch::Tensor& weight,
                                     const torch::Tensor& input_ids, const torch::Tensor& mask,
                                     bool with_entropy = false, int64_t chunk_rows = 0);

// -Σ_i log_softmax(hidden[i] W^T)[targets[i]], for a loss that is a plain sum over tokens (SFT, pretraining): the
// value of -ComputeHeadLogProbs(...).logp.sum(), but the gradients are computed in the forward pass, chunk by chunk
// (three products per chunk where ComputeHeadLogProbs's backward needs four, as it must recompute the logits), and
// kept ([N, H] and [V, H] float32) until the backward scales them by the incoming gradient. Without grad mode, or
// when neither hidden nor weight requires grad, only the value is computed. A float32 scalar.
torch::Tensor HeadNllSum(const torch::Tensor& hidden, const torch::Tensor& weight, const torch::Tensor& targets,
                         int64_t chunk_rows = 0);

// HeadNllSum over the trained tokens of [B, T] inputs, selected as MaskedNextTokenLogProbs selects them.
torch::Tensor MaskedNextTokenNllSum(const torch::Tensor& hidden, const torch::Tensor& weight,
                                    const torch::Tensor& input_ids, const torch::Tensor& mask, int64_t chunk_rows = 0);

// Bradley-Terry pairwise loss for reward models: mean over pairs of -log σ(r_chosen - r_rejected - margin).
torch::Tensor BradleyTerryLoss(const torch::Tensor& chosen, const torch::Tensor& rejected, double margin = 0.0);

struct PreferenceLoss {
  torch::Tensor loss;              // scalar, mean over pairs
  torch::Tensor chosen_rewards;    // [B], detached
  torch::Tensor rejected_rewards;  // [B], detached
};

// DPO (Rafailov et al.): z = β((π_c - π_r) - (ref_c - ref_r)); loss = -(1-ε) log σ(z) - ε log σ(-z), where ε is
// the label smoothing of conservative DPO (ε = 0: plain DPO). Rewards are β(π - ref). Inputs are summed sequence
// log-probs.
PreferenceLoss DpoLoss(const torch::Tensor& policy_chosen, const torch::Tensor& policy_rejected,
                       const torch::Tensor& ref_chosen, const torch::Tensor& ref_rejected, double beta,
                       double label_smoothing = 0.0);

// Reward-aware DPO, for pairs whose two answers were scored (online DPO): each pair's label is t = σ(η (s_c - s_r)),
// the chance that the chosen answer wins by its score gap, and the loss is the cross-entropy of σ(z) against it, z as
// in DpoLoss: -(t log σ(z) + (1 - t) log σ(-z)), lowest at z = η (s_c - s_r). The sigmoid distance of Nemotron-4
// 340B's reward-aware preference optimisation (Adler et al. 2024). A pair whose scores are far apart is pushed as DPO
// pushes it; a near tie is held near no preference, where DPO pushes it as hard. DpoLoss's label smoothing ε is the
// case t = 1 - ε for every pair. score_gap: [B], s_c - s_r.
PreferenceLoss RewardAwareDpoLoss(const torch::Tensor& policy_chosen, const torch::Tensor& policy_rejected,
                                  const torch::Tensor& ref_chosen, const torch::Tensor& ref_rejected, double beta,
                                  const torch::Tensor& score_gap, double reward_scale);

// IPO (Azar et al.), as TRL computes it: h = (π_c - π_r) - (ref_c - ref_r) on length-averaged log-probs;
// loss = (h - 1/(2β))². Rewards are β(π - ref).
PreferenceLoss IpoLoss(const torch::Tensor& policy_chosen, const torch::Tensor& policy_rejected,
                       const torch::Tensor& ref_chosen, const torch::Tensor& ref_rejected, double beta);

// The reference-based DPO losses as a job's `dpo` section names them: `loss` "sigmoid" is DpoLoss on the summed
// response log-probs (sum_*, with `label_smoothing`), "ipo" IpoLoss on the length-averaged ones (avg_*); ref_c and
// ref_r must be the reference's summed or averaged log-probs to match. With rpo_alpha > 0 the loss adds RPO's term,
// rpo_alpha x the chosen responses' mean token NLL (-mean(avg_c)), and `nll` (when given) receives that NLL, detached;
// otherwise `nll` is left undefined. With reward_scale > 0 "sigmoid" is RewardAwareDpoLoss on `score_gap` instead
// (label_smoothing unused). Shared by offline DPO and online DPO.
PreferenceLoss ReferencePreferenceLoss(absl::string_view loss, const torch::Tensor& sum_c, const torch::Tensor& sum_r,
                                       const torch::Tensor& avg_c, const torch::Tensor& avg_r,
                                       const torch::Tensor& ref_c, const torch::Tensor& ref_r, double beta,
                                       double label_smoothing, double rpo_alpha, torch::Tensor* nll = nullptr,
                                       double reward_scale = 0, const torch::Tensor& score_gap = {});

// ORPO (Hong et al.), reference-free: with length-averaged log-probs a_c, a_r,
// log_odds = (a_c - a_r) - (log(1 - e^{a_c}) - log(1 - e^{a_r})); loss = nll_chosen - β mean(log σ(log_odds)).
// `nll_chosen` is the mean token NLL of the chosen responses. Rewards are β·a.
PreferenceLoss OrpoLoss(const torch::Tensor& avg_chosen, const torch::Tensor& avg_rejected,
                        const torch::Tensor& nll_chosen, double beta);

// Generalised advantage estimation over response tokens. rewards, values, mask: [B, T] (mask 1 on response tokens,
// which must be contiguous per row). δ_t = r_t + γ V_{t+1} - V_t with V past the last token = 0;
// A_t = δ_t + γλ A_{t+1}. Returns advantages and returns (= A + V), zero where mask is 0.
std::pair<torch::Tensor, torch::Tensor> Gae(const torch::Tensor& rewards, const torch::Tensor& values,
                                            const torch::Tensor& mask, double gamma, double lam);

// (x - mean) / sqrt(var + 1e-8) over the masked entries (unbiased var, as TRL's masked_whiten); `shift_mean` false
// keeps the mean (used for rewards). Entries outside the mask are returned as 0.
torch::Tensor MaskedWhiten(const torch::Tensor& x, const torch::Tensor& mask, bool shift_mean = true);

// Mean of x over mask entries (sum(x * mask) / sum(mask)); 0 for an all-zero mask.
torch::Tensor MaskedMean(const torch::Tensor& x, const torch::Tensor& mask);

struct PolicyLoss {
  torch::Tensor loss;      // scalar
  torch::Tensor clipfrac;  // fraction of tokens where the clipped term was chosen
  torch::Tensor approxkl;  // mean ½(logp - old_logp)²
};

// PPO clipped surrogate: ratio = exp(logp - old_logp); loss = mean_mask(max(-A ratio, -A clip(ratio, 1±ε))).
PolicyLoss PpoPolicyLoss(const torch::Tensor& logp, const torch::Tensor& old_logp, const torch::Tensor& advantages,
                         const torch::Tensor& mask, double clip);

// Clipped value loss: ½ mean_mask(max((V - R)², (clip(V, V_old ± c) - R)²)).
torch::Tensor ClippedValueLoss(const torch::Tensor& values, const torch::Tensor& old_values,
                               const torch::Tensor& returns, const torch::Tensor& mask, double clip);

// Entropy of the next-token distributions, [B, T] from logits [B, T, V].
torch::Tensor Entropy(const torch::Tensor& logits);

// Critic-free baselines over groups of k consecutive samples of the same prompt (scores [B], B divisible by k):
// GRPO: (s - mean_group) / (std + 1e-4), the std being the group's (scale "group", unbiased, as in the DeepSeekMath
// paper's code; 0 for k = 1), the whole batch's ("batch", unbiased; 0 for one score), or none ("none": s - mean_group);
// RLOO: s - mean of the other k-1 samples of the group (all 0 for k = 1).
torch::Tensor GrpoAdvantages(const torch::Tensor& scores, int64_t k, absl::string_view scale = "group");
torch::Tensor RlooAdvantages(const torch::Tensor& scores, int64_t k);

// Online DPO's pairs (the best and worst of n, as OpenRLHF's iterative DPO and RLHFlow pick them; TRL's online DPO is
// the case k = 2) over groups of k consecutive samples of one prompt (scores [B], B divisible by k): in each group
// the highest-scored sample is chosen and the lowest rejected, the first of equals each time. A group whose scores
// are all equal says nothing and gives no pair. Returns [P, 2] int64 (chosen row, rejected row) on the CPU, P <= B / k,
// in group order.
torch::Tensor BestWorstPairs(const torch::Tensor& scores, int64_t k);

}  // namespace alignd::learner

#endif  // ALIGND_LEARNER_LOSSES_H_
