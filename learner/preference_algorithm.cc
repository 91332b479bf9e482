// Pairwise algorithms on prompt/chosen/rejected records: the Bradley-Terry reward model, and the DPO family (DPO,
// conservative DPO, IPO, ORPO). Pairs are collated chosen rows first, then rejected rows.
#include <algorithm>
#include <cmath>
#include <functional>
#include <map>

#include "absl/strings/str_cat.h"
#include "common/base/status.h"
#include "common/data/collate.h"
#include "common/data/dataset.h"
#include "common/data/example_tokenizer.h"
#include "learner/algorithm.h"
#include "learner/losses.h"

namespace alignd::learner {
namespace {

absl::StatusOr<std::vector<TokenizedPair>> LoadPairs(const TrainContext& ctx, const std::string& path) {
  ASSIGN_OR_RETURN(Dataset data, ReadJsonl(path));
  if (data.schema != DatasetSchema::kPreference) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", AlgorithmName(ctx.spec->algorithm),
                                                   " needs prompt+chosen+rejected records, got ",
                                                   SchemaName(data.schema)));
  }
  ASSIGN_OR_RETURN(TokenizedDataset tokenized, TokenizeForSpec(ctx, data));
  if (tokenized.pairs.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": no usable pair (", tokenized.first_skip_reason, ")"));
  }
  return tokenized.pairs;
}

std::vector<TokenizedPair> Select(const std::vector<TokenizedPair>& all, const std::vector<size_t>& idx) {
  std::vector<TokenizedPair> out;
  for (size_t i : idx) out.push_back(all[i]);
  return out;
}

// Tokens of the pairs' sequences (prompt and response, chosen and rejected; no padding): train/input_tokens.
double InputTokens(const std::vector<TokenizedPair>& pairs, const std::vector<size_t>& items) {
  size_t n = 0;
  for (size_t i : items) n += pairs[i].chosen.input_ids.size() + pairs[i].rejected.input_ids.size();
  return static_cast<double>(n);
}

struct PairForward {
  Batch batch;
  torch::Tensor hidden;  // the model's final hidden states, laid out like batch.input_ids
  torch::Tensor mask;    // trained (response) tokens, float, laid out like batch.input_ids
};

absl::StatusOr<PairForward> RunPairs(TrainContext& ctx, const std::vector<TokenizedPair>& pairs) {
  CollateOptions co;
  co.pad_id = ctx.tokenizer->pad_id().value_or(0);
  co.device = ctx.device;
  PairForward f;
  ASSIGN_OR_RETURN(f.batch, ctx.spec->data.padding_free ? CollatePairsPacked(pairs, co) : CollatePairs(pairs, co));
  f.hidden = RunModel(ctx, f.batch);
  f.mask = f.batch.labels.ne(kIgnoreIndex).to(torch::kFloat);
  return f;
}

// One training step over `items` of `pairs`: forwards each of the train.grad_accum micro-batches, asks `loss_of` for
// its loss (it records the metrics too) and backpropagates it weighted by the micro-batch's share of the step.
absl::Status BackwardPairs(
    TrainContext& ctx, const std::vector<TokenizedPair>& pairs, const std::vector<size_t>& items,
    const std::function<torch::Tensor(const PairForward&, const std::vector<size_t>&)>& loss_of) {
  const double n = static_cast<double>(items.size());
  for (const auto& micro : Split(items, ctx.spec->train.grad_accum)) {
    ASSIGN_OR_RETURN(PairForward f, RunPairs(ctx, Select(pairs, micro)));
    (loss_of(f, micro) * (static_cast<double>(micro.size()) / n)).backward();
  }
  return absl::OkStatus();
}

// Forwards all `pairs` without gradients, train.batch_size at a time, and hands each batch and its indices to `visit`.
absl::Status ForEachPairBatch(TrainContext& ctx, const std::vector<TokenizedPair>& pairs,
                              const std::function<void(const PairForward&, const std::vector<size_t>&)>& visit) {
  torch::NoGradGuard no_grad;
  const size_t bs = static_cast<size_t>(std::max<int64_t>(ctx.spec->train.batch_size, 1));
  for (size_t b = 0; b < pairs.size(); b += bs) {
    std::vector<size_t> idx;
    for (size_t i = b; i < std::min(pairs.size(), b + bs); ++i) idx.push_back(i);
    ASSIGN_OR_RETURN(PairForward f, RunPairs(ctx, Select(pairs, idx)));
    visit(f, idx);
  }
  return absl::OkStatus();
}

