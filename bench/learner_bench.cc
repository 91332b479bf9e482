// Learner throughput: tokens per second of one SFT and one DPO optimiser step of alignd's real trainer
// (learner::RunTraining: the job's objective, collation, forward, loss, backward, gradient clipping, AdamW and the
// learning-rate schedule), on a ~0.8M and a ~20M parameter Llama-style model that alignd initialises itself, and the
// machine's fp32 matrix-multiply rate measured in the same run. bench/reference/learner_ref.py is the Python twin
// (the same shapes, hyper-parameters and thread count, the math as Hugging Face's Trainer and TRL do it).
//
//   learner_bench [--threads=N] [--reps=N] [--warmup=N] [--smoke] [--out=FILE]
//
// Every sequence has exactly kSeqLen tokens (no padding): the raw template renders BOS + prompt + response + EOS, the
// prompt and response are random lower-case letters, one byte token each, so a step's token count is exact and equal
// on both sides. A step's time is the wall time between two of RunTraining's on_step callbacks (everything the trainer
// does for one step, metrics line included); the first step and --warmup steps are not measured.
#include <ATen/Parallel.h>
#include <torch/torch.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "bench/bench_train.h"
#include "bench/bench_util.h"
#include "common/data/dataset.h"
#include "common/data/example_tokenizer.h"
#include "common/model/compute_threads.h"
#include "common/model/model_config.h"
#include "common/text/tokenizer.h"
#include "learner/trainer.h"
#include "spec/job_spec.h"

