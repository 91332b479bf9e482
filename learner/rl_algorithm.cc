// Reinforcement learning from rewards on generated samples: PPO (actor-critic with a value head on the policy's
// hidden states, per-token KL penalty in the reward, GAE, clipped surrogate and value losses), and the critic-free
// GRPO (group-normalised advantages, KL to the reference in the loss) and RLOO (leave-one-out baseline, KL in the
// reward); and online DPO, which makes a preference pair of each prompt's best- and worst-scored samples and trains
// on it with the DPO loss (Guo et al. 2024, "Direct language model alignment from online AI feedback"; TRL's
// OnlineDPOTrainer, OpenRLHF's iterative DPO). Generation goes through the rollout engine: in-process on the live
// policy weights, or on the job's rollout workers (learner/remote.h) after learner rank 0 has published the weights;
// several learners share each rollout batch (rank 0 collects it and broadcasts it) and split every minibatch. The
// reference policy is the base with PEFT switched off, or a frozen copy of the starting weights. PPO, GRPO and RLOO
// can also train on demonstrations beside the RL loss (PPO-ptx: ppo.ptx_coef, data.ptx).
#include <torch/serialize.h>

#include <chrono>
#include <cmath>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "collective/learner_group.h"
#include "common/base/status.h"
#include "common/data/collate.h"
#include "common/data/dataset.h"
#include "learner/algorithm.h"
#include "learner/losses.h"
#include "learner/peft_glue.h"
#include "learner/remote.h"
#include "reward/model_scorer.h"
#include "reward/registry.h"
#include "rollout/engine.h"
#include "rollout/logprob_gap.h"

namespace alignd::learner {
namespace {

// The rows of one rollout batch, right-padded: prompt + response, with the response positions marked.
struct Rollout {
  torch::Tensor ids, attention, response;                         // [N, T] int64, int64, float (1 on generated tokens)
  torch::Tensor old_logp, ref_logp, values, advantages, returns;  // [N, T] float
  torch::Tensor scores;                                           // [N]
};

class RlObjective : public Objective {
 public:
  absl::Status Prepare(TrainContext& ctx) override {
    const JobSpec& spec = *ctx.spec;
    algorithm_ = spec.algorithm;
    k_ = algorithm_ == Algorithm::kPpo ? 1 : spec.ppo.samples_per_prompt;
    online_dpo_ = algorithm_ == Algorithm::kOnlineDpo;
    if (algorithm_ != Algorithm::kPpo && k_ < 2) {
      return absl::InvalidArgumentError(
          absl::StrCat("ppo.samples_per_prompt: ", AlgorithmName(algorithm_), " needs at least 2 samples per prompt"));
    }
    kl_coef_ = spec.ppo.kl_coef;
    ASSIGN_OR_RETURN(train_, LoadPrompts(spec.data.train));
    if (!spec.data.eval.empty()) {
      ASSIGN_OR_RETURN(eval_, LoadPrompts(spec.data.eval));
    }
    if (spec.ppo.ptx_coef > 0) {
      ASSIGN_OR_RETURN(ptx_, LoadTrainedSequences(ctx, spec.data.ptx, "data.ptx", /*chosen_of_pairs=*/true));
    }
    rollout::Engine::Options eo;
    eo.model = ctx.model;
    eo.tokenizer = ctx.tokenizer;
    eo.chat_template = spec.data.chat_template;
    ASSIGN_OR_RETURN(engine_, rollout::Engine::Create(eo));
    rank_ = ctx.group ? ctx.group->rank() : 0;
    world_ = ctx.group ? ctx.group->world_size() : 1;
    const int64_t rows_per_minibatch = spec.train.batch_size * k_ / std::max<int64_t>(1, spec.ppo.minibatches);
    // (Online DPO's pairs are as many as the prompts whose samples scored differently: it splits what it gets.)
    if (world_ > 1 && !online_dpo_ && rows_per_minibatch % world_ != 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "ppo.minibatches: each minibatch (train.batch_size x samples / minibatches = ", rows_per_minibatch,
          " rows) must split evenly over the ", world_, " learners"));
    }
    // Learner rank 0 drives the loop. In a distributed job it generates on the rollout workers (publishing a weight
    // version to them before every step's generation) and scores on the reward servers; without them (or in
    // `alignd train`) it does either in-process.
    const bool remote_rollout = ctx.remote != nullptr && !ctx.remote->rollout_addresses.empty();
    const bool remote_reward = ctx.remote != nullptr && !ctx.remote->reward_addresses.empty();
    if (remote_rollout && rank_ == 0) {
      ASSIGN_OR_RETURN(generator_, RemoteGenerator::Create(*ctx.remote));
      ASSIGN_OR_RETURN(publisher_, WeightPublisher::Create(*ctx.remote));
    }
    if (remote_reward && rank_ == 0) {
      ASSIGN_OR_RETURN(rewards_, MakeRemoteReward(*ctx.remote));
    } else if (rank_ == 0) {
      ASSIGN_OR_RETURN(
          std::vector<reward::WeightedScorer> parts,
          reward::MakeScorers(spec.rewards, reward::ModelScorerContext(spec.data.chat_template, ctx.device)));
      ASSIGN_OR_RETURN(rewards_, reward::MakeLocalReward(std::move(parts)));
    }
    if (ctx.peft == nullptr) {
      // A frozen copy of the starting weights serves as the reference policy.
      reference_ = CausalLM(ctx.model->config());
      reference_->to(ctx.device);
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
      value_head_->to(ctx.device);
      value_head_->weight.zero_();
      value_head_->bias.zero_();
    }
    return absl::OkStatus();
  }