// ---- Reward model ----------------------------------------------------------------------------------------------

// The score at each sequence's last token: the score head on those positions only.
torch::Tensor LastTokenScores(TrainContext& ctx, const PairForward& f) {
  torch::Tensor last = f.hidden.reshape({-1, f.hidden.size(-1)}).index_select(0, f.batch.LastTokenIndex());
  return ctx.model->head(last).select(1, 0);
}

// Held-out accuracy per kind of pair and per contrast (the records' "kind" and "contrast"), e.g.
// <prefix>/arithmetic and <prefix>/contrast/wrong_answer: where a preference objective is right and where not.
class AccuracyByGroup {
 public:
  // `right`: one flag per pair of `idx`, in order (a bool or uint8 tensor).
  void Add(const std::vector<TokenizedPair>& pairs, const std::vector<size_t>& idx, torch::Tensor right) {
    right = right.to(torch::kCPU, torch::kUInt8).contiguous();
    const uint8_t* r = right.data_ptr<uint8_t>();
    for (size_t i = 0; i < idx.size(); ++i) {
      const TokenizedPair& pair = pairs[idx[i]];
      for (const std::string& group : {pair.kind, pair.contrast.empty() ? "" : "contrast/" + pair.contrast}) {
        if (group.empty()) continue;
        auto& [correct, count] = groups_[group];
        correct += r[i];
        count += 1;
      }
    }
  }
  void AddTo(const std::string& prefix, Metrics* m) const {
    for (const auto& [group, c] : groups_) (*m)[prefix + "/" + group] = c.first / c.second;
  }

 private:
  std::map<std::string, std::pair<double, double>> groups_;  // group -> (correct, count)
};

// A pair objective's step and held-out evaluation, written once for the reward model and the DPO family.
// `accumulate(f, idx, sums, right)` adds a batch's metrics to `sums`, fills `right` (when given) with which of its
// pairs the objective ranks right, and returns the batch's loss; Sums::Done(loss_prefix, prefix) makes the metrics.
template <typename Sums>
using PairAccumulate =
    std::function<torch::Tensor(const PairForward&, const std::vector<size_t>&, Sums*, torch::Tensor*)>;

template <typename Sums>
absl::StatusOr<Metrics> PairStep(TrainContext& ctx, const std::vector<TokenizedPair>& pairs,
                                 const std::vector<size_t>& items, const ApplyStep& apply, const std::string& prefix,
                                 const PairAccumulate<Sums>& accumulate) {
  Sums sums;
  RETURN_IF_ERROR(BackwardPairs(ctx, pairs, items, [&](const PairForward& f, const std::vector<size_t>& micro) {
    return accumulate(f, micro, &sums, nullptr);
  }));
  const double grad_norm = apply();
  Metrics m = sums.Done("train/", prefix);
  m["train/grad_norm"] = grad_norm;
  m["train/input_tokens"] = InputTokens(pairs, items);
  return m;
}

// `accuracy`: the prefix of the per-group accuracies (AccuracyByGroup). No metrics for no held-out pairs.
template <typename Sums>
absl::StatusOr<Metrics> PairEvaluate(TrainContext& ctx, const std::vector<TokenizedPair>& pairs,
                                     const std::string& prefix, const std::string& accuracy,
                                     const PairAccumulate<Sums>& accumulate) {
  if (pairs.empty()) return Metrics{};
  Sums sums;
  AccuracyByGroup groups;
  RETURN_IF_ERROR(ForEachPairBatch(ctx, pairs, [&](const PairForward& f, const std::vector<size_t>& idx) {
    torch::Tensor right;
    accumulate(f, idx, &sums, &right);
    groups.Add(pairs, idx, right);
  }));
  Metrics m = sums.Done("eval/", prefix);
  groups.AddTo(accuracy, &m);
  return m;
}

class RewardModelAlgorithm : public Objective {
 public:
  absl::Status Prepare(TrainContext& ctx) override {
    if (ctx.model->config().head != HeadKind::kScore) {
      return absl::InvalidArgumentError("rm: the model must have a score head");
    }
    ASSIGN_OR_RETURN(train_, LoadPairs(ctx, ctx.spec->data.train));
    if (!ctx.spec->data.eval.empty()) {
      ASSIGN_OR_RETURN(eval_, LoadPairs(ctx, ctx.spec->data.eval));
    }
    return absl::OkStatus();
  }
  size_t size() const override { return train_.size(); }

