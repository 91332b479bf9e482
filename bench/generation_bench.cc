// Generation throughput: greedy tokens per second of the rollout engine (KV cache, finished rows leave the batch)
// against full recomputation of the whole left-padded batch at every step, at 16 / 128 / 256 new tokens.
//
//   generation_bench [--threads=N] [benchmark flags, e.g. --benchmark_filter=KvCache]
//
// --threads sets LibTorch's intra-op threads (default: alignd::AvailableCores()). The model is a Llama-family
// decoder of ~0.85M parameters (hidden 128, 4 layers, context 512), batch 8, random weights, no stop tokens, so
// every row generates exactly the requested number of tokens.
#include <ATen/Parallel.h>
#include <benchmark/benchmark.h>
#include <torch/torch.h>

#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "common/collate.h"
#include "common/model_config.h"
#include "common/threads.h"
#include "common/tokenizer.h"
#include "common/transformer.h"
#include "rollout/engine.h"

namespace alignd::rollout {
namespace {

constexpr int64_t kBatch = 8;

CausalLM& Model() {
  static CausalLM* const model = [] {
    ModelConfig c = TinyLlamaConfig(261, 128, 4, 4, 2, 512);
    c.tie_word_embeddings = false;
    auto* m = new CausalLM(c);
    (*m)->InitWeights(1);
    (*m)->eval();
    return m;
  }();
  return *model;
}

std::vector<std::vector<int32_t>> Prompts() {
  std::mt19937 rng(12);
  std::vector<std::vector<int32_t>> prompts;
  for (int n : {12, 20, 16, 24, 9, 30, 18, 14}) {
    std::vector<int32_t> p;
    for (int i = 0; i < n; ++i) p.push_back(static_cast<int32_t>(rng() % 256));
    prompts.push_back(p);
  }
  return prompts;
}

void BM_KvCache(benchmark::State& state) {
  const int64_t new_tokens = state.range(0);
  Engine::Options options;
  options.model = Model();
  options.tokenizer = std::shared_ptr<const Tokenizer>(MakeByteTokenizer());
  auto engine = Engine::Create(std::move(options));
  if (!engine.ok()) {
    state.SkipWithError(engine.status().ToString().c_str());
    return;
  }
  SamplingParams params;
  params.temperature = 0;
  params.max_new_tokens = new_tokens;
  params.stop_token_ids = std::vector<int32_t>{};
  const auto prompts = Prompts();
  int64_t tokens = 0;
  for (auto _ : state) {
    auto samples = (*engine)->Generate(prompts, params);
    if (!samples.ok()) {
      state.SkipWithError(samples.status().ToString().c_str());
      return;
    }
    for (const Sample& s : *samples) tokens += static_cast<int64_t>(s.token_ids.size());
  }
  state.counters["tokens_per_s"] = benchmark::Counter(static_cast<double>(tokens), benchmark::Counter::kIsRate);
}

void BM_Recompute(benchmark::State& state) {
  const int64_t new_tokens = state.range(0);
  Batch batch = CollatePrompts(Prompts(), CollateOptions()).value();
  CausalLM& model = Model();
  torch::NoGradGuard no_grad;
  int64_t tokens = 0;
  for (auto _ : state) {
    torch::Tensor ids = batch.input_ids, mask = batch.attention_mask;
    for (int64_t s = 0; s < new_tokens; ++s) {
      torch::Tensor next = model->forward(ids, mask).logits.select(1, -1).argmax(-1, true);
      ids = torch::cat({ids, next}, 1);
      mask = torch::cat({mask, torch::ones_like(next)}, 1);
    }
    benchmark::DoNotOptimize(ids.data_ptr());
    tokens += kBatch * new_tokens;
  }
  state.counters["tokens_per_s"] = benchmark::Counter(static_cast<double>(tokens), benchmark::Counter::kIsRate);
}

BENCHMARK(BM_KvCache)->Arg(16)->Arg(128)->Arg(256)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_Recompute)->Arg(16)->Arg(128)->Arg(256)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace
}  // namespace alignd::rollout

int main(int argc, char** argv) {
  int threads = alignd::AvailableCores();
  std::vector<char*> args;
  for (int i = 0; i < argc; ++i) {
    if (std::strncmp(argv[i], "--threads=", 10) == 0) {
      threads = std::atoi(argv[i] + 10);
    } else {
      args.push_back(argv[i]);
    }
  }
  if (threads < 1) threads = 1;
  at::set_num_threads(threads);
  benchmark::AddCustomContext("torch_threads", std::to_string(threads));
  int n = static_cast<int>(args.size());
  benchmark::Initialize(&n, args.data());
  if (benchmark::ReportUnrecognizedArguments(n, args.data())) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
