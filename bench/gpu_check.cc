// The GPU check: what alignd does on the device a job names (`resources.device: cuda`), measured in one run.
//
//   gpu_check [--device=cuda|cuda:N|cpu] [--threads=N] [--reps=N] [--warmup=N] [--smoke] [--out=FILE]
//             [--gemm_n=N] [--hidden=N] [--layers=N] [--heads=N] [--kv_heads=N] [--seq_len=N] [--batch=N]
//             [--prompts=N] [--new_tokens=N]
//
// It prints LibTorch's runtime (common/model/device.h: FormatRuntime) first, then resolves --device (default cuda) with
// ResolveDevice: without a usable GPU, `--device=cuda` exits 1 with ResolveDevice's FAILED_PRECONDITION. Then, on
// that device:
//   a. gemm_bf16: torch::mm of two n x n bf16 matrices, 2n^3 FLOPs each, the device synchronised before the clock
//      stops; the ceiling MFU is taken against (measured here, not a datasheet's number).
//   b. sft_bf16 / dpo_bf16: steps of alignd's trainer (learner::RunTraining with TrainOptions::device, model.dtype
//      bfloat16: float32 weights and AdamW, bf16 autocast products), timed between on_step callbacks as
//      bench/learner_bench.cc does; tokens/s, FLOP/s and MFU = step FLOPs (learner_bench's count) / step time / (a).
//   c. gen_fp32 / gen_bf16: greedy KV-cache generation by rollout::Engine on a model loaded with
//      LoadModelDir(LoadOptions::device), every row exactly --new_tokens long; bf16 = the same under bf16 autocast
//      (as the trainer's in-process PPO/GRPO generation runs under model.dtype bfloat16).
//   d. weight_sync: PackWeights of a learner copy of the model (64 MiB buckets, XXH3-128 checksum, as
//      WeightPublisher::Publish does on the CPU; weight_sync_device: PackWeightsOnDevice, as it does on a GPU) and
//      ApplyWeightUpdate into the engine of (c), which holds a second copy with other weights (checksum verified again,
//      copied into the engine's parameters), in-process: GB/s over the packed bytes. Afterwards the engine's parameters
//      are packed again and must carry the learner's checksum.
//   e. logprob_gap: samples drawn by the engine (temperature 1), their log-probs recomputed by a full forward of the
//      same model (rollout/logprob_gap.h), max |difference|; in float32 and with both sides under bf16 autocast.
// A measurement that fails is reported as FAILED in the table (with its status) and the others still run; the exit
// code is then 1.
//
// Sizes: on CUDA a Llama-style decoder of hidden 768, 12 layers, 12 heads, 4 KV heads (byte vocabulary of 261, so
// ~76M parameters), 512-token sequences, 16 per SFT step and 8 pairs (16 rows) per DPO step, 32 prompts x 128 new
// tokens, an 8192^3 GEMM. `--device=cpu` runs the same code at small sizes, `--smoke` at tiny ones (one repetition,
// no warm-up); the size flags override either.
//
// Output: progress and each figure's median on stderr; the runtime, a Markdown table (figure | value | unit | how
// measured) and, without --out, the JSON on stdout. The JSON is bench_util.h's ({"component": "gpu_check", "config",
// "figures"}) plus "failures".
#include <ATen/autocast_mode.h>
#include <c10/core/Allocator.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <torch/cuda.h>
#include <torch/torch.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "bench/bench_util.h"
#include "common/base/status.h"
#include "common/data/dataset.h"
#include "common/data/example_tokenizer.h"
#include "common/model/autocast.h"
#include "common/model/compute_threads.h"
#include "common/model/device.h"
#include "common/model/hf_model.h"
#include "common/model/model_config.h"
#include "common/model/transformer.h"
#include "common/text/tokenizer.h"
#include "learner/trainer.h"
#include "rollout/engine.h"
#include "rollout/logprob_gap.h"
#include "rollout/weight_update.h"
#include "spec/job_spec.h"