namespace alignd::bench {
namespace {

namespace fs = std::filesystem;

struct ModelSize {
  std::string tag;  // "1m" or "20m", as in the figure names
  int64_t hidden, layers, heads, kv_heads;
};

struct Shape {
  int64_t sft_batch;   // sequences per SFT step
  int64_t dpo_batch;   // pairs per DPO step (2x rows in the forward)
  int64_t seq_len;     // tokens per sequence, BOS and EOS included
  int64_t prompt_len;  // BOS + prompt tokens (not trained)
};

constexpr int64_t kVocab = 261;  // the byte tokenizer
constexpr int64_t kExamples = 64;

std::string Letters(std::mt19937& rng, int64_t n) {
  std::string s;
  for (int64_t i = 0; i < n; ++i) s.push_back(static_cast<char>('a' + rng() % 26));
  return s;
}

// Writes sft.jsonl (prompt/completion) and dpo.jsonl (prompt/chosen/rejected) into `dir`.
void WriteData(const std::string& dir, const Shape& s) {
  std::mt19937 rng(7);
  const int64_t prompt_chars = s.prompt_len - 1, response_chars = s.seq_len - s.prompt_len - 1;
  std::ofstream sft(dir + "/sft.jsonl"), dpo(dir + "/dpo.jsonl");
  for (int64_t i = 0; i < kExamples; ++i) {
    nlohmann::json a{{"prompt", Letters(rng, prompt_chars)}, {"completion", Letters(rng, response_chars)}};
    sft << a.dump() << "\n";
    nlohmann::json b{{"prompt", Letters(rng, prompt_chars)},
                     {"chosen", Letters(rng, response_chars)},
                     {"rejected", Letters(rng, response_chars)}};
    dpo << b.dump() << "\n";
  }
}

// Exits unless every tokenised sequence of `path` is exactly seq_len tokens with prompt_len untrained ones.
void CheckLengths(const std::string& path, const Shape& s) {
  auto fail = [&](const std::string& why) { Die(path + ": " + why); };
  auto data = ReadJsonl(path);
  if (!data.ok()) fail(data.status().ToString());
  auto tokenizer = MakeByteTokenizer();
  TokenizeOptions opts;
  opts.chat_template = "raw";
  opts.max_length = static_cast<int32_t>(s.seq_len);
  opts.max_prompt_length = static_cast<int32_t>(s.prompt_len);
  auto tok = ExampleTokenizer::Create(tokenizer.get(), opts);
  if (!tok.ok()) fail(tok.status().ToString());
  auto t = tok->Tokenize(*data);
  if (!t.ok()) fail(t.status().ToString());
  std::vector<const TokenizedExample*> all;
  for (const auto& e : t->examples) all.push_back(&e);
  for (const auto& p : t->pairs) all.insert(all.end(), {&p.chosen, &p.rejected});
  if (all.empty() || t->truncated > 0) fail("no examples, or some were truncated");
  for (const TokenizedExample* e : all) {
    int64_t trained = 0;
    for (uint8_t m : e->loss_mask) trained += m;
    if (static_cast<int64_t>(e->input_ids.size()) != s.seq_len || trained != s.seq_len - s.prompt_len) {
      fail("a sequence has " + std::to_string(e->input_ids.size()) + " tokens, " + std::to_string(trained) +
           " trained; want " + std::to_string(s.seq_len) + " and " + std::to_string(s.seq_len - s.prompt_len));
    }
  }
}

JobSpec Spec(Algorithm algorithm, const ModelSize& m, const Shape& s, const std::string& dir, const Args& args) {
  JobSpec spec;
  spec.name = "learner-bench";
  spec.algorithm = algorithm;
  spec.output_dir = dir + "/out";
  spec.seed = 1;
  spec.threads = args.threads;
  spec.model.init_arch = "llama";
  spec.model.init_hidden_size = m.hidden;
  spec.model.init_layers = m.layers;
  spec.model.init_heads = m.heads;
  spec.model.init_kv_heads = m.kv_heads;
  spec.model.init_max_positions = s.seq_len;
  spec.data.train = dir + (algorithm == Algorithm::kDpo ? "/dpo.jsonl" : "/sft.jsonl");
  spec.data.chat_template = "raw";
  spec.data.max_length = s.seq_len;
  spec.data.max_prompt_length = s.prompt_len;
  // The first step is not measured either: a step's time runs from the previous step's on_step.
  spec.train.steps = 1 + args.warmup + args.reps;
  spec.train.batch_size = algorithm == Algorithm::kDpo ? s.dpo_batch : s.sft_batch;
  SetBenchTraining(&spec);
  spec.train.log_every = 1 << 30;  // one metrics line, at the last step
  return spec;
}

// Seconds of each measured step.
std::vector<double> TimeSteps(const JobSpec& spec, const Args& args) {
  std::vector<double> at;
  learner::TrainOptions options;
  options.on_step = [&](int64_t, const learner::Metrics&) { at.push_back(NowSeconds()); };
  auto result = learner::RunTraining(spec, options);
  if (!result.ok()) Die(std::string(AlgorithmName(spec.algorithm)) + ": " + result.status().ToString());
  std::vector<double> seconds;
  for (size_t i = 1 + static_cast<size_t>(args.warmup); i < at.size(); ++i) seconds.push_back(at[i] - at[i - 1]);
  return seconds;
}

}  // namespace

int Main(int argc, char** argv) {
  Args args = ParseArgs(argc, argv);
  SetComputeThreads(args.threads);
  Report report("learner", args);

  const std::vector<ModelSize> models = args.smoke
                                            ? std::vector<ModelSize>{{"1m", 32, 2, 4, 2}, {"20m", 64, 2, 4, 2}}
                                            : std::vector<ModelSize>{{"1m", 128, 4, 4, 2}, {"20m", 512, 7, 8, 4}};
  const Shape shape = args.smoke ? Shape{2, 1, 32, 16} : Shape{4, 2, 128, 64};

  std::string dir = (fs::temp_directory_path() / "learner_bench.XXXXXX").string();
  if (mkdtemp(dir.data()) == nullptr) {
    std::perror("mkdtemp");
    return 1;
  }
  WriteData(dir, shape);
  CheckLengths(dir + "/sft.jsonl", shape);
  CheckLengths(dir + "/dpo.jsonl", shape);

  nlohmann::json& config = report.config();
  config["seq_len"] = shape.seq_len;
  config["prompt_len"] = shape.prompt_len;
  config["sft_batch_sequences"] = shape.sft_batch;
  config["dpo_batch_pairs"] = shape.dpo_batch;
  config["sft_tokens_per_step"] = shape.sft_batch * shape.seq_len;
  config["dpo_tokens_per_step"] = 2 * shape.dpo_batch * shape.seq_len;
  config["optimizer"] =
      "AdamW lr 1e-4 (linear decay), betas 0.9/0.999, eps 1e-8, weight decay 0.01 on matrices, "
      "clip grad norm 1.0; DPO sigmoid beta 0.1 with cached reference log-probs";
  config["dtype"] = "float32";

  const int64_t n = args.smoke ? 256 : 2048;
  torch::Tensor a = torch::randn({n, n}), b = torch::randn({n, n});
  auto mm_seconds = TimeRepeated(args, [&] { torch::mm(a, b); });
  report.Add("matmul_gflops", "GFLOP/s", Rates(mm_seconds, 2.0 * n * n * n / 1e9), true,
             "fp32 torch::mm of two " + std::to_string(n) + "x" + std::to_string(n) + " matrices, 2n^3 FLOPs");

  for (const ModelSize& m : models) {
    ModelConfig c = TinyLlamaConfig(kVocab, m.hidden, m.layers, m.heads, m.kv_heads, shape.seq_len);
    config["model_" + m.tag] = {{"vocab", kVocab},
                                {"hidden", m.hidden},
                                {"intermediate", c.intermediate_size},
                                {"layers", m.layers},
                                {"heads", m.heads},
                                {"kv_heads", m.kv_heads},
                                {"tie_word_embeddings", c.tie_word_embeddings},
                                {"parameters", c.NumParameters()}};
    for (Algorithm algorithm : {Algorithm::kSft, Algorithm::kDpo}) {
      const bool dpo = algorithm == Algorithm::kDpo;
      const std::string name = std::string(dpo ? "dpo_" : "sft_") + m.tag;
      const int64_t rows = dpo ? 2 * shape.dpo_batch : shape.sft_batch;
      const double tokens = static_cast<double>(rows * shape.seq_len);
      auto seconds = TimeSteps(Spec(algorithm, m, shape, dir, args), args);
      std::string what = dpo ? "one DPO step: forward of chosen+rejected rows (no reference forward: reference "
                               "log-probs cached), sigmoid loss, backward, clip, AdamW"
                             : "one SFT step: forward, cross-entropy on the response tokens, backward, clip, AdamW";
      report.Add(name + "_tokens_per_s", "tokens/s", Rates(seconds, tokens), true,
                 what + "; tokens = rows x seq_len = " + std::to_string(rows * shape.seq_len));
      report.Add(name + "_step_s", "s", seconds, false);
      report.Add(name + "_gflops", "GFLOP/s", Rates(seconds, StepFlops(c, rows, shape.seq_len) / 1e9), true,
                 "achieved FLOP/s: (6 * N * tokens + 12 * layers * seq_len * heads * head_dim * tokens) / step "
                 "time, N = parameters that multiply activations (projections and the tied LM head)");
      fs::remove_all(dir + "/out");
    }
  }

  // bf16 autocast (model.dtype: bfloat16): the same SFT step on the ~20M model, and the bf16 matmul rate. On CPUs
  // with AVX512-BF16 or AMX, oneDNN's bf16 products outrun fp32 ones; elsewhere they are slower.
  torch::Tensor a16 = a.to(torch::kBFloat16), b16 = b.to(torch::kBFloat16);
  auto mm16_seconds = TimeRepeated(args, [&] { torch::mm(a16, b16); });
  report.Add("matmul_bf16_gflops", "GFLOP/s", Rates(mm16_seconds, 2.0 * n * n * n / 1e9), true,
             "bf16 torch::mm of two " + std::to_string(n) + "x" + std::to_string(n) + " matrices, 2n^3 FLOPs");
  {
    JobSpec spec = Spec(Algorithm::kSft, models.back(), shape, dir, args);
    spec.model.dtype = "bfloat16";
    const int64_t rows = shape.sft_batch;
    auto seconds = TimeSteps(spec, args);
    report.Add("sft_20m_bf16_tokens_per_s", "tokens/s", Rates(seconds, static_cast<double>(rows * shape.seq_len)), true,
               "the SFT step of sft_20m under bf16 autocast (float32 weights and AdamW)");
    report.Add("sft_20m_bf16_step_s", "s", seconds, false);
    fs::remove_all(dir + "/out");
  }
  fs::remove_all(dir);
  return report.Write();
}

}  // namespace alignd::bench

int main(int argc, char** argv) { return alignd::bench::Main(argc, argv); }
