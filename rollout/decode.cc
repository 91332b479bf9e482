#include "rollout/decode.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/nn.h>

#include <algorithm>
#include <chrono>
#include <limits>
#include <string>
#include <utility>

#include "common/collate.h"

namespace alignd::rollout {
namespace {

using Clock = std::chrono::steady_clock;

double SecondsSince(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

torch::Tensor LongTensor(const std::vector<int64_t>& values, const torch::Device& device) {
  return torch::tensor(values, torch::kLong).to(device);
}

// A row being generated.
struct RowState {
  Sample sample;
  at::Generator generator;
  std::string text;                         // decoded so far (special tokens and the stop token left out)
  size_t cut = std::string::npos;           // where a stop string starts in `text`
  bool done = false;
};

// The first position where a stop string starts that ends after `from` (the start of the text just appended), or
// npos.
size_t FindStopString(const std::string& text, size_t from, const std::vector<std::string>& stops) {
  size_t best = std::string::npos;
  for (const std::string& stop : stops) {
    size_t start = from >= stop.size() - 1 ? from - (stop.size() - 1) : 0;
    best = std::min(best, text.find(stop, start));
  }
  return best;
}

// Appends `token` and its two log-probs to `row` and decides whether the row is finished.
void Advance(RowState& row, int64_t token, float logprob, float sampling_logprob, const DecodeRequest& request,
             const Tokenizer& tokenizer) {
  const SamplingParams& params = *request.params;
  Sample& s = row.sample;
  s.token_ids.push_back(static_cast<int32_t>(token));
  s.logprobs.push_back(logprob);
  s.sampling_logprobs.push_back(sampling_logprob);
  const int64_t generated = static_cast<int64_t>(s.token_ids.size());
  const auto& stops = request.stop_token_ids;
  if (std::find(stops.begin(), stops.end(), token) != stops.end()) {
    s.finish_reason = FinishReason::kStop;
    row.done = true;
    return;
  }
  const size_t old_size = row.text.size();
  row.text += tokenizer.Decode({static_cast<int32_t>(token)}, /*skip_special_tokens=*/true);
  if (!params.stop_strings.empty() && generated >= params.min_new_tokens && row.text.size() > old_size) {
    row.cut = FindStopString(row.text, old_size, params.stop_strings);
    if (row.cut != std::string::npos) {
      s.finish_reason = FinishReason::kStop;
      row.done = true;
      return;
    }
  }
  if (generated >= params.max_new_tokens) {
    s.finish_reason = FinishReason::kLength;
    row.done = true;
  }
}

}  // namespace

std::vector<Sample> DecodeBatch(CausalLMImpl& model, const Tokenizer& tokenizer, const DecodeRequest& request,
                                GenerateStats& stats) {
  torch::NoGradGuard no_grad;
  const SamplingParams& params = *request.params;
  const auto& prompts = *request.prompts;
  const torch::Device device = model.parameters().front().device();
  const bool greedy = params.temperature == 0;
  Clock::time_point start = Clock::now();

  // Each distinct prompt is prefilled once; its rows then share copies of its cache.
  std::vector<std::vector<int32_t>> distinct;
  std::vector<int64_t> distinct_index_of_prompt;  // parallel to `distinct`: the prompt index
  std::vector<int64_t> row_source(request.rows.size());
  for (size_t r = 0; r < request.rows.size(); ++r) {
    const int64_t p = request.rows[r].prompt_index;
    auto it = std::find(distinct_index_of_prompt.begin(), distinct_index_of_prompt.end(), p);
    if (it == distinct_index_of_prompt.end()) {
      distinct_index_of_prompt.push_back(p);
      distinct.push_back(prompts[static_cast<size_t>(p)]);
      it = distinct_index_of_prompt.end() - 1;
    }
    row_source[r] = it - distinct_index_of_prompt.begin();
  }
  CollateOptions collate;
  collate.pad_id = request.pad_id;
  Batch batch = CollatePrompts(distinct, collate).value();  // prompts were validated as non-empty
  torch::Tensor mask = batch.attention_mask.to(device);
  KVCache cache;
  ModelOutput out = model.forward(batch.input_ids.to(device), mask, {}, &cache);
  torch::Tensor last_logits = out.logits.select(1, -1);
  stats.prefill_tokens += batch.input_ids.numel();
  if (distinct.size() != request.rows.size()) {
    torch::Tensor expand = LongTensor(row_source, device);
    cache.SelectRows(expand);
    mask = mask.index_select(0, expand);
    last_logits = last_logits.index_select(0, expand);
  }
  stats.prefill_seconds += SecondsSince(start);
  start = Clock::now();

  std::vector<RowState> rows;
  rows.reserve(request.rows.size());
  for (const RowSpec& spec : request.rows) {
    RowState row;
    row.generator = at::detail::createCPUGenerator(RowSeed(params.seed, spec.prompt_index, spec.sample_index));
    row.sample.prompt_index = spec.prompt_index;
    row.sample.sample_index = spec.sample_index;
    rows.push_back(std::move(row));
  }
  std::vector<int64_t> active(rows.size());  // batch row -> index into `rows`
  for (size_t r = 0; r < rows.size(); ++r) active[r] = static_cast<int64_t>(r);
  const torch::Tensor stop_ids = torch::tensor(
      std::vector<int64_t>(request.stop_token_ids.begin(), request.stop_token_ids.end()), torch::kLong);

  for (int64_t step = 0;; ++step) {
    torch::Tensor logits = last_logits.to(torch::kCPU, torch::kFloat);  // [A, V]
    torch::Tensor raw_logprobs = torch::log_softmax(logits, -1);
    if (step < params.min_new_tokens && stop_ids.numel() > 0) {
      logits = logits.index_fill(1, stop_ids, -std::numeric_limits<float>::infinity());
    }
    torch::Tensor tokens, sampling_logprobs;
    if (greedy) {
      tokens = logits.argmax(-1);
      sampling_logprobs = torch::zeros({logits.size(0)});
    } else {
      torch::Tensor dist = SamplingLogProbs(logits, params.temperature, params.top_k, params.top_p);
      std::vector<at::Generator> generators;
      generators.reserve(active.size());
      for (int64_t r : active) generators.push_back(rows[static_cast<size_t>(r)].generator);
      tokens = torch::tensor(DrawTokens(dist, generators), torch::kLong);
      sampling_logprobs = dist.gather(1, tokens.unsqueeze(1)).squeeze(1);
    }
    torch::Tensor chosen_logprobs = raw_logprobs.gather(1, tokens.unsqueeze(1)).squeeze(1);
    auto tokens_a = tokens.accessor<int64_t, 1>();
    auto logprobs_a = chosen_logprobs.accessor<float, 1>();
    auto sampling_a = sampling_logprobs.accessor<float, 1>();

    std::vector<int64_t> keep;        // batch rows that continue
    std::vector<int64_t> next_tokens;
    for (size_t a = 0; a < active.size(); ++a) {
      const auto i = static_cast<int64_t>(a);
      RowState& row = rows[static_cast<size_t>(active[a])];
      Advance(row, tokens_a[i], logprobs_a[i], sampling_a[i], request, tokenizer);
      if (!row.done) {
        keep.push_back(i);
        next_tokens.push_back(tokens_a[i]);
      }
    }
    if (keep.empty()) break;
    if (keep.size() < active.size()) {
      torch::Tensor select = LongTensor(keep, device);
      cache.SelectRows(select);
      mask = mask.index_select(0, select);
      std::vector<int64_t> still_active;
      still_active.reserve(keep.size());
      for (int64_t i : keep) still_active.push_back(active[static_cast<size_t>(i)]);
      active = std::move(still_active);
    }
    const auto a = static_cast<int64_t>(active.size());
    mask = torch::cat({mask, torch::ones({a, 1}, mask.options())}, 1);
    out = model.forward(LongTensor(next_tokens, device).view({a, 1}), mask, {}, &cache);
    last_logits = out.logits.select(1, -1);
    ++stats.decode_steps;
    stats.decode_row_steps += a;
  }
  stats.decode_seconds += SecondsSince(start);

  std::vector<Sample> samples;
  samples.reserve(rows.size());
  for (RowState& row : rows) {
    row.sample.text = row.cut == std::string::npos ? std::move(row.text) : row.text.substr(0, row.cut);
    stats.generated_tokens += static_cast<int64_t>(row.sample.token_ids.size());
    samples.push_back(std::move(row.sample));
  }
  return samples;
}

}  // namespace alignd::rollout
