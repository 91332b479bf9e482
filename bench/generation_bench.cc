// Generation throughput: greedy tokens per second of the rollout engine (Engine::Generate, the path the rollout
// service and the in-process learner use: KV cache, prefill once, one token per step) against full recomputation of
// the whole left-padded batch at every step (no cache), at 128 new tokens.
//
//   generation_bench [--threads=N] [--reps=N] [--warmup=N] [--smoke] [--out=FILE] [--only=kv,no_kv,kv_20m]
//
// --only names the figures to measure (default: all three; --smoke skips kv_20m).
//
// Models: a Llama-family decoder of ~0.9M parameters (vocab 261, hidden 128, 4 layers, 4 heads, 2 KV heads, untied)
// and, for kv_20m_tokens_per_s, one of ~18M (hidden 512, 6 layers, 8 heads, 4 KV heads, untied); random weights,
// fp32. Batch 8, left-padded prompts of 9..30 tokens, no stop tokens, so every row generates exactly 128 tokens.
// bench/reference/generate_ref.py measures the same with a Hugging Face-style generate loop.
#include <ATen/Parallel.h>
#include <torch/torch.h>

#include <cstdint>
#include <cstdio>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "bench/bench_util.h"
#include "common/collate.h"
#include "common/model_config.h"
#include "common/tokenizer.h"
#include "common/transformer.h"
#include "rollout/engine.h"
#include "common/compute_threads.h"

