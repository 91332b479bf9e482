// Pretraining and SFT: next-token cross-entropy on the trained tokens (all of a text; the assistant turns or the
// completion of a conversation), averaged over the trained tokens of the whole step (so gradient accumulation gives the
// same gradient as one big batch).
#include <cmath>

#include "absl/strings/str_cat.h"
#include "common/base/status.h"
#include "common/data/collate.h"
#include "common/data/dataset.h"
#include "common/data/example_tokenizer.h"
#include "learner/algorithm.h"
#include "learner/losses.h"

namespace alignd::learner {
namespace {

absl::StatusOr<std::vector<TokenizedExample>> LoadExamples(const TrainContext& ctx, const std::string& path) {
  return LoadTrainedSequences(ctx, path, AlgorithmName(ctx.spec->algorithm), /*chosen_of_pairs=*/false,
                              ctx.spec->data.pack);
}

// Summed NLL and trained-token count of `examples` under the model; backward of sum/denominator when `denominator`>0.
// The LM head runs only where a token is trained, its gradients made with the loss (learner/losses.h HeadNllSum).
absl::StatusOr<std::pair<double, int64_t>> Forward(TrainContext& ctx, const std::vector<TokenizedExample>& examples,
                                                   double denominator) {
  CollateOptions co;
  co.pad_id = ctx.tokenizer->pad_id().value_or(0);
  co.device = ctx.device;
  ASSIGN_OR_RETURN(Batch batch, ctx.spec->data.padding_free ? CollatePacked(examples, co) : Collate(examples, co));
  torch::Tensor mask = batch.labels.ne(kIgnoreIndex);
  torch::Tensor hidden = RunModel(ctx, batch);
  torch::Tensor nll = MaskedNextTokenNllSum(hidden, ctx.model->lm_head_weight(), batch.input_ids, mask);
  if (denominator > 0) (nll / denominator).backward();
  return std::make_pair(nll.item<double>(), static_cast<int64_t>(mask.sum().item<int64_t>()));
}

int64_t TrainedTokens(const TokenizedExample& e) {
  int64_t n = 0;
  for (size_t t = 1; t < e.loss_mask.size(); ++t) n += e.loss_mask[t];
  return n;
}

class LmAlgorithm : public Objective {
 public:
  absl::Status Prepare(TrainContext& ctx) override {
    ASSIGN_OR_RETURN(train_, LoadExamples(ctx, ctx.spec->data.train));
    for (const std::string& path : ctx.spec->data.mix) {
      ASSIGN_OR_RETURN(std::vector<TokenizedExample> more, LoadExamples(ctx, path));
      train_.insert(train_.end(), more.begin(), more.end());
    }
    if (!ctx.spec->data.eval.empty()) {
      ASSIGN_OR_RETURN(eval_, LoadExamples(ctx, ctx.spec->data.eval));
    }
    return absl::OkStatus();
  }
  size_t size() const override { return train_.size(); }
  // The loss is a mean over the step's trained tokens, so a data-parallel rank's shard weighs its token count.
  double ShardWeight(const std::vector<size_t>& shard) const override {
    int64_t tokens = 0;
    for (size_t i : shard) tokens += TrainedTokens(train_[i]);
    return static_cast<double>(tokens);
  }

  absl::StatusOr<Metrics> Step(TrainContext& ctx, int64_t step, const std::vector<size_t>& items,
                               const ApplyStep& apply) override {
    int64_t tokens = 0, input_tokens = 0;
    for (size_t i : items) {
      tokens += TrainedTokens(train_[i]);
      input_tokens += static_cast<int64_t>(train_[i].input_ids.size());
    }
    if (tokens == 0) return absl::InternalError("a training batch has no trained token");
    double nll = 0;
    for (const auto& micro : Split(items, ctx.spec->train.grad_accum)) {
      std::vector<TokenizedExample> batch;
      for (size_t i : micro) batch.push_back(train_[i]);
      ASSIGN_OR_RETURN(auto r, Forward(ctx, batch, static_cast<double>(tokens)));
      nll += r.first;
    }
    double grad_norm = apply();
    return Metrics{{"train/loss", nll / static_cast<double>(tokens)},
                   {"train/tokens", static_cast<double>(tokens)},
                   {"train/input_tokens", static_cast<double>(input_tokens)},
                   {"train/grad_norm", grad_norm}};
  }