namespace alignd::bench {
namespace {

namespace fs = std::filesystem;
using Named = std::vector<std::pair<std::string, at::Tensor>>;

constexpr int64_t kVocab = 261;                        // the byte tokenizer's
constexpr int64_t kExamples = 64;                      // training records per file
constexpr uint64_t kBucketBytes = uint64_t{64} << 20;  // WeightPublisher::Publish's

struct Sizes {
  int64_t gemm_n, gemm_per_sample;                                      // (a): n, and products per timed sample
  int64_t hidden, layers, heads, kv_heads;                              // the model of (b) to (e)
  int64_t seq_len, prompt_len, sft_batch, dpo_pairs;                    // (b)
  int64_t prompts, prompt_min, prompt_max, new_tokens, gap_new_tokens;  // (c) and (e)
};

Sizes ChooseSizes(const Args& a, bool cuda) {
  Sizes s;
  if (a.smoke) {
    s = {128, 1, 64, 2, 4, 2, 32, 16, 2, 1, 4, 4, 12, 8, 8};
  } else if (cuda) {
    s = {8192, 10, 768, 12, 12, 4, 512, 64, 16, 8, 32, 16, 64, 128, 64};
  } else {
    s = {512, 2, 128, 4, 4, 2, 128, 32, 4, 2, 8, 8, 24, 32, 16};
  }
  s.gemm_n = a.Int("gemm_n", s.gemm_n);
  s.hidden = a.Int("hidden", s.hidden);
  s.layers = a.Int("layers", s.layers);
  s.heads = a.Int("heads", s.heads);
  s.kv_heads = a.Int("kv_heads", s.kv_heads);
  s.seq_len = a.Int("seq_len", s.seq_len);
  s.sft_batch = a.Int("batch", s.sft_batch);
  s.dpo_pairs = std::max<int64_t>(1, s.sft_batch / 2);  // DPO rows = 2 x pairs = the SFT batch
  s.prompts = a.Int("prompts", s.prompts);
  s.new_tokens = a.Int("new_tokens", s.new_tokens);
  s.prompt_len = std::min(s.prompt_len, s.seq_len / 2);
  return s;
}

ModelConfig ModelFor(const Sizes& s) {
  // The trainer's init_* model (tied embeddings), long enough for the training rows and for prompt + completion.
  const int64_t positions = std::max(s.seq_len, s.prompt_max + std::max(s.new_tokens, s.gap_new_tokens));
  return TinyLlamaConfig(kVocab, s.hidden, s.layers, s.heads, s.kv_heads, positions);
}

// ---- timing and reporting ----

void Sync(const torch::Device& device) {
  if (device.is_cuda()) torch::cuda::synchronize(device.has_index() ? device.index() : -1);
}

std::string SyncNote(const torch::Device& device) {
  return device.is_cuda() ? ", the device synchronised before the clock stops" : "";
}

double Median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Figures go both to bench_util's JSON and to the Markdown table printed at the end.
class Results {
 public:
  explicit Results(const Args& args) : report_("gpu_check", args) {}
  nlohmann::json& config() { return report_.config(); }

  void Add(const std::string& figure, const std::string& unit, const std::vector<double>& samples,
           bool higher_is_better, const std::string& how) {
    report_.Add(figure, unit, samples, higher_is_better, how);
    std::string value = absl::StrFormat("%.4g", Median(samples));
    std::string spread;
    if (samples.size() > 1) {
      spread = absl::StrFormat("; median of %d (%.4g to %.4g)", static_cast<int>(samples.size()),
                               *std::min_element(samples.begin(), samples.end()),
                               *std::max_element(samples.begin(), samples.end()));
    }
    rows_.push_back({figure, value, unit, how + spread});
  }
  void Fail(const std::string& section, const absl::Status& status) {
    std::fprintf(stderr, "gpu_check: %s FAILED: %s\n", section.c_str(), status.ToString().c_str());
    failures_[section] = status.ToString();
    rows_.push_back({section, "FAILED", "", status.ToString()});
  }
  bool failed() const { return !failures_.empty(); }

  void PrintTable() const {
    std::printf("| figure | value | unit | how measured |\n|---|---|---|---|\n");
    for (const auto& r : rows_) {
      std::string how = r[3];
      std::replace(how.begin(), how.end(), '|', '/');
      std::printf("| %s | %s | %s | %s |\n", r[0].c_str(), r[1].c_str(), r[2].c_str(), how.c_str());
    }
    std::fflush(stdout);
  }
  int Write() {
    report_.config()["failures"] = failures_;
    return report_.Write();
  }

