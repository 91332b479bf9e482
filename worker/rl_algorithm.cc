// Reinforcement learning from rewards on generated samples: PPO (actor-critic with a value head on the policy's
// hidden states, per-token KL penalty in the reward, GAE, clipped surrogate and value losses), and the critic-free
// GRPO (group-normalised advantages, KL to the reference in the loss) and RLOO (leave-one-out baseline, KL in the
// reward). Generation goes through the rollout engine, in-process, on the live policy weights; the reference policy
// is the base with PEFT switched off, or a frozen copy of the starting weights.
#include <cmath>

#include "absl/strings/str_cat.h"
#include "common/collate.h"
#include "common/dataset.h"
#include "common/status.h"
#include "common/synth.h"
#include "rollout/engine.h"
#include "worker/algorithm.h"
#include "worker/losses.h"
#include "worker/rewards.h"

namespace alignd::worker {
namespace {

// The rows of one rollout batch, right-padded: prompt + response, with the response positions marked.
struct Rollout {
  torch::Tensor ids, attention, response;  // [N, T] int64, int64, float (1 on generated tokens)
  torch::Tensor old_logp, ref_logp, values, advantages, returns;  // [N, T] float
  torch::Tensor scores;                     // [N]
};

class RlObjective : public Objective {
 public:
  absl::Status Prepare(TrainContext& ctx) override {
    const JobSpec& spec = *ctx.spec;
    algorithm_ = spec.algorithm;
    k_ = algorithm_ == Algorithm::kPpo ? 1 : spec.ppo.samples_per_prompt;
    if (algorithm_ != Algorithm::kPpo && k_ < 2) {
      return absl::InvalidArgumentError(
          absl::StrCat("ppo.samples_per_prompt: ", AlgorithmName(algorithm_), " needs at least 2 samples per prompt"));
    }
    kl_coef_ = spec.ppo.kl_coef;
    ASSIGN_OR_RETURN(train_, LoadPrompts(spec.data.train));
    if (!spec.data.eval.empty()) {
      ASSIGN_OR_RETURN(eval_, LoadPrompts(spec.data.eval));
    }
    rollout::Engine::Options eo;
    eo.model = ctx.model;
    eo.tokenizer = ctx.tokenizer;
    eo.chat_template = spec.data.chat_template;
    ASSIGN_OR_RETURN(engine_, rollout::Engine::Create(eo));
    ASSIGN_OR_RETURN(rewards_, MakeRewardFunction(spec.ppo.rule_rewards, spec.ppo.reward_model,
                                                  spec.ppo.reward_model_weight, spec.data.chat_template));
    if (ctx.peft == nullptr) {
      // A frozen copy of the starting weights serves as the reference policy.
      reference_ = CausalLM(ctx.model->config());
      torch::NoGradGuard no_grad;
      auto src = ctx.model->named_parameters();
      for (auto& p : reference_->named_parameters()) {
        p.value().copy_(src[p.key()]);
        p.value().set_requires_grad(false);
      }
      reference_->eval();
    }
    if (algorithm_ == Algorithm::kPpo) {
      value_head_ = torch::nn::Linear(torch::nn::LinearOptions(ctx.model->config().hidden_size, 1));
      torch::NoGradGuard no_grad;
      value_head_->weight.zero_();
      value_head_->bias.zero_();
    }
    return absl::OkStatus();
  }

  size_t size() const override { return train_.records.size(); }

  std::vector<torch::Tensor> extra_parameters() override {
    return value_head_ ? value_head_->parameters() : std::vector<torch::Tensor>{};
  }
  nlohmann::json SaveState() const override { return {{"kl_coef", kl_coef_}}; }
  absl::Status LoadState(const nlohmann::json& state) override {
    kl_coef_ = state.value("kl_coef", kl_coef_);
    return absl::OkStatus();
  }