  size_t size() const override { return train_.records.size(); }

  std::vector<torch::Tensor> extra_parameters() override {
    return value_head_ ? value_head_->parameters() : std::vector<torch::Tensor>{};
  }
  bool shards_items() const override { return false; }  // rank 0 collects the whole batch and broadcasts it
  nlohmann::json SaveState() const override { return {{"kl_coef", kl_coef_}}; }
  absl::Status LoadState(const nlohmann::json& state) override {
    kl_coef_ = state.value("kl_coef", kl_coef_);
    workers_current_ = false;  // the restored weights are not the spec's model the rollout workers load
    return absl::OkStatus();
  }

  absl::StatusOr<Metrics> Step(TrainContext& ctx, int64_t step, const std::vector<size_t>& items,
                               const ApplyStep& apply) override {
    const PpoSpec& p = ctx.spec->ppo;
    Metrics m;
    Rollout r;
    if (rank_ == 0) {
      if (publisher_ && published_ < step) RETURN_IF_ERROR(Publish(ctx, static_cast<uint64_t>(step), &m));
      ASSIGN_OR_RETURN(r, Collect(ctx, train_, items, step, p.temperature, &m));
      if (!online_dpo_) ComputeAdvantages(ctx, &r, &m);
    }
    if (world_ > 1) RETURN_IF_ERROR(ShareRollout(ctx, &r));
    if (online_dpo_) {
      RETURN_IF_ERROR(OnlineDpoUpdate(ctx, r, step, apply, &m));
      workers_current_ = false;
      return m;
    }

    // Several epochs of minibatch updates over the rollout batch.
    const auto update_start = std::chrono::steady_clock::now();
    const int64_t n = r.ids.size(0);
    const int64_t per = std::max<int64_t>(1, n / p.minibatches);
    double pg_sum = 0, vf_sum = 0, ent_sum = 0, clip_sum = 0, akl_sum = 0, grad_sum = 0, ptx_sum = 0;
    int64_t updates = 0;
    torch::Generator gen = at::detail::createCPUGenerator(ctx.spec->seed * 7919 + static_cast<uint64_t>(step));
    // PPO-ptx's draws: a stream of the step's own (so a resumed run draws what the uninterrupted one did) and of the
    // learner's (each learner trains on its own demonstrations, as each takes its own share of every minibatch).
    torch::Generator ptx_gen = at::detail::createCPUGenerator(
        (ctx.spec->seed * 104729 + static_cast<uint64_t>(step)) * 131 + static_cast<uint64_t>(rank_));
    for (int64_t epoch = 0; epoch < p.epochs; ++epoch) {
      // Drawn on the CPU (the generator is the CPU's, so the order is the same on every device), used on the batch's.
      torch::Tensor perm = torch::randperm(n, gen, torch::kLong).to(r.ids.device());
      for (int64_t b = 0; b + per <= n; b += per) {
        torch::Tensor rows = perm.narrow(0, b, per);
        if (world_ > 1) rows = rows.narrow(0, rank_ * (per / world_), per / world_);  // this learner's share
        auto pick = [&](const torch::Tensor& t) { return t.index_select(0, rows); };
        torch::Tensor ids = pick(r.ids), att = pick(r.attention), mask = pick(r.response);
        torch::Tensor hidden = ctx.model->forward_hidden(ids, att);
        HeadLogProbs head = MaskedNextTokenLogProbs(hidden, ctx.model->lm_head_weight(), ids, mask, true);
        torch::Tensor logp = head.logp;
        PolicyLoss pl = PpoPolicyLoss(logp, pick(r.old_logp), pick(r.advantages), mask, p.clip);
        torch::Tensor entropy = MaskedMean(head.entropy, mask);
        torch::Tensor loss = pl.loss;
        if (p.entropy_coef != 0) loss = loss - p.entropy_coef * entropy;
        if (value_head_) {
          torch::Tensor values = value_head_->forward(hidden).squeeze(-1);
          torch::Tensor vf = ClippedValueLoss(values, pick(r.values), pick(r.returns), mask, p.value_clip);
          loss = loss + p.vf_coef * vf;
          vf_sum += vf.item<double>();
        }
        if (algorithm_ == Algorithm::kGrpo && kl_coef_ > 0) {
          // k3 estimator of KL(π || π_ref), as in the GRPO paper.
          torch::Tensor d = pick(r.ref_logp) - logp;
          loss = loss + kl_coef_ * MaskedMean(torch::exp(d) - d - 1, mask);
        }
        if (!ptx_.empty()) {
          ASSIGN_OR_RETURN(torch::Tensor ptx, PtxLoss(ctx, ptx_gen));
          loss = loss + p.ptx_coef * ptx;
          ptx_sum += ptx.item<double>();
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
    if (world_ > 1) {  // the loss terms as the mean over learners (each saw its share of every minibatch)
      std::vector<double> sums = {pg_sum, vf_sum, ent_sum, clip_sum, akl_sum, ptx_sum};
      RETURN_IF_ERROR(ctx.group->AllReduceMean(&sums));
      pg_sum = sums[0], vf_sum = sums[1], ent_sum = sums[2], clip_sum = sums[3], akl_sum = sums[4], ptx_sum = sums[5];
    }
    const double u = static_cast<double>(std::max<int64_t>(updates, 1));
    m["time/update_s"] = Seconds(update_start);
    // The rollout batch's real tokens (prompt and response, all learners), each trained on `epochs` times.
    m["train/tokens"] = r.attention.sum().item<double>() * static_cast<double>(p.epochs);
    m["policy/loss"] = pg_sum / u;
    m["policy/clipfrac"] = clip_sum / u;
    m["policy/approxkl"] = akl_sum / u;
    m["objective/entropy"] = ent_sum / u;
    m["train/grad_norm"] = grad_sum / u;
    if (value_head_) m["value/loss"] = vf_sum / u;
    m["train/loss"] = (pg_sum + p.vf_coef * vf_sum + p.ptx_coef * ptx_sum) / u;
    if (!ptx_.empty()) m["ptx/loss"] = ptx_sum / u;
    workers_current_ = false;
    m["objective/kl_coef"] = kl_coef_;
    if (p.adaptive_kl && rank_ == 0) {  // other learners get the coefficient with the next rollout
      // Ziegler et al.: nudge the coefficient towards the target KL, by at most ±20% of the horizon-scaled error.
      double err = std::clamp(m["objective/kl"] / p.kl_target - 1.0, -0.2, 0.2);
      kl_coef_ *= 1.0 + err * static_cast<double>(n) / p.kl_horizon;
    }
    return m;
  }

  absl::StatusOr<Metrics> Evaluate(TrainContext& ctx) override {
    if (eval_.records.empty() || rank_ != 0) return Metrics{};
    std::vector<size_t> all(eval_.records.size());
    for (size_t i = 0; i < all.size(); ++i) all[i] = i;
    Metrics m;
    if (publisher_ && !workers_current_) {
      // The rollout workers generate with the weights of the last publish, from before this step's update: they get
      // the live ones first, as the version the next step would publish (a step publishes its own number before it
      // updates, so that is the last publish + 1; the next step then publishes nothing).
      RETURN_IF_ERROR(Publish(ctx, published_ + 1, &m));
    }
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
          absl::StrCat(path, ": ppo/grpo/rloo/online_dpo need prompt records, got ", SchemaName(d.schema)));
    }
    return d;
  }

  // The mean token NLL of ppo.ptx_batch_size demonstrations drawn from `gen` (with replacement).
  absl::StatusOr<torch::Tensor> PtxLoss(TrainContext& ctx, torch::Generator& gen) {
    torch::Tensor picks = torch::randint(static_cast<int64_t>(ptx_.size()), {ctx.spec->ppo.ptx_batch_size}, gen,
                                         torch::TensorOptions().dtype(torch::kLong));
    std::vector<TokenizedExample> examples;
    for (int64_t i = 0; i < picks.size(0); ++i) examples.push_back(ptx_[static_cast<size_t>(picks[i].item<int64_t>())]);
    CollateOptions co;
    co.pad_id = ctx.tokenizer->pad_id().value_or(0);
    co.device = ctx.device;
    ASSIGN_OR_RETURN(Batch batch, Collate(examples, co));
    torch::Tensor mask = batch.labels.ne(kIgnoreIndex);
    torch::Tensor nll = MaskedNextTokenNllSum(RunModel(ctx, batch), ctx.model->lm_head_weight(), batch.input_ids, mask);
    return nll / mask.sum().clamp_min(1).to(nll.scalar_type());
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
    const auto generate_start = std::chrono::steady_clock::now();
    absl::StatusOr<std::vector<rollout::Sample>> samples =
        generator_ ? generator_->Generate(prompts, sp) : engine_->Generate(prompts, sp);
    const double generate_seconds = Seconds(generate_start);
    ctx.model->train();
    if (!samples.ok()) return samples.status();
    int64_t generated_tokens = 0, staleness = 0;
    for (const auto& s : *samples) {
      generated_tokens += static_cast<int64_t>(s.token_ids.size());
      if (publisher_)
        staleness = std::max(staleness, static_cast<int64_t>(published_) - static_cast<int64_t>(s.weight_version));
    }
    if (publisher_ && staleness > p.max_staleness) {
      return absl::FailedPreconditionError(absl::StrCat(
          "rollout samples are ", staleness, " weight versions old; ppo.max_staleness is ", p.max_staleness));
    }

    std::vector<reward::ScoreInput> inputs;
    std::vector<TokenizedExample> rows;
    for (const auto& s : *samples) {
      inputs.push_back(reward::InputFor(data.records[items[static_cast<size_t>(s.prompt_index)]], s.text));
      TokenizedExample e;
      e.input_ids = prompts[static_cast<size_t>(s.prompt_index)];
      e.loss_mask.assign(e.input_ids.size(), 0);
      e.input_ids.insert(e.input_ids.end(), s.token_ids.begin(), s.token_ids.end());
      e.loss_mask.resize(e.input_ids.size(), 1);
      rows.push_back(std::move(e));
    }
    const auto score_start = std::chrono::steady_clock::now();
    ASSIGN_OR_RETURN(std::vector<reward::ScoreResult> scored, rewards_->Score(inputs));
    std::vector<double> totals;
    for (const reward::ScoreResult& result : scored) totals.push_back(result.total);
    (*m)["time/score_s"] = Seconds(score_start);
    (*m)["time/generate_s"] = generate_seconds;
    if (publisher_) (*m)["rollout/staleness"] = static_cast<double>(staleness);

    CollateOptions co;
    co.pad_id = ctx.tokenizer->pad_id().value_or(0);
    co.device = ctx.device;
    ASSIGN_OR_RETURN(Batch b, Collate(rows, co));
    Rollout r;
    r.ids = b.input_ids;
    r.attention = b.attention_mask;
    r.response = b.labels.ne(kIgnoreIndex).to(torch::kFloat);
    r.scores = torch::tensor(totals, torch::kDouble).to(ctx.device, torch::kFloat);
    const auto experience_start = std::chrono::steady_clock::now();
    {
      torch::NoGradGuard no_grad;
      // Log-probs of the response tokens only: the LM head runs on those positions alone.
      auto response_logp = [&](CausalLMImpl& model, const torch::Tensor& hidden) {
        return MaskedNextTokenLogProbs(hidden, model.lm_head_weight(), r.ids, r.response).logp;
      };
      torch::Tensor hidden = ctx.model->forward_hidden(r.ids, r.attention);
      r.old_logp = response_logp(*ctx.model, hidden);
      if (value_head_) r.values = value_head_->forward(hidden).squeeze(-1) * r.response;
      if (ctx.peft) {
        ctx.peft->SetEnabled(false);
        r.ref_logp = response_logp(*ctx.model, ctx.model->forward_hidden(r.ids, r.attention));
        ctx.peft->SetEnabled(true);
      } else {
        r.ref_logp = response_logp(*reference_, reference_->forward_hidden(r.ids, r.attention));
      }
    }
    (*m)["time/experience_s"] = Seconds(experience_start);
    // The rollout/learner consistency check: the engine's log-probs against the learner's (each sample's row of
    // old_logp, after its prompt) on the same tokens.
    std::vector<std::vector<float>> learner(samples->size());
    {
      torch::Tensor old = r.old_logp.to(torch::kCPU, torch::kFloat).contiguous();
      auto rows = old.accessor<float, 2>();
      for (size_t i = 0; i < samples->size(); ++i) {
        const auto& s = (*samples)[i];
        const size_t start = prompts[static_cast<size_t>(s.prompt_index)].size();
        for (size_t t = 0; t < s.logprobs.size(); ++t) learner[i].push_back(rows[i][start + t]);
      }
    }
    ASSIGN_OR_RETURN(double gap, rollout::MaxLogProbGap(*samples, learner));
    double length = 0;
    for (const auto& sample : *samples) length += static_cast<double>(sample.token_ids.size());
    const double n = static_cast<double>(inputs.size());
    (*m)["reward/mean"] = r.scores.mean().item<double>();
    (*m)["reward/std"] = n > 1 ? r.scores.std().item<double>() : 0.0;
    (*m)["rollout/logprob_gap"] = gap;
    (*m)["rollout/length"] = length / n;
    (*m)["rollout/tokens_per_s"] = static_cast<double>(generated_tokens) / std::max(1e-9, generate_seconds);
    (*m)["objective/kl"] = ((r.old_logp - r.ref_logp) * r.response).sum(1).mean().item<double>();
    // Each part's mean over the samples it applies to, and the registry's task metrics over theirs.
    for (const auto& [name, mean] : reward::PartMeans(scored)) (*m)["reward/parts/" + name] = mean;
    ASSIGN_OR_RETURN(auto task, reward::ScoreTaskMetrics(reward::DefaultRegistry().MetricNames(), inputs));
    for (const auto& [name, values] : task) {
      const reward::Mean mean = reward::MeanOfSet(values);
      if (mean.mean.has_value()) (*m)["task/" + name] = *mean.mean;
    }
    return r;
  }

  static double Seconds(std::chrono::steady_clock::time_point since) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - since).count();
  }

  // Sends the live policy weights to the rollout workers as `version` (= the step about to generate). With PEFT only
  // the adapter's tensors travel (the rollout workers attach the same adapters to the same base).
  absl::Status Publish(TrainContext& ctx, uint64_t version, Metrics* m) {
    std::vector<std::pair<std::string, torch::Tensor>> tensors;
    std::string adapter;
    if (auto* glue = dynamic_cast<PeftGlue*>(ctx.peft)) {
      for (auto& [name, t] : glue->named_parameters()) tensors.emplace_back(name, t.detach());
      adapter = kJobAdapter;
    } else {
      for (const auto& p : ctx.model->named_parameters()) tensors.emplace_back(p.key(), p.value().detach());
    }
    ASSIGN_OR_RETURN(WeightPublisher::Stats stats, publisher_->Publish(tensors, version, adapter));
    published_ = version;
    workers_current_ = true;
    (*m)["weights/sync_seconds"] = stats.seconds;
    (*m)["weights/sync_bytes"] = static_cast<double>(stats.bytes);
    (*m)["weights/version"] = static_cast<double>(version);
    return absl::OkStatus();
  }

  // Learner rank 0's rollout batch (and the KL coefficient) to every learner.
  absl::Status ShareRollout(TrainContext& ctx, Rollout* r) {
    std::string bytes;
    const bool ppo = algorithm_ == Algorithm::kPpo;
    if (rank_ == 0) {
      auto or_empty = [](const torch::Tensor& t) { return t.defined() ? t : torch::zeros({0}); };
      std::vector<torch::Tensor> parts = {r->ids,
                                          r->attention,
                                          r->response,
                                          r->old_logp,
                                          r->ref_logp,
                                          or_empty(r->advantages),
                                          or_empty(r->values),
                                          or_empty(r->returns),
                                          r->scores,
                                          torch::tensor({kl_coef_}, torch::kDouble)};
      for (torch::Tensor& part : parts) part = part.to(torch::kCPU);  // the bytes name no device
      std::ostringstream out;
      try {
        torch::save(parts, out);
      } catch (const c10::Error& e) {
        return absl::InternalError(absl::StrCat("serialising the rollout batch: ", e.what_without_backtrace()));
      }
      bytes = out.str();
    }
    RETURN_IF_ERROR(ctx.group->BroadcastBytes(&bytes, 0));
    if (rank_ == 0) return absl::OkStatus();
    std::vector<torch::Tensor> parts;
    try {
      std::istringstream in(bytes);
      torch::load(parts, in, ctx.device);
    } catch (const c10::Error& e) {
      return absl::DataLossError(absl::StrCat("the rollout batch from learner rank 0: ", e.what_without_backtrace()));
    }
    if (parts.size() != 10) return absl::DataLossError("the rollout batch from learner rank 0 is incomplete");
    r->ids = parts[0], r->attention = parts[1], r->response = parts[2], r->old_logp = parts[3];
    r->ref_logp = parts[4], r->advantages = parts[5], r->scores = parts[8];
    if (ppo) r->values = parts[6], r->returns = parts[7];
    kl_coef_ = parts[9].item<double>();
    return absl::OkStatus();
  }

  // Online DPO's update: each prompt's best and worst sample (BestWorstPairs) as a preference pair, trained on with
  // dpo.loss (sigmoid or ipo), dpo.beta, dpo.label_smoothing, dpo.rpo_alpha and dpo.reward_scale (each pair's score
  // gap as its label: reward-aware) against the reference policy's log-probs from the rollout, for ppo.epochs passes
  // of ppo.minibatches minibatches. Every learner picks the same pairs from the shared scores and takes its share of
  // each minibatch; pairs past the last whole minibatch wait for the next epoch's order, and a batch with fewer pairs
  // than learners updates nothing.
  absl::Status OnlineDpoUpdate(TrainContext& ctx, const Rollout& r, int64_t step, const ApplyStep& apply, Metrics* m) {
    const PpoSpec& p = ctx.spec->ppo;
    const DpoSpec& d = ctx.spec->dpo;
    const auto update_start = std::chrono::steady_clock::now();
    const torch::Tensor pairs = BestWorstPairs(r.scores, k_);  // [P, 2] on the CPU
    const int64_t n = pairs.size(0);
    (*m)["pairs/fraction"] = static_cast<double>(n) / static_cast<double>(r.scores.size(0) / k_);
    // The reference's summed response log-probs per row (ref_logp is 0 off the response), length-averaged for IPO.
    torch::Tensor ref = r.ref_logp.sum(1);
    if (d.loss == "ipo") ref = ref / r.response.sum(1).clamp_min(1);
    int64_t per = std::min(n, std::max<int64_t>(n / p.minibatches, world_));
    per -= per % world_;
    double loss_sum = 0, chosen_sum = 0, rejected_sum = 0, right_sum = 0, logp_c = 0, logp_r = 0, nll_sum = 0;
    double grad_sum = 0, tokens = 0;
    int64_t updates = 0;
    // Each pair's score gap, once: its mean is logged, and reward-aware labels index it with the minibatches' picks
    // (the difference of two float scores, exact in double, rounds to the float one).
    torch::Tensor gaps;
    if (n > 0) {
      torch::Tensor scores = r.scores.to(torch::kCPU, torch::kDouble);
      torch::Tensor all = scores.index_select(0, pairs.select(1, 0)) - scores.index_select(0, pairs.select(1, 1));
      (*m)["pairs/score_gap"] = all.mean().item<double>();
      if (d.reward_scale > 0) gaps = all.to(r.scores.device(), r.scores.scalar_type());
    }
    torch::Generator gen = at::detail::createCPUGenerator(ctx.spec->seed * 7919 + static_cast<uint64_t>(step));
    for (int64_t epoch = 0; per > 0 && epoch < p.epochs; ++epoch) {
      torch::Tensor perm = torch::randperm(n, gen, torch::kLong);
      for (int64_t b = 0; b + per <= n; b += per) {
        torch::Tensor sel = perm.narrow(0, b, per);
        if (world_ > 1) sel = sel.narrow(0, rank_ * (per / world_), per / world_);  // this learner's share
        const int64_t count = sel.size(0);
        torch::Tensor picked = pairs.index_select(0, sel);
        torch::Tensor rows = torch::cat({picked.select(1, 0), picked.select(1, 1)}).to(r.ids.device());
        torch::Tensor ids = r.ids.index_select(0, rows), att = r.attention.index_select(0, rows);
        torch::Tensor mask = r.response.index_select(0, rows);
        torch::Tensor hidden = ctx.model->forward_hidden(ids, att);
        torch::Tensor seq = MaskedNextTokenLogProbs(hidden, ctx.model->lm_head_weight(), ids, mask).logp.sum(1);
        torch::Tensor avg = seq / mask.sum(1).clamp_min(1);
        torch::Tensor refs = ref.index_select(0, rows), nll;
        auto chosen = [&](const torch::Tensor& t) { return t.narrow(0, 0, count); };
        auto rejected = [&](const torch::Tensor& t) { return t.narrow(0, count, count); };
        torch::Tensor gap = gaps.defined() ? gaps.index_select(0, sel.to(gaps.device())) : torch::Tensor();
        PreferenceLoss pl =
            ReferencePreferenceLoss(d.loss, chosen(seq), rejected(seq), chosen(avg), rejected(avg), chosen(refs),
                                    rejected(refs), d.beta, d.label_smoothing, d.rpo_alpha, &nll, d.reward_scale, gap);
        if (nll.defined()) nll_sum += nll.item<double>();
        pl.loss.backward();
        grad_sum += apply();
        loss_sum += pl.loss.item<double>();
        chosen_sum += pl.chosen_rewards.mean().item<double>();
        rejected_sum += pl.rejected_rewards.mean().item<double>();
        right_sum += (pl.chosen_rewards > pl.rejected_rewards).to(torch::kDouble).mean().item<double>();
        logp_c += chosen(seq).detach().mean().item<double>();
        logp_r += rejected(seq).detach().mean().item<double>();
        tokens += att.sum().item<double>();
        ++updates;
      }
    }
    std::vector<double> sums = {loss_sum, chosen_sum, rejected_sum, right_sum, logp_c, logp_r, nll_sum, tokens};
    if (world_ > 1) RETURN_IF_ERROR(ctx.group->AllReduceMean(&sums));  // the mean over learners' shares
    const double u = static_cast<double>(std::max<int64_t>(updates, 1));
    (*m)["time/update_s"] = Seconds(update_start);
    (*m)["train/tokens"] = sums[7] * static_cast<double>(world_);  // the trained pairs' real tokens, all learners
    (*m)["train/updates"] = static_cast<double>(updates);
    (*m)["train/loss"] = sums[0] / u;
    (*m)["train/grad_norm"] = grad_sum / u;
    if (updates == 0) return absl::OkStatus();
    (*m)["rewards/chosen"] = sums[1] / u;
    (*m)["rewards/rejected"] = sums[2] / u;
    (*m)["rewards/margins"] = (sums[1] - sums[2]) / u;
    (*m)["rewards/accuracies"] = sums[3] / u;
    (*m)["logps/chosen"] = sums[4] / u;
    (*m)["logps/rejected"] = sums[5] / u;
    if (d.rpo_alpha > 0) (*m)["nll_loss"] = sums[6] / u;
    return absl::OkStatus();
  }

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
      seq = GrpoAdvantages(r->scores, k_, p.scale_rewards);
    } else {
      seq = RlooAdvantages(r->scores - kl_coef_ * kl.sum(1), k_);
    }
    r->advantages = seq.unsqueeze(1) * r->response;
    (*m)["reward/advantage_abs"] = seq.abs().mean().item<double>();
  }

  Algorithm algorithm_ = Algorithm::kPpo;
  bool online_dpo_ = false;
  int64_t k_ = 1;
  double kl_coef_ = 0;
  Dataset train_, eval_;
  std::vector<TokenizedExample> ptx_;        // data.ptx, when ppo.ptx_coef > 0
  std::unique_ptr<rollout::Engine> engine_;  // in-process generation, and prompt encoding everywhere
  std::unique_ptr<reward::Reward> rewards_;  // rank 0 only
  int rank_ = 0, world_ = 1;
  std::unique_ptr<RemoteGenerator> generator_;  // rank 0 of a distributed job
  std::unique_ptr<WeightPublisher> publisher_;  // rank 0 of a distributed job
  uint64_t published_ = 0;                      // the weight version the rollout workers hold
  // Whether the rollout workers hold the learner's live weights: so at a fresh start (both load the spec's model);
  // not after an update or a restored checkpoint, until the next publish.
  bool workers_current_ = true;
  CausalLM reference_{nullptr};
  torch::nn::Linear value_head_{nullptr};
};

}  // namespace

std::unique_ptr<Objective> MakeRlObjective() { return std::make_unique<RlObjective>(); }

}  // namespace alignd::learner