  absl::StatusOr<Metrics> Step(TrainContext& ctx, int64_t, const std::vector<size_t>& items,
                               const ApplyStep& apply) override {
    return PairStep<Sums>(ctx, train_, items, apply, "rm/", Accumulator(ctx));
  }

  absl::StatusOr<Metrics> Evaluate(TrainContext& ctx) override {
    return PairEvaluate<Sums>(ctx, eval_, "eval/rm/", "eval/rm/accuracy", Accumulator(ctx));
  }

 private:
  struct Sums {
    double loss = 0, correct = 0, margin = 0, count = 0;
    Metrics Done(const std::string& loss_prefix, const std::string& prefix) const {
      return Metrics{{loss_prefix + "loss", loss / count},
                     {prefix + "accuracy", correct / count},
                     {prefix + "margin", margin / count}};
    }
  };

  PairAccumulate<Sums> Accumulator(TrainContext& ctx) {
    return [this, &ctx](const PairForward& f, const std::vector<size_t>&, Sums* sums, torch::Tensor* right) {
      return Accumulate(ctx, f, sums, right);
    };
  }

  // Adds the batch's loss, accuracy and margin to `sums` and returns its loss; `correct` (optional) receives which
  // pairs were ranked right, [B] uint8.

  torch::Tensor Accumulate(TrainContext& ctx, const PairForward& f, Sums* sums, torch::Tensor* correct = nullptr) {
    torch::Tensor scores = LastTokenScores(ctx, f);
    const int64_t b = scores.size(0) / 2;
    torch::Tensor chosen = scores.narrow(0, 0, b), rejected = scores.narrow(0, b, b);
    torch::Tensor loss = BradleyTerryLoss(chosen, rejected, ctx.spec->rm.margin);
    sums->loss += loss.item<double>() * b;
    torch::Tensor right = (chosen > rejected).to(torch::kUInt8);
    sums->correct += right.sum().item<double>();
    if (correct != nullptr) *correct = right;
    sums->margin += (chosen - rejected).sum().item<double>();
    sums->count += b;
    return loss;
  }

  std::vector<TokenizedPair> train_, eval_;
};

// ---- DPO family -------------------------------------------------------------------------------------------------

class PreferenceAlgorithm : public Objective {
 public:
  absl::Status Prepare(TrainContext& ctx) override {
    loss_ = ctx.spec->dpo.loss;
    ASSIGN_OR_RETURN(train_, LoadPairs(ctx, ctx.spec->data.train));
    if (!ctx.spec->data.eval.empty()) {
      ASSIGN_OR_RETURN(eval_, LoadPairs(ctx, ctx.spec->data.eval));
    }
    if (loss_ != "orpo") {
      // Reference log-probs, once, with the model as it is before training (with PEFT: adapters off).
      RETURN_IF_ERROR(ReferenceLogps(ctx, train_, &ref_train_));
      RETURN_IF_ERROR(ReferenceLogps(ctx, eval_, &ref_eval_));
    }
    return absl::OkStatus();
  }
  size_t size() const override { return train_.size(); }

  absl::StatusOr<Metrics> Step(TrainContext& ctx, int64_t, const std::vector<size_t>& items,
                               const ApplyStep& apply) override {
    return PairStep<Sums>(ctx, train_, items, apply, "", Accumulator(ctx, ref_train_));
  }

  absl::StatusOr<Metrics> Evaluate(TrainContext& ctx) override {
    return PairEvaluate<Sums>(ctx, eval_, "eval/", "eval/rewards/accuracies", Accumulator(ctx, ref_eval_));
  }

 private:
  struct Sums {
    double loss = 0, chosen = 0, rejected = 0, correct = 0, logp_c = 0, logp_r = 0, nll = 0, count = 0;
    bool rpo = false;
    Metrics Done(const std::string& loss_prefix, const std::string& prefix) const {
      Metrics m{{loss_prefix + "loss", loss / count},
                {prefix + "rewards/chosen", chosen / count},
                {prefix + "rewards/rejected", rejected / count},
                {prefix + "rewards/margins", (chosen - rejected) / count},
                {prefix + "rewards/accuracies", correct / count},
                {prefix + "logps/chosen", logp_c / count},
                {prefix + "logps/rejected", logp_r / count}};
      if (rpo) m[prefix + "nll_loss"] = nll / count;
      return m;
    }
  };

