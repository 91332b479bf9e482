#include "learner/trainer.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/nn.h>
#include <torch/optim/adamw.h>

#include <chrono>
#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "collective/learner_group.h"
#include "common/base/cpu.h"
#include "common/base/file_util.h"
#include "common/base/logging.h"  // last: LOG is glog's
#include "common/base/status.h"
#include "common/model/autocast.h"
#include "common/model/compute_threads.h"
#include "common/model/device.h"
#include "common/model/hf_model.h"
#include "common/text/chat_template.h"
#include "common/text/model_chat_template.h"
#include "learner/algorithm.h"
#include "learner/checkpoint.h"
#include "learner/lr_schedule.h"
#include "learner/metrics_log.h"
#include "learner/peft_glue.h"
#include "learner/sampler.h"

namespace alignd::learner {
namespace {

using json = nlohmann::json;

std::unique_ptr<Objective> ForSpec(const JobSpec& spec) {
  switch (spec.algorithm) {
    case Algorithm::kPretrain:
    case Algorithm::kSft:
      return MakeLmObjective();
    case Algorithm::kRm:
      return MakeRewardModelObjective();
    case Algorithm::kDpo:
      return MakePreferenceObjective();
    case Algorithm::kPpo:
    case Algorithm::kGrpo:
    case Algorithm::kRloo:
    case Algorithm::kOnlineDpo:
      return MakeRlObjective();
  }
  return nullptr;
}

// A reward model starts from a language model's folder: the same trunk with a fresh `score` head.
ModelConfig AsScoreModel(ModelConfig c) {
  if (c.head == HeadKind::kScore) return c;
  c.head = HeadKind::kScore;
  c.num_labels = 1;
  const std::string suffix = c.family == ModelFamily::kGpt2 ? "LMHeadModel" : "ForCausalLM";
  c.architecture = c.architecture.substr(0, c.architecture.size() - suffix.size()) + "ForSequenceClassification";
  return c;
}

// Fresh weights (an init model, or a reward model's new score head) are drawn from `generator`.
absl::Status BuildModel(const JobSpec& spec, at::Generator& generator, TrainContext* ctx) {
  const ModelSpec& m = spec.model;
  if (m.path.empty()) {
    ctx->tokenizer = MakeByteTokenizer();
    if (m.init_vocab_size != 0 && m.init_vocab_size < ctx->tokenizer->vocab_size()) {
      return absl::InvalidArgumentError(absl::StrCat("model.init.vocab_size: ", m.init_vocab_size,
                                                     " is smaller than the tokenizer's ", ctx->tokenizer->vocab_size(),
                                                     " tokens"));
    }
    const int64_t vocab = std::max<int64_t>(m.init_vocab_size, ctx->tokenizer->vocab_size());
    ModelConfig c = m.init_arch == "gpt2"
                        ? TinyGpt2Config(vocab, m.init_hidden_size, m.init_layers, m.init_heads, m.init_max_positions)
                        : TinyLlamaConfig(vocab, m.init_hidden_size, m.init_layers, m.init_heads, m.init_kv_heads,
                                          m.init_max_positions);
    if (m.init_arch == "qwen2") {
      c.model_type = "qwen2";
      c.architecture = "Qwen2ForCausalLM";
      c.attention_bias = true;
    }
    c.bos_token_id = ctx->tokenizer->bos_id();
    c.eos_token_id = ctx->tokenizer->eos_id();
    c.pad_token_id = ctx->tokenizer->pad_id();
    if (spec.algorithm == Algorithm::kRm) c = AsScoreModel(c);
    RETURN_IF_ERROR(Annotate(c.Validate(), "model.init"));
    ctx->model = CausalLM(c);
    ctx->model->InitWeights(generator);
    return absl::OkStatus();
  }
  LoadOptions lo;
  ASSIGN_OR_RETURN(LoadedModel loaded, LoadModelDir(m.path, lo));
  ctx->tokenizer = std::shared_ptr<Tokenizer>(std::move(loaded.tokenizer));
  if (spec.algorithm == Algorithm::kRm && loaded.config.head != HeadKind::kScore) {
    ModelConfig c = AsScoreModel(loaded.config);
    ctx->model = CausalLM(c);
    ctx->model->InitWeights(generator);  // the score head keeps this initialisation
    RETURN_IF_ERROR(LoadWeights(m.path, *ctx->model, {"score.weight"}));
    return absl::OkStatus();
  }
  if (spec.algorithm != Algorithm::kRm && loaded.config.head != HeadKind::kLanguageModel) {
    return absl::InvalidArgumentError(absl::StrCat("model.path: ", m.path, " has a score head; ",
                                                   AlgorithmName(spec.algorithm), " needs a language model"));
  }
  ctx->model = loaded.model;
  return absl::OkStatus();
}

class Run {
 public:
  Run(const JobSpec& spec, const TrainOptions& options)
      : spec_(spec),
        options_(options),
        group_(options.group),
        rank0_(group_ == nullptr || group_->rank() == 0),
        world_(group_ == nullptr ? 1 : group_->world_size()),
        generator_(at::detail::createCPUGenerator(spec.seed)) {}