namespace alignd::bench {
namespace {

constexpr int64_t kBatch = 8;

ModelConfig SmallConfig() {
  ModelConfig c = TinyLlamaConfig(261, 128, 4, 4, 2, 512);
  c.tie_word_embeddings = false;
  return c;
}

ModelConfig Config20m() {
  ModelConfig c = TinyLlamaConfig(261, 512, 6, 8, 4, 512);
  c.tie_word_embeddings = false;
  return c;
}

CausalLM MakeModel(const ModelConfig& c) {
  CausalLM m(c);
  m->InitWeights(1);
  m->eval();
  return m;
}

int64_t Parameters(const CausalLM& m) {
  int64_t n = 0;
  for (const auto& p : m->parameters()) n += p.numel();
  return n;
}

nlohmann::json Describe(const ModelConfig& c, const CausalLM& m) {
  return {{"family", "llama"},          {"vocab_size", c.vocab_size},     {"hidden_size", c.hidden_size},
          {"intermediate_size", c.intermediate_size}, {"num_layers", c.num_layers}, {"num_heads", c.num_heads},
          {"num_kv_heads", c.num_kv_heads}, {"head_dim", c.head_dim},     {"tie_word_embeddings", false},
          {"dtype", "float32"},         {"parameters", Parameters(m)}};
}

const std::vector<int>& PromptLengths() {
  static const std::vector<int> lengths = {12, 20, 16, 24, 9, 30, 18, 14};
  return lengths;
}

std::vector<std::vector<int32_t>> Prompts() {
  std::mt19937 rng(12);
  std::vector<std::vector<int32_t>> prompts;
  for (int n : PromptLengths()) {
    std::vector<int32_t> p;
    for (int i = 0; i < n; ++i) p.push_back(static_cast<int32_t>(rng() % 256));
    prompts.push_back(p);
  }
  return prompts;
}

// Tokens/s samples of Engine::Generate (greedy, no stop tokens) on `model`.
std::vector<double> MeasureEngine(const Args& args, CausalLM model, int64_t new_tokens) {
  rollout::Engine::Options options;
  options.model = std::move(model);
  options.tokenizer = std::shared_ptr<const Tokenizer>(MakeByteTokenizer());
  auto engine = rollout::Engine::Create(std::move(options));
  if (!engine.ok()) Die("Engine::Create: " + engine.status().ToString());
  rollout::SamplingParams params;
  params.temperature = 0;
  params.max_new_tokens = new_tokens;
  params.stop_token_ids = std::vector<int32_t>{};
  const auto prompts = Prompts();
  const int64_t expected = kBatch * new_tokens;
  std::vector<double> seconds = TimeRepeated(args, [&] {
    auto samples = (*engine)->Generate(prompts, params);
    if (!samples.ok()) Die("Generate: " + samples.status().ToString());
    int64_t tokens = 0;
    for (const rollout::Sample& s : *samples) tokens += static_cast<int64_t>(s.token_ids.size());
    if (tokens != expected) {
      Die("Generate made " + std::to_string(tokens) + " tokens, expected " + std::to_string(expected));
    }
  });
  std::vector<double> rates;
  for (double s : seconds) rates.push_back(static_cast<double>(expected) / s);
  return rates;
}

// Tokens/s samples of greedy decoding without a cache: the whole batch (prompt + tokens so far) runs through the
// model at every step and the last position's logits choose the next token.
std::vector<double> MeasureRecompute(const Args& args, CausalLM model, int64_t new_tokens) {
  Batch batch = CollatePrompts(Prompts(), CollateOptions()).value();
  torch::NoGradGuard no_grad;
  std::vector<double> seconds = TimeRepeated(args, [&] {
    torch::Tensor ids = batch.input_ids, mask = batch.attention_mask;
    for (int64_t s = 0; s < new_tokens; ++s) {
      torch::Tensor next = model->forward(ids, mask).logits.select(1, -1).argmax(-1, true);
      ids = torch::cat({ids, next}, 1);
      mask = torch::cat({mask, torch::ones_like(next)}, 1);
    }
    if (ids.size(1) != batch.input_ids.size(1) + new_tokens) std::exit(1);
  });
  std::vector<double> rates;
  for (double s : seconds) rates.push_back(static_cast<double>(kBatch * new_tokens) / s);
  return rates;
}

int Main(int argc, char** argv) {
  Args args = ParseArgs(argc, argv);
  SetComputeThreads(args.threads);
  const int64_t new_tokens = args.smoke ? 8 : 128;
  const std::string only = args.extra.count("only") ? "," + args.Str("only", "") + "," : "";
  auto wanted = [&](const std::string& figure) {
    return only.empty() || only.find("," + figure + ",") != std::string::npos;
  };
  Report report("generation", args);
  ModelConfig small = SmallConfig();
  CausalLM model = MakeModel(small);
  report.config()["model_1m"] = Describe(small, model);
  report.config()["batch"] = kBatch;
  report.config()["prompt_lengths"] = PromptLengths();
  report.config()["padding"] = "left";
  report.config()["new_tokens"] = new_tokens;
  report.config()["decoding"] = "greedy, no stop tokens";
  const std::string per_rep = "8 rows x " + std::to_string(new_tokens) + " new tokens / wall time of one call";
  if (wanted("kv")) {
    report.Add("kv_tokens_per_s", "tokens/s", MeasureEngine(args, model, new_tokens), true,
               "Engine::Generate with the KV cache, ~1M model; " + per_rep);
  }
  if (wanted("no_kv")) {
    report.Add("no_kv_tokens_per_s", "tokens/s", MeasureRecompute(args, model, new_tokens), true,
               "full recomputation of the batch every step, ~1M model; " + per_rep);
  }
  if (wanted("kv_20m") && !(args.smoke && only.empty())) {
    ModelConfig big = Config20m();
    CausalLM model20 = MakeModel(big);
    report.config()["model_20m"] = Describe(big, model20);
    report.Add("kv_20m_tokens_per_s", "tokens/s", MeasureEngine(args, model20, new_tokens), true,
               "Engine::Generate with the KV cache, ~20M model; " + per_rep);
  }
  return report.Write();
}

}  // namespace
}  // namespace alignd::bench

int main(int argc, char** argv) { return alignd::bench::Main(argc, argv); }
