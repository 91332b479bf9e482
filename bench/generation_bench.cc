// Generation throughput: greedy tokens per second of the rollout engine (Engine::Generate, the path the rollout
// service and the in-process learner use: KV cache, prefill once, one token per step) against full recomputation of
// the whole left-padded batch at every step (no cache), at 128 new tokens.
//
//   generation_bench [--threads=N] [--reps=N] [--warmup=N] [--smoke] [--out=FILE]
//                    [--only=kv,no_kv,kv_20m,mixed,mixed_batch]
//
// --only names the figures to measure (default: all; --smoke skips kv_20m).
//
// The mixed case (mixed_tokens_per_s, mixed_batch_tokens_per_s): 48 rows of mixed prompt and answer lengths, as an
// instruction set has, through max_batch_rows 8 on the ~1M model, with continuous batching (the engine's default) and
// batch at a time. Prompt lengths were drawn once from a lognormal (median 24 tokens, sigma 0.6, clipped to [4, 160]:
// 5..54, mean 22) and answer budgets from another (median 40, sigma 0.8, clipped to [4, 256]: 8..198, mean 52, 2500
// tokens in all), with numpy's default_rng(7); both lists are written out below and in generate_ref.py. Each row
// generates exactly its budget (SamplingParams::max_new_tokens_per_prompt, no stop tokens), so both sides do the same
// work; prompt tokens are (7 * row + 3 * position) % 256.
//
// Models: a Llama-family decoder of ~0.9M parameters (vocab 261, hidden 128, 4 layers, 4 heads, 2 KV heads, untied)
// and, for kv_20m_tokens_per_s, one of ~18M (hidden 512, 6 layers, 8 heads, 4 KV heads, untied); random weights,
// fp32. Batch 8, left-padded prompts of 9..30 tokens, no stop tokens, so every row generates exactly 128 tokens.
// bench/reference/generate_ref.py measures the same with a Hugging Face-style generate loop.
#include <ATen/Parallel.h>
#include <torch/torch.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "bench/bench_util.h"
#include "common/data/collate.h"
#include "common/model/compute_threads.h"
#include "common/model/model_config.h"
#include "common/model/transformer.h"
#include "common/text/tokenizer.h"
#include "rollout/engine.h"

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
  return {{"family", "llama"},
          {"vocab_size", c.vocab_size},
          {"hidden_size", c.hidden_size},
          {"intermediate_size", c.intermediate_size},
          {"num_layers", c.num_layers},
          {"num_heads", c.num_heads},
          {"num_kv_heads", c.num_kv_heads},
          {"head_dim", c.head_dim},
          {"tie_word_embeddings", false},
          {"dtype", "float32"},
          {"parameters", Parameters(m)}};
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

// The mixed case's prompt lengths and answer budgets (see the top of the file).
const std::vector<int>& MixedPromptLengths() {
  static const std::vector<int> lengths = {24, 29, 20, 14, 18, 13, 25, 54, 18, 17, 32, 30, 26, 14, 24, 36,
                                           11, 18, 8,  11, 8,  21, 11, 28, 26, 21, 5,  17, 23, 26, 10, 18,
                                           13, 15, 45, 15, 24, 41, 17, 22, 26, 25, 12, 25, 54, 9,  40, 26};
  return lengths;
}
const std::vector<int64_t>& MixedBudgets() {
  static const std::vector<int64_t> budgets = {24, 198, 74, 15,  42, 63, 34, 69, 38,  68, 126, 23, 47, 28, 44, 15,
                                               25, 34,  82, 100, 14, 21, 67, 8,  28,  37, 109, 69, 31, 30, 33, 135,
                                               28, 31,  53, 36,  34, 16, 40, 28, 102, 67, 39,  68, 30, 93, 40, 64};
  return budgets;
}
constexpr int64_t kMixedBatchRows = 8;