  absl::StatusOr<TrainResult> Go() {
    // The thread count is this thread's (and its OpenMP workers') for the run; every random draw of the run comes
    // from generator_, so roles sharing a process (`alignd local`, ranks that are threads in the tests) leave each
    // other's settings alone.
    ScopedComputeThreads threads(static_cast<int>(spec_.threads));
    algorithm_ = ForSpec(spec_);
    RETURN_IF_ERROR(ShardSpec());
    ctx_.spec = &spec_;
    ctx_.group = group_;
    ctx_.remote = options_.remote;
    if (options_.device.has_value()) {
      ctx_.device = *options_.device;
    } else {
      ASSIGN_OR_RETURN(ctx_.device, ResolveDevice(spec_.device, "resources.device"));
    }
    RETURN_IF_ERROR(BuildModel(spec_, generator_, &ctx_));
    try {
      ctx_.model->to(ctx_.device);
    } catch (const std::exception& e) {
      return TorchErrorStatus(e, absl::StrCat("moving the model to ", ctx_.device.str()));
    }
    ASSIGN_OR_RETURN(peft_, AttachPeft(spec_, ctx_.model, generator_));
    ctx_.peft = peft_.get();
    bf16_ = spec_.model.dtype == "bfloat16";
    cuda_ = ctx_.device.is_cuda();
    if (bf16_ && !cuda_ && rank0_ && !CpuHasBf16Matmul()) {
      LOG(WARNING) << "model.dtype: bfloat16 on a CPU without AVX512-BF16 or AMX: bf16 matrix products may run "
                      "slower than float32 here";
    }
    {
      AutocastScope autocast(bf16_, cuda_);  // the reference log-probs in the same precision as the policy's
      RETURN_IF_ERROR(algorithm_->Prepare(ctx_));
    }
    if (algorithm_->size() == 0) return absl::InvalidArgumentError(absl::StrCat(spec_.data.train, ": no data"));
    BuildOptimizer();
    sampler_ = std::make_unique<Sampler>(algorithm_->size(), spec_.seed);
    if (rank0_) RETURN_IF_ERROR(MakeDirs(spec_.output_dir));

    TrainResult result;
    if (options_.resume) {
      std::string latest = LatestCheckpoint(spec_.output_dir);
      if (!latest.empty()) {
        ASSIGN_OR_RETURN(result.resumed_from, Restore(latest));
      }
    }
    if (rank0_) {
      MetricsLog::Options log;
      log.dir = spec_.output_dir;
      log.resumed_from = result.resumed_from;
      ASSIGN_OR_RETURN(metrics_, MetricsLog::Open(log));
      RETURN_IF_ERROR(WriteFileAtomic(JoinPath(spec_.output_dir, "spec.json"), SpecJson().dump(2)));
    }
    ctx_.model->train();
    for (int64_t step = result.resumed_from + 1; step <= spec_.train.steps; ++step) {
      const auto step_start = std::chrono::steady_clock::now();
      ASSIGN_OR_RETURN(bool cancelled, Cancelled());
      if (cancelled) return absl::CancelledError(absl::StrCat("cancelled at step ", step));
      const double lr = LearningRate(spec_.train, step - 1);
      for (auto& group : optimizer_->param_groups()) {
        static_cast<torch::optim::AdamWOptions&>(group.options()).lr(lr);
      }
      std::vector<size_t> items = sampler_->Next(static_cast<size_t>(spec_.train.batch_size));
      ASSIGN_OR_RETURN(Metrics m, RunStep(step, items));
      m["train/lr"] = lr;
      m["time/step_s"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - step_start).count();
      m["train/epoch"] = static_cast<double>(sampler_->epoch()) +
                         static_cast<double>(sampler_->position()) / static_cast<double>(algorithm_->size());
      if (!std::isfinite(m["train/loss"])) {
        return absl::InternalError(absl::StrCat("step ", step, ": the loss is not finite"));
      }
      result.last = m;
      result.steps = step;
      if (step % spec_.train.log_every == 0 || step == spec_.train.steps) RETURN_IF_ERROR(Log(step, m));
      if (options_.on_step) options_.on_step(step, m);
      if (spec_.train.eval_every > 0 && step % spec_.train.eval_every == 0 && step != spec_.train.steps) {
        ASSIGN_OR_RETURN(result.eval, Eval(step));
      }
      if (spec_.train.checkpoint_every > 0 && step % spec_.train.checkpoint_every == 0) {
        RETURN_IF_ERROR(CheckpointEverywhere(step));
      }
      if (options_.stop_after_step > 0 && step == options_.stop_after_step) return result;
    }
    ASSIGN_OR_RETURN(result.eval, Eval(spec_.train.steps));
    if (rank0_) {
      ASSIGN_OR_RETURN(result.final_dir, SaveFinal());
    }
    return result;
  }