  // Summed (and length-averaged) response log-probs per sequence.
  static std::pair<torch::Tensor, torch::Tensor> SequenceLogps(TrainContext& ctx, const PairForward& f) {
    torch::Tensor lp = MaskedNextTokenLogProbs(f.hidden, ctx.model->lm_head_weight(), f.batch.input_ids, f.mask).logp;
    torch::Tensor sum = f.batch.SumPerSequence(lp);
    return {sum, sum / f.batch.SumPerSequence(f.mask).clamp_min(1)};
  }

  absl::Status ReferenceLogps(TrainContext& ctx, const std::vector<TokenizedPair>& pairs,
                              std::vector<std::pair<float, float>>* out) {
    if (ctx.peft) ctx.peft->SetEnabled(false);
    out->clear();
    absl::Status status = ForEachPairBatch(ctx, pairs, [&](const PairForward& f, const std::vector<size_t>& idx) {
      auto [sum, avg] = SequenceLogps(ctx, f);
      torch::Tensor v = (loss_ == "ipo" ? avg : sum).to(torch::kCPU, torch::kFloat).contiguous();
      const float* p = v.data_ptr<float>();
      const size_t n = idx.size();
      for (size_t i = 0; i < n; ++i) out->emplace_back(p[i], p[n + i]);
    });
    if (ctx.peft) ctx.peft->SetEnabled(true);
    return status;
  }

  // `ref`: the reference log-probs of the pairs the batches index (ref_train_ or ref_eval_).
  PairAccumulate<Sums> Accumulator(TrainContext& ctx, const std::vector<std::pair<float, float>>& ref) {
    return [this, &ctx, &ref](const PairForward& f, const std::vector<size_t>& idx, Sums* sums, torch::Tensor* right) {
      return Accumulate(ctx, f, ref, idx, sums, right);
    };
  }

  torch::Tensor Accumulate(TrainContext& ctx, const PairForward& f, const std::vector<std::pair<float, float>>& ref,
                           const std::vector<size_t>& idx, Sums* sums, torch::Tensor* right = nullptr) {
    auto [sum, avg] = SequenceLogps(ctx, f);
    const int64_t b = static_cast<int64_t>(idx.size());
    torch::Tensor sc = sum.narrow(0, 0, b), sr = sum.narrow(0, b, b);
    torch::Tensor ac = avg.narrow(0, 0, b), ar = avg.narrow(0, b, b);
    PreferenceLoss pl;
    const DpoSpec& d = ctx.spec->dpo;
    if (loss_ == "orpo") {
      pl = OrpoLoss(ac, ar, -ac, d.beta);
    } else {
      std::vector<float> rc, rr;
      for (size_t i : idx) {
        rc.push_back(ref[i].first);
        rr.push_back(ref[i].second);
      }
      torch::Tensor ref_c = torch::tensor(rc).to(ctx.device), ref_r = torch::tensor(rr).to(ctx.device);
      torch::Tensor nll;
      pl = ReferencePreferenceLoss(loss_, sc, sr, ac, ar, ref_c, ref_r, d.beta, d.label_smoothing, d.rpo_alpha, &nll);
      if (nll.defined()) {
        sums->nll += nll.item<double>() * b;
        sums->rpo = true;
      }
    }
    sums->loss += pl.loss.item<double>() * b;
    sums->chosen += pl.chosen_rewards.sum().item<double>();
    sums->rejected += pl.rejected_rewards.sum().item<double>();
    torch::Tensor ranked_right = pl.chosen_rewards > pl.rejected_rewards;
    sums->correct += ranked_right.sum().item<double>();
    if (right != nullptr) *right = ranked_right;
    sums->logp_c += sc.detach().sum().item<double>();
    sums->logp_r += sr.detach().sum().item<double>();
    sums->count += b;
    return pl.loss;
  }

  std::string loss_;
  std::vector<TokenizedPair> train_, eval_;
  std::vector<std::pair<float, float>> ref_train_, ref_eval_;
};

}  // namespace

std::unique_ptr<Objective> MakeRewardModelObjective() { return std::make_unique<RewardModelAlgorithm>(); }
std::unique_ptr<Objective> MakePreferenceObjective() { return std::make_unique<PreferenceAlgorithm>(); }

}  // namespace alignd::learner