// Tokens/s samples of Engine::Generate on the mixed case (`rows` rows, budgets capped at `cap`), greedy, continuous
// batching or batch at a time.
// `stats` gets the last call's GenerateStats.
std::vector<double> MeasureMixed(const Args& args, CausalLM model, size_t rows, int64_t cap, bool continuous,
                                 nlohmann::json& stats) {
  rollout::Engine::Options options;
  options.model = std::move(model);
  options.tokenizer = std::shared_ptr<const Tokenizer>(MakeByteTokenizer());
  options.max_batch_rows = kMixedBatchRows;
  options.continuous_batching = continuous;
  auto engine = rollout::Engine::Create(std::move(options));
  if (!engine.ok()) Die("Engine::Create: " + engine.status().ToString());
  std::vector<std::vector<int32_t>> prompts;
  rollout::SamplingParams params;
  params.temperature = 0;
  params.max_new_tokens = 0;
  params.stop_token_ids = std::vector<int32_t>{};
  int64_t expected = 0;
  for (size_t r = 0; r < rows; ++r) {
    std::vector<int32_t> p;
    for (int i = 0; i < MixedPromptLengths()[r]; ++i) p.push_back(static_cast<int32_t>((7 * r + 3 * i) % 256));
    prompts.push_back(p);
    params.max_new_tokens_per_prompt.push_back(std::min(cap, MixedBudgets()[r]));
    params.max_new_tokens = std::max(params.max_new_tokens, params.max_new_tokens_per_prompt.back());
    expected += params.max_new_tokens_per_prompt.back();
  }
  rollout::GenerateStats last;
  std::vector<double> seconds = TimeRepeated(args, [&] {
    auto samples = (*engine)->Generate(prompts, params, &last);
    if (!samples.ok()) Die("Generate: " + samples.status().ToString());
    int64_t tokens = 0;
    for (const rollout::Sample& s : *samples) tokens += static_cast<int64_t>(s.token_ids.size());
    if (tokens != expected) {
      Die("Generate made " + std::to_string(tokens) + " tokens, expected " + std::to_string(expected));
    }
  });
  stats = {{"prefill_groups", last.batches},
           {"prefill_tokens", last.prefill_tokens},
           {"decode_steps", last.decode_steps},
           {"decode_row_steps", last.decode_row_steps},
           {"max_decode_width", last.max_decode_width},
           {"prefill_seconds", last.prefill_seconds},
           {"decode_seconds", last.decode_seconds}};
  std::vector<double> rates;
  for (double s : seconds) rates.push_back(static_cast<double>(expected) / s);
  return rates;
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
  const size_t mixed_rows = args.smoke ? 12 : MixedPromptLengths().size();
  const int64_t mixed_cap = args.smoke ? 8 : 256;
  if (wanted("mixed") || wanted("mixed_batch")) {
    report.config()["mixed"] = {
        {"rows", mixed_rows},
        {"max_batch_rows", kMixedBatchRows},
        {"prompt_lengths", std::vector<int>(MixedPromptLengths().begin(), MixedPromptLengths().begin() + mixed_rows)},
        {"budget_cap", mixed_cap},
        {"budgets", std::vector<int64_t>(MixedBudgets().begin(), MixedBudgets().begin() + mixed_rows)},
        {"spread", "lognormal prompts (median 24, sigma 0.6) and answers (median 40, sigma 0.8), numpy rng 7"}};
  }
  const std::string mixed_note = std::to_string(mixed_rows) + " rows of mixed lengths, max_batch_rows 8, ~1M model; " +
                                 "generated tokens / wall time of one call";
  if (wanted("mixed")) {
    report.Add("mixed_tokens_per_s", "tokens/s",
               MeasureMixed(args, model, mixed_rows, mixed_cap, true, report.config()["mixed"]["continuous_stats"]),
               true, "Engine::Generate, continuous batching, " + mixed_note);
  }
  if (wanted("mixed_batch")) {
    report.Add("mixed_batch_tokens_per_s", "tokens/s",
               MeasureMixed(args, model, mixed_rows, mixed_cap, false, report.config()["mixed"]["batch_stats"]), true,
               "Engine::Generate, batch at a time (continuous_batching = false), " + mixed_note);
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