 private:
  // Data parallelism: checks the batch split and derives the spec each rank's Step sees (see trainer.h).
  absl::Status ShardSpec() {
    sharded_ = world_ > 1 && algorithm_->shards_items();
    shard_spec_ = spec_;
    if (!sharded_) return absl::OkStatus();
    const int64_t w = world_, batch = spec_.train.batch_size, accum = spec_.train.grad_accum;
    if (batch % w != 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("train.batch_size: ", batch, " is not divisible by the ", w, " data-parallel learners"));
    }
    shard_spec_.train.batch_size = batch / w;
    shard_spec_.train.grad_accum = accum % w == 0 ? accum / w : std::min(accum, batch / w);
    return absl::OkStatus();
  }

  // Whether to stop before the next step; in a group every rank takes part, and one rank's cancel stops them all.
  absl::StatusOr<bool> Cancelled() {
    std::vector<double> flag{options_.cancelled && options_.cancelled() ? 1.0 : 0.0};
    if (world_ > 1) RETURN_IF_ERROR(group_->AllReduceMean(&flag));
    return flag[0] > 0;
  }

  // One optimiser step on `items` (the global batch); with sharding, this rank's part of it, its gradients and
  // metrics averaged over the ranks with the weights of their shards.
  absl::StatusOr<Metrics> RunStep(int64_t step, const std::vector<size_t>& items) {
    std::vector<size_t> mine = items;
    grad_scale_ = 1.0;
    if (sharded_) {
      mine = ShardOf(items, group_->rank(), world_);
      const double weight = algorithm_->ShardWeight(mine);
      std::vector<double> mean{weight};
      RETURN_IF_ERROR(Annotate(group_->AllReduceMean(&mean), absl::StrCat("step ", step)));
      // mean_r(scale_r * x_r) = sum_r(w_r * x_r) / sum_r(w_r); a value equal on every rank stays as it is.
      if (mean[0] > 0) grad_scale_ = weight / mean[0];
      ctx_.spec = &shard_spec_;
    }
    apply_status_ = absl::OkStatus();
    absl::StatusOr<Metrics> m;
    try {
      AutocastScope autocast(bf16_, cuda_);
      m = algorithm_->Step(ctx_, step, mine, [this] { return Apply(); });
    } catch (const c10::Error& e) {
      m = TorchErrorStatus(e, absl::StrCat(AlgorithmName(spec_.algorithm), " step ", step, " on ", ctx_.device.str()));
    }
    ctx_.spec = &spec_;
    if (!apply_status_.ok()) m = apply_status_;
    if (!m.ok()) return Annotate(m.status(), absl::StrCat("step ", step));
    if (sharded_) {
      std::vector<double> values;
      for (const auto& [key, value] : *m) values.push_back(value * grad_scale_);
      RETURN_IF_ERROR(Annotate(group_->AllReduceMean(&values), absl::StrCat("step ", step, ": metrics")));
      size_t i = 0;
      for (auto& [key, value] : *m) value = values[i++];
    }
    return m;
  }