  absl::StatusOr<Metrics> Evaluate(TrainContext& ctx) override {
    if (eval_.empty()) return Metrics{};
    torch::NoGradGuard no_grad;
    double nll = 0;
    int64_t tokens = 0;
    const size_t bs = static_cast<size_t>(ctx.spec->train.batch_size);
    for (size_t b = 0; b < eval_.size(); b += bs) {
      std::vector<TokenizedExample> batch(eval_.begin() + b, eval_.begin() + std::min(eval_.size(), b + bs));
      ASSIGN_OR_RETURN(auto r, Forward(ctx, batch, 0));
      nll += r.first;
      tokens += r.second;
    }
    double loss = nll / static_cast<double>(std::max<int64_t>(tokens, 1));
    return Metrics{{"eval/loss", loss}, {"eval/perplexity", std::exp(loss)}, {"eval/tokens", double(tokens)}};
  }

 private:
  std::vector<TokenizedExample> train_, eval_;
};

}  // namespace

std::unique_ptr<Objective> MakeLmObjective() { return std::make_unique<LmAlgorithm>(); }

absl::StatusOr<TokenizedDataset> TokenizeForSpec(const TrainContext& ctx, const Dataset& data, bool pack) {
  TokenizeOptions opts;
  opts.chat_template = ctx.spec->data.chat_template;
  opts.max_length = pack ? 0 : static_cast<int32_t>(ctx.spec->data.max_length);
  opts.max_prompt_length = static_cast<int32_t>(ctx.spec->data.max_prompt_length);
  ASSIGN_OR_RETURN(ExampleTokenizer tok, ExampleTokenizer::Create(ctx.tokenizer.get(), opts));
  return tok.Tokenize(data);
}

absl::StatusOr<std::vector<TokenizedExample>> LoadTrainedSequences(const TrainContext& ctx, const std::string& path,
                                                                   absl::string_view who, bool chosen_of_pairs,
                                                                   bool pack) {
  ASSIGN_OR_RETURN(Dataset data, ReadJsonl(path));
  if (data.schema == DatasetSchema::kPrompt || (data.schema == DatasetSchema::kPreference && !chosen_of_pairs)) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": ", who, " needs ",
                     chosen_of_pairs ? "answers to train on (text, messages, prompt+completion or preference records)"
                                     : "text, messages or prompt+completion records",
                     ", got ", SchemaName(data.schema)));
  }
  ASSIGN_OR_RETURN(TokenizedDataset tokenized, TokenizeForSpec(ctx, data, pack));
  std::vector<TokenizedExample> out = std::move(tokenized.examples);
  for (TokenizedPair& pair : tokenized.pairs) out.push_back(std::move(pair.chosen));
  if (out.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": no record has a token to train on (", tokenized.first_skip_reason, ")"));
  }
  if (pack) return PackExamples(out, ctx.spec->data.max_length, true);
  return out;
}

torch::Tensor RunModel(TrainContext& ctx, const Batch& batch) {
  if (batch.packed()) return ctx.model->forward_packed_hidden(batch.input_ids, batch.offsets, batch.position_ids);
  return ctx.model->forward_hidden(batch.input_ids, batch.attention_mask, batch.position_ids);
}

std::vector<std::vector<size_t>> Split(const std::vector<size_t>& items, int64_t parts) {
  std::vector<std::vector<size_t>> out;
  const size_t per = items.size() / static_cast<size_t>(std::max<int64_t>(parts, 1));
  for (size_t b = 0; b < items.size(); b += std::max<size_t>(per, 1)) {
    out.emplace_back(items.begin() + b, items.begin() + std::min(items.size(), b + std::max<size_t>(per, 1)));
  }
  return out;
}

}  // namespace alignd::learner