  absl::StatusOr<Metrics> Step(TrainContext& ctx, int64_t step, const std::vector<size_t>& items,
                               const ApplyStep& apply) override {
    const PpoSpec& p = ctx.spec->ppo;
    Metrics m;
    ASSIGN_OR_RETURN(Rollout r, Collect(ctx, train_, items, step, p.temperature, &m));
    ComputeAdvantages(ctx, &r, &m);

    // Several epochs of minibatch updates over the rollout batch.
    const int64_t n = r.ids.size(0);
    const int64_t per = std::max<int64_t>(1, n / p.minibatches);
    double pg_sum = 0, vf_sum = 0, ent_sum = 0, clip_sum = 0, akl_sum = 0, grad_sum = 0;
    int64_t updates = 0;
    torch::Generator gen = at::detail::createCPUGenerator(ctx.spec->seed * 7919 + static_cast<uint64_t>(step));
    for (int64_t epoch = 0; epoch < p.epochs; ++epoch) {
      torch::Tensor perm = torch::randperm(n, gen, torch::kLong);
      for (int64_t b = 0; b + per <= n; b += per) {
        torch::Tensor rows = perm.narrow(0, b, per);
        auto pick = [&](const torch::Tensor& t) { return t.index_select(0, rows); };
        torch::Tensor ids = pick(r.ids), att = pick(r.attention), mask = pick(r.response);
        ModelOutput out = ctx.model->forward(ids, att);
        torch::Tensor logp = NextTokenLogProbs(out.logits, ids);
        PolicyLoss pl = PpoPolicyLoss(logp, pick(r.old_logp), pick(r.advantages), mask, p.clip);
        torch::Tensor entropy = MaskedMean(ShiftedEntropy(out.logits), mask);
        torch::Tensor loss = pl.loss - p.entropy_coef * entropy;
        if (value_head_) {
          torch::Tensor values = value_head_->forward(out.hidden).squeeze(-1);
          torch::Tensor vf = ClippedValueLoss(values, pick(r.values), pick(r.returns), mask, p.value_clip);
          loss = loss + p.vf_coef * vf;
          vf_sum += vf.item<double>();
        }
        if (algorithm_ == Algorithm::kGrpo && kl_coef_ > 0) {
          // k3 estimator of KL(π || π_ref), as in the GRPO paper.
          torch::Tensor d = pick(r.ref_logp) - logp;
          loss = loss + kl_coef_ * MaskedMean(torch::exp(d) - d - 1, mask);
        }
        loss.backward();
        grad_sum += apply();
        pg_sum += pl.loss.item<double>();
        ent_sum += entropy.item<double>();
        clip_sum += pl.clipfrac.item<double>();
        akl_sum += pl.approxkl.item<double>();
        ++updates;
      }
    }
    const double u = static_cast<double>(std::max<int64_t>(updates, 1));
    m["policy/loss"] = pg_sum / u;
    m["policy/clipfrac"] = clip_sum / u;
    m["policy/approxkl"] = akl_sum / u;
    m["objective/entropy"] = ent_sum / u;
    m["train/grad_norm"] = grad_sum / u;
    if (value_head_) m["value/loss"] = vf_sum / u;
    m["train/loss"] = (pg_sum + p.vf_coef * vf_sum) / u;
    m["objective/kl_coef"] = kl_coef_;
    if (p.adaptive_kl) {
      // Ziegler et al.: nudge the coefficient towards the target KL, by at most ±20% of the horizon-scaled error.
      double err = std::clamp(m["objective/kl"] / p.kl_target - 1.0, -0.2, 0.2);
      kl_coef_ *= 1.0 + err * static_cast<double>(n) / p.kl_horizon;
    }
    return m;
  }

  absl::StatusOr<Metrics> Evaluate(TrainContext& ctx) override {
    if (eval_.records.empty()) return Metrics{};
    std::vector<size_t> all(eval_.records.size());
    for (size_t i = 0; i < all.size(); ++i) all[i] = i;
    Metrics m;
    ASSIGN_OR_RETURN(Rollout r, Collect(ctx, eval_, all, 0, /*temperature=*/0.0, &m));
    Metrics out;
    for (const auto& [k, v] : m) out["eval/" + k] = v;
    return out;
  }