  void BuildOptimizer() {
    // Decoupled weight decay on matrices only; biases, norms and (1-D) gains are not decayed, as HF's Trainer does.
    std::vector<torch::Tensor> decay, no_decay;
    for (const auto& p : TrainableParameters()) (p.dim() >= 2 ? decay : no_decay).push_back(p);
    auto opts = [&](double wd) {
      return std::make_unique<torch::optim::AdamWOptions>(torch::optim::AdamWOptions(spec_.train.lr)
                                                              .betas({spec_.train.beta1, spec_.train.beta2})
                                                              .eps(spec_.train.eps)
                                                              .weight_decay(wd));
    };
    std::vector<torch::optim::OptimizerParamGroup> groups;
    groups.emplace_back(decay, opts(spec_.train.weight_decay));
    groups.emplace_back(no_decay, opts(0.0));
    optimizer_ = std::make_unique<torch::optim::AdamW>(groups, torch::optim::AdamWOptions(spec_.train.lr));
  }

  std::vector<torch::Tensor> TrainableParameters() {
    std::vector<torch::Tensor> out;
    if (peft_) {
      out = peft_->parameters();
    } else {
      for (auto& p : ctx_.model->parameters()) {
        if (p.requires_grad()) out.push_back(p);
      }
    }
    for (auto& p : algorithm_->extra_parameters()) out.push_back(p);
    return out;
  }

  // With a group, a failed all-reduce is kept in apply_status_ (the objective sees a NaN norm) and no step is taken.
  double Apply() {
    constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
    if (!apply_status_.ok()) return kNaN;
    auto params = TrainableParameters();
    if (world_ > 1) {
      if (grad_scale_ != 1.0) {
        torch::NoGradGuard no_grad;
        for (auto& p : params) {
          if (p.grad().defined()) p.mutable_grad().mul_(grad_scale_);
        }
      }
      apply_status_ = group_->AllReduceMeanGradients(params);
      if (!apply_status_.ok()) return kNaN;
    }
    double limit = spec_.train.max_grad_norm > 0 ? spec_.train.max_grad_norm : 1e30;
    double norm = torch::nn::utils::clip_grad_norm_(params, limit);
    optimizer_->step();
    optimizer_->zero_grad();
    if (bf16_) AutocastScope::Renew();
    return norm;
  }

  absl::StatusOr<Metrics> Eval(int64_t step) {
    ctx_.model->eval();
    absl::StatusOr<Metrics> m;
    try {
      AutocastScope autocast(bf16_, cuda_);
      m = algorithm_->Evaluate(ctx_);
    } catch (const c10::Error& e) {
      m = TorchErrorStatus(e, absl::StrCat("evaluation on ", ctx_.device.str()));
    }
    ctx_.model->train();
    if (m.ok() && !m->empty()) {
      RETURN_IF_ERROR(Log(step, *m));
      if (options_.on_eval) options_.on_eval(step, *m);
    }
    return m;
  }

  json SpecJson() const {
    json j;
    j["name"] = spec_.name;
    j["algorithm"] = std::string(AlgorithmName(spec_.algorithm));
    j["seed"] = spec_.seed;
    j["model"] = spec_.model.path;
    j["train_data"] = spec_.data.train;
    j["steps"] = spec_.train.steps;
    return j;
  }

  absl::Status Log(int64_t step, const Metrics& m) { return rank0_ ? metrics_->Write(step, m) : absl::OkStatus(); }

  absl::Status SaveModelTo(const std::string& dir) {
    if (peft_) return peft_->SaveAdapter(dir);
    RETURN_IF_ERROR(SaveModelDir(dir, *ctx_.model, ctx_.tokenizer.get()));
    return RecordChatTemplate(dir);
  }

  // A model trained on prompts and conversations rendered with data.chat_template names it in its
  // tokenizer_config.json, so that `alignd generate` and Hugging Face's apply_chat_template render prompts as training
  // did. Pretraining renders none, so its models keep the base's.
  absl::Status RecordChatTemplate(const std::string& dir) {
    if (spec_.algorithm == Algorithm::kPretrain || ctx_.tokenizer == nullptr) return absl::OkStatus();
    ASSIGN_OR_RETURN(ChatTemplate chat_template, ChatTemplate::Create(spec_.data.chat_template));
    return WriteModelChatTemplate(dir, chat_template.jinja());
  }