 private:
  Report report_;
  std::vector<std::array<std::string, 4>> rows_;
  std::map<std::string, std::string> failures_;
};

// Runs one measurement; a LibTorch exception becomes TorchErrorStatus, and any error a FAILED row.
void Section(Results& results, const std::string& name, const std::function<absl::Status()>& body) {
  std::fprintf(stderr, "gpu_check: %s ...\n", name.c_str());
  const double t0 = NowSeconds();
  absl::Status status;
  try {
    status = body();
  } catch (const std::exception& e) {
    status = TorchErrorStatus(e, name);
  }
  if (!status.ok()) results.Fail(name, status);
  std::fprintf(stderr, "gpu_check: %s done in %.1f s\n", name.c_str(), NowSeconds() - t0);
}

// ---- (a) GEMM ----

absl::Status MeasureGemm(const Args& args, const Sizes& s, const torch::Device& device, Results& results,
                         double* tflops) {
  const int64_t n = s.gemm_n;
  auto opts = torch::TensorOptions().dtype(torch::kBFloat16).device(device);
  torch::Tensor a = torch::randn({n, n}, opts), b = torch::randn({n, n}, opts), c = torch::empty({n, n}, opts);
  auto run = [&] {
    for (int64_t i = 0; i < s.gemm_per_sample; ++i) torch::mm_out(c, a, b);
    Sync(device);
  };
  run();  // unmeasured even under --smoke: the first product pays for the BLAS library's set-up
  std::vector<double> seconds = TimeRepeated(args, run);
  if (!c.isfinite().all().item<bool>()) return absl::InternalError("the product has non-finite entries");
  const double flops = 2.0 * static_cast<double>(n) * static_cast<double>(n) * static_cast<double>(n);
  std::vector<double> rate = Rates(seconds, flops * static_cast<double>(s.gemm_per_sample) / 1e12);
  results.Add("gemm_bf16", "TFLOP/s", rate, true,
              absl::StrCat("torch::mm of two ", n, "x", n, " bf16 random matrices on ", device.str(), ", ",
                           s.gemm_per_sample, " product(s) per sample, 2n^3 FLOPs each", SyncNote(device)));
  *tflops = Median(rate);
  return absl::OkStatus();
}

// ---- (b) training steps ----

std::string Letters(std::mt19937& rng, int64_t n) {
  std::string out;
  for (int64_t i = 0; i < n; ++i) out.push_back(static_cast<char>('a' + rng() % 26));
  return out;
}

// learner_bench's data: sft.jsonl and dpo.jsonl in `dir`, every sequence exactly seq_len byte tokens (raw template:
// BOS + prompt + response + EOS) with prompt_len untrained ones; checked after tokenising.
absl::Status WriteData(const std::string& dir, const Sizes& s) {
  std::mt19937 rng(7);
  const int64_t prompt_chars = s.prompt_len - 1, response_chars = s.seq_len - s.prompt_len - 1;
  {
    std::ofstream sft(dir + "/sft.jsonl"), dpo(dir + "/dpo.jsonl");
    for (int64_t i = 0; i < kExamples; ++i) {
      sft << nlohmann::json{{"prompt", Letters(rng, prompt_chars)}, {"completion", Letters(rng, response_chars)}}.dump()
          << "\n";
      dpo << nlohmann::json{{"prompt", Letters(rng, prompt_chars)},
                            {"chosen", Letters(rng, response_chars)},
                            {"rejected", Letters(rng, response_chars)}}
                 .dump()
          << "\n";
    }
    if (!sft || !dpo) return absl::InternalError(absl::StrCat(dir, ": cannot write the training data"));
  }
  auto tokenizer = MakeByteTokenizer();
  TokenizeOptions opts;
  opts.chat_template = "raw";
  opts.max_length = static_cast<int32_t>(s.seq_len);
  opts.max_prompt_length = static_cast<int32_t>(s.prompt_len);
  ASSIGN_OR_RETURN(ExampleTokenizer tok, ExampleTokenizer::Create(tokenizer.get(), opts));
  for (const char* name : {"/sft.jsonl", "/dpo.jsonl"}) {
    ASSIGN_OR_RETURN(auto data, ReadJsonl(dir + name));
    ASSIGN_OR_RETURN(auto t, tok.Tokenize(data));
    std::vector<const TokenizedExample*> all;
    for (const auto& e : t.examples) all.push_back(&e);
    for (const auto& p : t.pairs) all.insert(all.end(), {&p.chosen, &p.rejected});
    if (all.empty() || t.truncated > 0) return absl::InternalError(absl::StrCat(name, ": truncated or empty"));
    for (const TokenizedExample* e : all) {
      int64_t trained = 0;
      for (uint8_t m : e->loss_mask) trained += m;
      if (static_cast<int64_t>(e->input_ids.size()) != s.seq_len || trained != s.seq_len - s.prompt_len) {
        return absl::InternalError(absl::StrCat(name, ": a sequence has ", e->input_ids.size(), " tokens, ", trained,
                                                " trained; want ", s.seq_len, " and ", s.seq_len - s.prompt_len));
      }
    }
  }
  return absl::OkStatus();
}

JobSpec TrainSpec(Algorithm algorithm, const Sizes& s, const std::string& dir, const Args& args,
                  const torch::Device& device) {
  JobSpec spec;
  spec.name = "gpu-check";
  spec.algorithm = algorithm;
  spec.output_dir = dir + "/out";
  spec.seed = 1;
  spec.threads = args.threads;
  spec.device = device.str();
  spec.model.init_arch = "llama";
  spec.model.init_hidden_size = s.hidden;
  spec.model.init_layers = s.layers;
  spec.model.init_heads = s.heads;
  spec.model.init_kv_heads = s.kv_heads;
  spec.model.init_max_positions = s.seq_len;
  spec.model.dtype = "bfloat16";
  spec.data.train = dir + (algorithm == Algorithm::kDpo ? "/dpo.jsonl" : "/sft.jsonl");
  spec.data.chat_template = "raw";
  spec.data.max_length = s.seq_len;
  spec.data.max_prompt_length = s.prompt_len;
  spec.train.steps = 1 + args.warmup + args.reps;  // the first step is never measured
  spec.train.batch_size = algorithm == Algorithm::kDpo ? s.dpo_pairs : s.sft_batch;
  spec.train.grad_accum = 1;
  spec.train.lr = 1e-4;
  spec.train.weight_decay = 0.01;
  spec.train.schedule = "linear";
  spec.train.min_lr_ratio = 0.0;
  spec.train.max_grad_norm = 1.0;
  spec.train.log_every = 1 << 30;
  spec.dpo.loss = "sigmoid";
  spec.dpo.beta = 0.1;
  return spec;
}

absl::Status MeasureTraining(Algorithm algorithm, const Args& args, const Sizes& s, const torch::Device& device,
                             const std::string& dir, double gemm_tflops, Results& results) {
  const bool dpo = algorithm == Algorithm::kDpo;
  const std::string name = dpo ? "dpo_bf16" : "sft_bf16";
  const int64_t rows = dpo ? 2 * s.dpo_pairs : s.sft_batch;
  const ModelConfig c = TinyLlamaConfig(kVocab, s.hidden, s.layers, s.heads, s.kv_heads, s.seq_len);
  std::vector<double> at;
  learner::TrainOptions options;
  options.device = device;
  // A step's work is queued on the GPU: the loss and metrics are read with .item() (which waits), but AdamW's
  // update is launched after the last of them (clip_grad_norm_'s norm is read before it). So the callback waits for
  // the device itself before reading the clock, and each interval holds exactly one step's work.
  options.on_step = [&](int64_t, const learner::Metrics&) {
    Sync(device);
    at.push_back(NowSeconds());
  };
  if (device.is_cuda()) c10::cuda::CUDACachingAllocator::resetPeakStats(device.index());
  ASSIGN_OR_RETURN(learner::TrainResult trained,
                   learner::RunTraining(TrainSpec(algorithm, s, dir, args, device), options));
  std::error_code ignored;
  fs::remove_all(dir + "/out", ignored);
  std::vector<double> seconds;
  for (size_t i = 1 + static_cast<size_t>(args.warmup); i < at.size(); ++i) seconds.push_back(at[i] - at[i - 1]);
  if (seconds.empty()) return absl::InternalError("no step was measured");
  const double tokens = static_cast<double>(rows * s.seq_len);
  const std::string what =
      dpo ? absl::StrCat("one DPO step (sigmoid, beta 0.1, cached reference log-probs) of ", s.dpo_pairs, " pair(s)")
          : absl::StrCat("one SFT step of ", s.sft_batch, " sequences");
  const std::string how =
      absl::StrCat(what, " x ", s.seq_len, " tokens, RunTraining on ", device.str(),
                   ", model.dtype bfloat16, AdamW + clip; between on_step callbacks", SyncNote(device), "; final loss ",
                   absl::StrFormat("%.4g", trained.last["train/loss"]));
  results.Add(name + "_tokens_per_s", "tokens/s", Rates(seconds, tokens), true, how);
  results.Add(name + "_step_s", "s", seconds, false, how);
  std::vector<double> tflops = Rates(seconds, StepFlops(c, rows, s.seq_len) / 1e12);
  results.Add(name + "_tflops", "TFLOP/s", tflops, true,
              "(6 N tokens + 12 layers seq heads head_dim tokens) / step time, N = " +
                  std::to_string(c.NumParameters() - (2 * c.num_layers + 1) * c.hidden_size) +
                  " parameters that multiply activations");
  std::vector<double> mfu;
  for (double t : tflops) mfu.push_back(100.0 * t / gemm_tflops);
  results.Add(name + "_mfu", "%", mfu, true,
              absl::StrFormat("%s_tflops / gemm_bf16's median (%.4g TFLOP/s)", name, gemm_tflops));
  if (device.is_cuda()) {
    const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(device.index());
    const double peak = static_cast<double>(
        stats.allocated_bytes[static_cast<size_t>(c10::CachingAllocator::StatType::AGGREGATE)].peak);
    results.Add(name + "_peak_memory", "GiB", {peak / (1 << 30)}, false,
                "CUDA caching allocator's peak allocated bytes over the whole RunTraining");
  }
  return absl::OkStatus();
}

// ---- (c) generation, (d) weight sync, (e) log-prob gap ----

std::vector<std::vector<int32_t>> Prompts(const Sizes& s) {
  std::mt19937 rng(12);
  std::vector<std::vector<int32_t>> prompts;
  for (int64_t i = 0; i < s.prompts; ++i) {
    const int64_t n =
        s.prompt_min + static_cast<int64_t>(rng() % static_cast<uint32_t>(s.prompt_max - s.prompt_min + 1));
    std::vector<int32_t> p;
    for (int64_t k = 0; k < n; ++k) p.push_back(static_cast<int32_t>(rng() % 256));
    prompts.push_back(std::move(p));
  }
  return prompts;
}

// The engine of (c) to (e): the model saved as a Hugging Face folder and loaded onto the device with
// LoadOptions::device, as a rollout worker loads its model.
struct Rollout {
  CausalLM model{nullptr};
  std::unique_ptr<rollout::Engine> engine;
};

absl::StatusOr<Rollout> MakeRollout(const Sizes& s, const torch::Device& device, const std::string& dir,
                                    Results& results) {
  CausalLM initial(ModelFor(s));
  initial->InitWeights(1);
  auto tokenizer = MakeByteTokenizer();
  RETURN_IF_ERROR(SaveModelDir(dir + "/rollout_model", *initial, tokenizer.get()));
  LoadOptions lo;
  lo.device = device;
  const double t0 = NowSeconds();
  ASSIGN_OR_RETURN(LoadedModel loaded, LoadModelDir(dir + "/rollout_model", lo));
  Sync(device);
  const double load_s = NowSeconds() - t0;
  for (const auto& p : loaded.model->parameters()) {
    if (p.device() != device) {
      return absl::InternalError(absl::StrCat("LoadModelDir left a parameter on ", p.device().str()));
    }
  }
  results.Add("model_load_s", "s", {load_s}, false,
              absl::StrCat("LoadModelDir with LoadOptions::device = ", device.str(), " of a ",
                           loaded.config.NumParameters(), "-parameter float32 folder (page cache warm)"));
  Rollout r;
  r.model = loaded.model;
  r.model->eval();
  rollout::Engine::Options eo;
  eo.model = loaded.model;
  eo.tokenizer = std::shared_ptr<const Tokenizer>(std::move(loaded.tokenizer));
  eo.chat_template = "raw";
  eo.max_batch_rows = std::max<int64_t>(64, s.prompts);
  ASSIGN_OR_RETURN(r.engine, rollout::Engine::Create(std::move(eo)));
  return r;
}

absl::Status MeasureGeneration(const Args& args, const Sizes& s, const torch::Device& device, bool bf16,
                               rollout::Engine& engine, Results& results) {
  const auto prompts = Prompts(s);
  rollout::SamplingParams params;
  params.temperature = 0;
  params.max_new_tokens = s.new_tokens;
  params.stop_token_ids = std::vector<int32_t>{};
  const int64_t expected = s.prompts * s.new_tokens;
  absl::Status status;
  std::vector<double> step_ms;
  auto run = [&] {
    if (!status.ok()) return;
    AutocastScope autocast(bf16, device.is_cuda());
    rollout::GenerateStats stats;
    auto samples = engine.Generate(prompts, params, &stats);
    Sync(device);
    if (!samples.ok()) {
      status = samples.status();
      return;
    }
    int64_t tokens = 0;
    for (const rollout::Sample& x : *samples) tokens += static_cast<int64_t>(x.token_ids.size());
    if (tokens != expected) status = absl::InternalError(absl::StrCat("generated ", tokens, ", want ", expected));
    if (stats.decode_steps > 0) step_ms.push_back(1e3 * stats.decode_seconds / static_cast<double>(stats.decode_steps));
  };
  std::vector<double> seconds = TimeRepeated(args, run);
  RETURN_IF_ERROR(status);
  step_ms.erase(step_ms.begin(), step_ms.begin() + std::min<size_t>(step_ms.size(), args.warmup));
  const std::string name = bf16 ? "gen_bf16" : "gen_fp32";
  const std::string how = absl::StrCat("Engine::Generate, greedy, KV cache, ", s.prompts, " prompts of ", s.prompt_min,
                                       "..", s.prompt_max, " tokens x ", s.new_tokens, " new tokens, float32 weights",
                                       bf16 ? " under bf16 autocast" : "", "; tokens / wall time of the call");
  results.Add(name + "_tokens_per_s", "tokens/s", Rates(seconds, static_cast<double>(expected)), true, how);
  results.Add(name + "_decode_step_ms", "ms", step_ms, false,
              "GenerateStats: decode seconds / decode steps (one token for every row, logits to the host)");
  return absl::OkStatus();
}

absl::Status MeasureLogProbGap(const Sizes& s, const torch::Device& device, bool bf16, Rollout& r, Results& results) {
  AutocastScope autocast(bf16, device.is_cuda());
  const auto prompts = Prompts(s);
  rollout::SamplingParams params;
  params.temperature = 1.0;
  params.max_new_tokens = s.gap_new_tokens;
  params.stop_token_ids = std::vector<int32_t>{};
  params.seed = 5;
  ASSIGN_OR_RETURN(auto samples, r.engine->Generate(prompts, params));
  ASSIGN_OR_RETURN(auto learner, rollout::RecomputeLogProbs(*r.model, prompts, samples,
                                                            std::max<int64_t>(1, std::min<int64_t>(s.prompts, 16))));
  ASSIGN_OR_RETURN(double gap, rollout::MaxLogProbGap(samples, learner));
  int64_t tokens = 0;
  for (const auto& x : samples) tokens += static_cast<int64_t>(x.token_ids.size());
  results.Add(bf16 ? "logprob_gap_bf16" : "logprob_gap_fp32", "nats", {gap}, false,
              absl::StrCat("max abs(engine logprob - full-forward logprob) over ", tokens,
                           " sampled tokens (temperature 1, ", s.prompts, " prompts x ", s.gap_new_tokens,
                           "), both on ", device.str(), bf16 ? ", both under bf16 autocast" : ", float32"));
  return absl::OkStatus();
}

Named NamedParameters(CausalLM& model) {
  Named out;
  for (const auto& p : model->named_parameters()) out.emplace_back(p.key(), p.value().detach());
  return out;
}

// `on_device`: PackWeightsOnDevice (device buckets, word sum; what WeightPublisher does on a GPU) instead of
// PackWeights (host buckets, XXH3-128; what it does on the CPU).
absl::Status MeasureWeightSync(const Args& args, const Sizes& s, const torch::Device& device, bool on_device,
                               Rollout& r, Results& results) {
  CausalLM learner(ModelFor(s));
  learner->InitWeights(on_device ? 3 : 2);  // other weights than the engine's
  learner->to(device);
  const Named tensors = NamedParameters(learner);
  auto pack = [on_device](const Named& t, uint64_t version) {
    return on_device ? rollout::PackWeightsOnDevice(t, version, kBucketBytes)
                     : rollout::PackWeights(t, version, kBucketBytes);
  };
  ASSIGN_OR_RETURN(rollout::PackedWeights before, pack(NamedParameters(r.model), 1));
  uint64_t version = r.engine->weight_version();
  uint64_t bytes = 0;
  std::string sent_checksum;
  std::vector<double> pack_s, apply_s, total_s;
  absl::Status status;
  auto run = [&] {
    if (!status.ok()) return;
    Sync(device);
    const double t0 = NowSeconds();
    absl::StatusOr<rollout::PackedWeights> packed = pack(tensors, ++version);
    if (!packed.ok()) {
      status = packed.status();
      return;
    }
    const double t1 = NowSeconds();
    // As a rollout worker applies a received version: checksum, then the copy into the engine's parameters.
    status = rollout::ApplyWeightUpdate(*r.engine, *packed);
    Sync(device);
    const double t2 = NowSeconds();
    bytes = 0;
    for (uint64_t b : packed->manifest.bucket_bytes()) bytes += b;
    sent_checksum = packed->manifest.checksum();
    pack_s.push_back(t1 - t0);
    apply_s.push_back(t2 - t1);
    total_s.push_back(t2 - t0);
  };
  for (int i = 0; i < args.warmup; ++i) run();
  pack_s.clear();
  apply_s.clear();
  total_s.clear();
  for (int i = 0; i < args.reps; ++i) run();
  RETURN_IF_ERROR(status);
  // Untimed: the engine's parameters, packed the same way, must now carry the learner's checksum.
  ASSIGN_OR_RETURN(rollout::PackedWeights after, pack(NamedParameters(r.model), version));
  if (after.manifest.checksum() != sent_checksum || before.manifest.checksum() == sent_checksum) {
    return absl::DataLossError(absl::StrCat("the engine's weights after the update hash to ", after.manifest.checksum(),
                                            ", the learner's to ", sent_checksum,
                                            " (before: ", before.manifest.checksum(), ")"));
  }
  if (r.engine->weight_version() != version) {
    return absl::InternalError(absl::StrCat("engine at version ", r.engine->weight_version(), ", want ", version));
  }
  const std::string what = absl::StrCat(bytes, " bytes (", tensors.size(), " float32 tensors) from a learner copy on ",
                                        device.str(), " into the engine's model on ", device.str());
  const std::string name = on_device ? "weight_sync_device" : "weight_sync";
  const std::string packer = on_device ? "PackWeightsOnDevice" : "PackWeights";
  results.Add(name + "_gb_per_s", "GB/s", Rates(total_s, static_cast<double>(bytes) / 1e9), true,
              packer +
                  (on_device ? " (buckets on the device, 64 MiB, word-sum checksum computed there)"
                             : " (to host, 64 MiB buckets, XXH3-128)") +
                  " + ApplyWeightUpdate (checksum verified, copied in), in-process, " + what +
                  "; engine's weights re-packed afterwards carry the learner's checksum");
  results.Add(name + "_pack_s", "s", pack_s, false, packer + " alone" + SyncNote(device));
  results.Add(name + "_apply_s", "s", apply_s, false, "ApplyWeightUpdate alone" + SyncNote(device));
  return absl::OkStatus();
}

int Main(int argc, char** argv) {
  Args args = ParseArgs(argc, argv);
  const RuntimeInfo info = ProbeRuntime();
  std::printf("%s", FormatRuntime(info).c_str());
  std::fflush(stdout);
  absl::StatusOr<torch::Device> resolved = ResolveDevice(args.Str("device", "cuda"), "--device");
  if (!resolved.ok()) {
    std::fprintf(stderr, "gpu_check: %s\n", resolved.status().ToString().c_str());
    return 1;
  }
  const torch::Device device = *resolved;
  SetComputeThreads(args.threads);
  const Sizes s = ChooseSizes(args, device.is_cuda());
  if (s.gemm_n < 1 || s.hidden % s.heads != 0 || s.heads % s.kv_heads != 0 || s.seq_len < 8 || s.prompts < 1 ||
      s.new_tokens < 1) {
    std::fprintf(stderr, "gpu_check: bad sizes (hidden must divide by heads, heads by kv_heads; seq_len >= 8)\n");
    return 2;
  }
  Results results(args);
  const ModelConfig c = ModelFor(s);
  nlohmann::json& config = results.config();
  config["device"] = device.str();
  if (device.is_cuda()) {
    for (const CudaDevice& d : info.cuda_devices) {
      if (d.index == device.index()) config["gpu"] = d.name;
    }
  }
  config["torch"] = info.torch_version;
  config["cuda"] = info.cuda_version;
  config["nccl"] = info.nccl_version;
  config["model"] = {{"arch", "llama"},
                     {"vocab", kVocab},
                     {"hidden", s.hidden},
                     {"intermediate", c.intermediate_size},
                     {"layers", s.layers},
                     {"heads", s.heads},
                     {"kv_heads", s.kv_heads},
                     {"tied", c.tie_word_embeddings},
                     {"parameters", c.NumParameters()}};
  config["train"] = {{"seq_len", s.seq_len},
                     {"prompt_len", s.prompt_len},
                     {"sft_batch", s.sft_batch},
                     {"dpo_pairs", s.dpo_pairs},
                     {"dtype", "bfloat16 autocast, float32 weights and AdamW"}};
  config["generation"] = {{"prompts", s.prompts},
                          {"prompt_tokens", {s.prompt_min, s.prompt_max}},
                          {"new_tokens", s.new_tokens},
                          {"gap_new_tokens", s.gap_new_tokens}};
  config["gemm_n"] = s.gemm_n;
  std::fprintf(stderr, "gpu_check: %s, llama %lld parameters (hidden %lld, %lld layers), %d threads\n",
               device.str().c_str(), static_cast<long long>(c.NumParameters()), static_cast<long long>(s.hidden),
               static_cast<long long>(s.layers), args.threads);

  std::string dir = (fs::temp_directory_path() / "gpu_check.XXXXXX").string();
  if (mkdtemp(dir.data()) == nullptr) Die("mkdtemp failed");

  double gemm_tflops = 0;
  Section(results, "gemm_bf16", [&] { return MeasureGemm(args, s, device, results, &gemm_tflops); });
  absl::Status data = WriteData(dir, s);
  for (Algorithm a : {Algorithm::kSft, Algorithm::kDpo}) {
    Section(results, a == Algorithm::kDpo ? "dpo_bf16" : "sft_bf16", [&]() -> absl::Status {
      RETURN_IF_ERROR(data);
      if (gemm_tflops <= 0) return absl::FailedPreconditionError("no GEMM rate to take MFU against");
      return MeasureTraining(a, args, s, device, dir, gemm_tflops, results);
    });
  }
  absl::StatusOr<Rollout> rollout = absl::UnknownError("not made");
  Section(results, "rollout_engine", [&] {
    rollout = MakeRollout(s, device, dir, results);
    return rollout.status();
  });
  if (rollout.ok()) {
    for (bool bf16 : {false, true}) {
      Section(results, bf16 ? "gen_bf16" : "gen_fp32",
              [&] { return MeasureGeneration(args, s, device, bf16, *rollout->engine, results); });
    }
    for (bool bf16 : {false, true}) {
      Section(results, bf16 ? "logprob_gap_bf16" : "logprob_gap_fp32",
              [&] { return MeasureLogProbGap(s, device, bf16, *rollout, results); });
    }
    // Last: it replaces the engine's weights.
    Section(results, "weight_sync", [&] { return MeasureWeightSync(args, s, device, false, *rollout, results); });
    Section(results, "weight_sync_device", [&] { return MeasureWeightSync(args, s, device, true, *rollout, results); });
  }
  std::error_code ignored;
  fs::remove_all(dir, ignored);

  std::printf("\ngpu_check on %s: llama %lld parameters (hidden %lld, %lld layers, %lld/%lld heads), %d threads\n\n",
              device.str().c_str(), static_cast<long long>(c.NumParameters()), static_cast<long long>(s.hidden),
              static_cast<long long>(s.layers), static_cast<long long>(s.heads), static_cast<long long>(s.kv_heads),
              args.threads);
  if (args.smoke) std::printf("--smoke: tiny sizes, one repetition; the figures prove that the code runs, no more\n\n");
  results.PrintTable();
  std::printf("\n");
  const int written = results.Write();
  return results.failed() ? 1 : written;
}

}  // namespace
}  // namespace alignd::bench

int main(int argc, char** argv) { return alignd::bench::Main(argc, argv); }