 private:
  static absl::StatusOr<Dataset> LoadPrompts(const std::string& path) {
    ASSIGN_OR_RETURN(Dataset d, ReadJsonl(path));
    if (d.schema != DatasetSchema::kPrompt) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": ppo/grpo/rloo need prompt records, got ", SchemaName(d.schema)));
    }
    return d;
  }

  // Entropy of the distributions that predicted each token (aligned like NextTokenLogProbs: column t for token t).
  static torch::Tensor ShiftedEntropy(const torch::Tensor& logits) {
    torch::Tensor e = Entropy(logits.narrow(1, 0, logits.size(1) - 1));
    return torch::cat({torch::zeros({e.size(0), 1}, e.options()), e}, 1);
  }

  // Generates k samples per prompt, scores them, and computes old/reference log-probs and values.
  absl::StatusOr<Rollout> Collect(TrainContext& ctx, const Dataset& data, const std::vector<size_t>& items,
                                  int64_t step, double temperature, Metrics* m) {
    const PpoSpec& p = ctx.spec->ppo;
    std::vector<std::vector<int32_t>> prompts;
    for (size_t i : items) prompts.push_back(engine_->EncodePrompt(data.records[i].prompt));
    rollout::SamplingParams sp;
    sp.temperature = temperature;
    sp.max_new_tokens = p.max_new_tokens;
    sp.n = temperature > 0 ? k_ : 1;
    sp.seed = ctx.spec->seed * 1000003ULL + static_cast<uint64_t>(step);
    ctx.model->eval();
    rollout::GenerateStats stats;
    auto samples = engine_->Generate(prompts, sp, &stats);
    ctx.model->train();
    if (!samples.ok()) return samples.status();

    std::vector<const Record*> recs;
    std::vector<std::string> texts;
    std::vector<TokenizedExample> rows;
    for (const auto& s : *samples) {
      recs.push_back(&data.records[items[static_cast<size_t>(s.prompt_index)]]);
      texts.push_back(s.text);
      TokenizedExample e;
      e.input_ids = prompts[static_cast<size_t>(s.prompt_index)];
      e.loss_mask.assign(e.input_ids.size(), 0);
      e.input_ids.insert(e.input_ids.end(), s.token_ids.begin(), s.token_ids.end());
      e.loss_mask.resize(e.input_ids.size(), 1);
      rows.push_back(std::move(e));
    }
    ASSIGN_OR_RETURN(ScoredBatch scored, rewards_->Score(recs, texts));

    CollateOptions co;
    co.pad_id = ctx.tokenizer->pad_id().value_or(0);
    ASSIGN_OR_RETURN(Batch b, Collate(rows, co));
    Rollout r;
    r.ids = b.input_ids;
    r.attention = b.attention_mask;
    r.response = b.labels.ne(kIgnoreIndex).to(torch::kFloat);
    r.scores = torch::tensor(scored.total, torch::kDouble).to(torch::kFloat);
    {
      torch::NoGradGuard no_grad;
      ModelOutput out = ctx.model->forward(r.ids, r.attention);
      r.old_logp = NextTokenLogProbs(out.logits, r.ids) * r.response;
      if (value_head_) r.values = value_head_->forward(out.hidden).squeeze(-1) * r.response;
      if (ctx.peft) {
        ctx.peft->SetEnabled(false);
        r.ref_logp = NextTokenLogProbs(ctx.model->forward(r.ids, r.attention).logits, r.ids) * r.response;
        ctx.peft->SetEnabled(true);
      } else {
        r.ref_logp = NextTokenLogProbs(reference_->forward(r.ids, r.attention).logits, r.ids) * r.response;
      }
    }
    // The rollout/learner consistency check: the engine's log-probs against the learner's on the same tokens.
    double gap = 0;
    for (size_t i = 0; i < samples->size(); ++i) {
      const auto& s = (*samples)[i];
      const int64_t start = static_cast<int64_t>(prompts[static_cast<size_t>(s.prompt_index)].size());
      for (size_t t = 0; t < s.logprobs.size(); ++t) {
        double learner = r.old_logp[static_cast<int64_t>(i)][start + static_cast<int64_t>(t)].item<double>();
        gap = std::max(gap, std::abs(learner - s.logprobs[t]));
      }
    }
    double correct = 0, arithmetic = 0, refusals_harmful = 0, harmful = 0, refusals_benign = 0, benign = 0;
    double length = 0;
    for (size_t i = 0; i < texts.size(); ++i) {
      const std::string kind = recs[i]->ExtraString("kind").value_or("");
      if (kind == "arithmetic") {
        arithmetic += 1;
        correct += scored.parts[i].count("arithmetic") ? scored.parts[i]["arithmetic"] : 0;
      } else if (kind == "harmful") {
        harmful += 1;
        refusals_harmful += IsRefusalText(texts[i]);
      } else if (kind == "benign") {
        benign += 1;
        refusals_benign += IsRefusalText(texts[i]);
      }
      length += static_cast<double>((*samples)[i].token_ids.size());
    }
    const double n = static_cast<double>(texts.size());
    (*m)["reward/mean"] = r.scores.mean().item<double>();
    (*m)["reward/std"] = n > 1 ? r.scores.std().item<double>() : 0.0;
    (*m)["rollout/logprob_gap"] = gap;
    (*m)["rollout/length"] = length / n;
    (*m)["rollout/tokens_per_s"] =
        static_cast<double>(stats.generated_tokens) / std::max(1e-9, stats.prefill_seconds + stats.decode_seconds);
    (*m)["objective/kl"] =
        ((r.old_logp - r.ref_logp) * r.response).sum(1).mean().item<double>();
    if (arithmetic > 0) (*m)["task/accuracy"] = correct / arithmetic;
    if (harmful > 0) (*m)["task/refusal_rate"] = refusals_harmful / harmful;
    if (benign > 0) (*m)["task/false_refusal_rate"] = refusals_benign / benign;
    return r;
  }

  static double IsRefusalText(const std::string& text) { return IsRefusal(text) ? 1.0 : 0.0; }

  void ComputeAdvantages(TrainContext& ctx, Rollout* r, Metrics* m) {
    const PpoSpec& p = ctx.spec->ppo;
    torch::Tensor kl = (r->old_logp - r->ref_logp) * r->response;  // per token
    if (algorithm_ == Algorithm::kPpo) {
      // Reward: -β KL per token, plus the score at the last response token.
      torch::Tensor last = (r->response.cumsum(1) == r->response.sum(1, true)).to(torch::kFloat) * r->response;
      torch::Tensor rewards = -kl_coef_ * kl + last * r->scores.unsqueeze(1);
      auto [adv, ret] = Gae(rewards, r->values, r->response, p.gamma, p.lam);
      r->advantages = p.whiten_advantages ? MaskedWhiten(adv, r->response) : adv;
      r->returns = ret;
      return;
    }
    torch::Tensor seq;
    if (algorithm_ == Algorithm::kGrpo) {
      seq = GrpoAdvantages(r->scores, k_);
    } else {
      seq = RlooAdvantages(r->scores - kl_coef_ * kl.sum(1), k_);
    }
    r->advantages = seq.unsqueeze(1) * r->response;
    (*m)["reward/advantage_abs"] = seq.abs().mean().item<double>();
  }

  Algorithm algorithm_ = Algorithm::kPpo;
  int64_t k_ = 1;
  double kl_coef_ = 0;
  Dataset train_, eval_;
  std::unique_ptr<rollout::Engine> engine_;
  std::unique_ptr<RewardFunction> rewards_;
  CausalLM reference_{nullptr};
  torch::nn::Linear value_head_{nullptr};
};

}  // namespace

std::unique_ptr<Objective> MakeRlObjective() { return std::make_unique<RlObjective>(); }

}  // namespace alignd::worker