  // Rank 0 writes the checkpoint; then every rank meets in a collective (a barrier that also carries whether the
  // write succeeded), so that no rank runs ahead of a checkpoint it may resume from and all fail together.
  absl::Status CheckpointEverywhere(int64_t step) {
    absl::Status written = rank0_ ? Checkpoint(step) : absl::OkStatus();
    if (world_ > 1) {
      std::vector<double> failed{written.ok() ? 0.0 : 1.0};
      RETURN_IF_ERROR(Annotate(group_->AllReduceMean(&failed), absl::StrCat("checkpoint of step ", step)));
      if (written.ok() && failed[0] > 0) {
        return absl::AbortedError(absl::StrCat("rank 0 could not write the checkpoint of step ", step));
      }
    }
    RETURN_IF_ERROR(written);
    if (rank0_ && options_.on_checkpoint) options_.on_checkpoint(step, CheckpointDir(spec_.output_dir, step));
    return absl::OkStatus();
  }

  // What a checkpoint holds besides trainer_state.json (learner/checkpoint.h).
  CheckpointParts Parts() {
    CheckpointParts parts;
    parts.save_model = [this](const std::string& dir) { return SaveModelTo(dir); };
    parts.load_model = [this](const std::string& dir) {
      return peft_ ? peft_->LoadAdapter(dir) : LoadWeights(dir, *ctx_.model);
    };
    parts.optimizer = optimizer_.get();
    parts.extra = algorithm_->extra_parameters();
    parts.generator = generator_;
    return parts;
  }

  absl::Status Checkpoint(int64_t step) {
    TrainerState state;
    state.step = step;
    state.epoch = sampler_->epoch();
    state.position = sampler_->position();
    state.algorithm = algorithm_->SaveState();
    return SaveCheckpoint(CheckpointDir(spec_.output_dir, step), Parts(), state);
  }

  absl::StatusOr<int64_t> Restore(const std::string& dir) {
    ASSIGN_OR_RETURN(TrainerState state, LoadCheckpoint(dir, Parts(), ctx_.device));
    sampler_->Restore(state.epoch, static_cast<size_t>(state.position));
    absl::Status loaded;
    try {
      loaded = algorithm_->LoadState(state.algorithm);
    } catch (const json::exception& e) {
      loaded = absl::DataLossError(absl::StrCat(dir, "/trainer_state.json: field \"algorithm\": ", e.what()));
    }
    RETURN_IF_ERROR(loaded);
    return state.step;
  }

  absl::StatusOr<std::string> SaveFinal() {
    std::string final_dir = JoinPath(spec_.output_dir, "final");
    if (peft_) {
      RETURN_IF_ERROR(peft_->SaveAdapter(JoinPath(spec_.output_dir, "adapter")));
      RETURN_IF_ERROR(peft_->SaveMerged(final_dir, ctx_.tokenizer.get()));
    } else {
      RETURN_IF_ERROR(SaveModelDir(final_dir, *ctx_.model, ctx_.tokenizer.get()));
    }
    RETURN_IF_ERROR(RecordChatTemplate(final_dir));
    return final_dir;
  }

  JobSpec spec_;
  JobSpec shard_spec_;  // what Step sees when the batch is sharded over the ranks
  TrainOptions options_;
  collective::LearnerGroup* group_;
  const bool rank0_;
  const int world_;
  bool sharded_ = false;
  bool bf16_ = false;          // model.dtype: bfloat16 (AutocastScope)
  bool cuda_ = false;          // the model is on a CUDA device
  at::Generator generator_;    // every random draw of the run (model init, LoRA dropout); saved in rng.pt
  double grad_scale_ = 1.0;    // this rank's shard weight over the ranks' mean (1 without sharding)
  absl::Status apply_status_;  // the last Apply's collective failure, if any
  TrainContext ctx_;
  std::unique_ptr<PeftGlue> peft_;
  std::unique_ptr<Objective> algorithm_;
  std::unique_ptr<torch::optim::AdamW> optimizer_;
  std::unique_ptr<Sampler> sampler_;
  std::unique_ptr<MetricsLog> metrics_;  // metrics.jsonl and tb/ (rank 0)
};

}  // namespace

absl::StatusOr<TrainResult> RunTraining(const JobSpec& spec, const TrainOptions& options) {
  JobSpec resolved = spec;
  if (resolved.threads <= 0) resolved.threads = AvailableCores();
  Run run(resolved, options);
  try {
    return run.Go();
  } catch (const c10::Error& e) {
    return TorchErrorStatus(e, absl::StrCat(spec.name, " (", AlgorithmName(spec.algorithm), ")"));
  }
}

}  // namespace alignd::learner
