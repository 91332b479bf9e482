#include "rollout/decode.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/nn.h>

#include <algorithm>
#include <chrono>
#include <limits>
#include <string>
#include <utility>

#include "absl/strings/string_view.h"
#include "common/data/collate.h"
#include "common/text/utf8.h"
#include "rollout/running_batch.h"

namespace alignd::rollout {
namespace {

using Clock = std::chrono::steady_clock;

double SecondsSince(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

torch::Tensor LongTensor(const std::vector<int64_t>& values, const torch::Device& device) {
  return torch::tensor(values, torch::kLong).to(device);
}

// A row being generated.
struct RowState {
  Sample sample;
  at::Generator generator;
  int64_t max_new_tokens = 0;      // the request's, or its prompt's own
  int64_t length = 0;              // real (unpadded) positions in the KV cache: prompt + tokens fed back
  std::string text;                // decoded so far (special tokens and the stop token left out)
  size_t cut = std::string::npos;  // where a stop string starts in `text`
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
  if (generated >= row.max_new_tokens) {
    s.finish_reason = FinishReason::kLength;
    row.done = true;
  }
}

// Prefills rows[begin, end) of the request: each distinct prompt once (left-padded), then its cache rows, mask row
// and last logits copied for each of its rows.
RunningBatch Prefill(CausalLMImpl& model, const DecodeRequest& request, size_t begin, size_t end,
                     const torch::Device& device, GenerateStats& stats) {
  const auto& prompts = *request.prompts;
  std::vector<std::vector<int32_t>> distinct;
  std::vector<int64_t> distinct_prompt;  // parallel to `distinct`: the prompt index
  std::vector<int64_t> row_source;       // row - begin -> index into `distinct`
  for (size_t r = begin; r < end; ++r) {
    const int64_t p = request.rows[r].prompt_index;
    auto it = std::find(distinct_prompt.begin(), distinct_prompt.end(), p);
    if (it == distinct_prompt.end()) {
      distinct_prompt.push_back(p);
      distinct.push_back(prompts[static_cast<size_t>(p)]);
      it = distinct_prompt.end() - 1;
    }
    row_source.push_back(it - distinct_prompt.begin());
  }
  CollateOptions collate;
  collate.pad_id = request.pad_id;
  Batch batch = CollatePrompts(distinct, collate).value();  // prompts were validated as non-empty
  RunningBatch group;
  group.mask = batch.attention_mask.to(device);
  // The head on the last position only: the prompt's other positions choose nothing ([rows, T, vocab] logits for a
  // 32k vocabulary would cost more than the layers).
  torch::Tensor hidden = model.forward_hidden(batch.input_ids.to(device), group.mask, {}, &group.cache);
  group.last_logits = model.head(hidden.select(1, -1));
  stats.prefill_tokens += batch.input_ids.numel();
  if (distinct.size() != end - begin) group.Keep(LongTensor(row_source, device));
  return group;
}

// Chooses the next token of every running row from `logits` [A, V] (on the CPU, float) and advances the rows.
// Returns the batch rows that continue.
std::vector<int64_t> Step(torch::Tensor logits, std::vector<RowState>& rows, const std::vector<int64_t>& active,
                          const torch::Tensor& stop_ids, const DecodeRequest& request, const Tokenizer& tokenizer) {
  const SamplingParams& params = *request.params;
  torch::Tensor raw_logprobs = torch::log_softmax(logits, -1);
  std::vector<int64_t> early;  // rows that may not stop yet (min_new_tokens)
  for (size_t a = 0; a < active.size(); ++a) {
    if (static_cast<int64_t>(rows[static_cast<size_t>(active[a])].sample.token_ids.size()) < params.min_new_tokens) {
      early.push_back(static_cast<int64_t>(a));
    }
  }
  if (!early.empty() && stop_ids.numel() > 0) {
    torch::Tensor index = torch::tensor(early, torch::kLong);
    torch::Tensor suppressed =
        logits.index_select(0, index).index_fill(1, stop_ids, -std::numeric_limits<float>::infinity());
    logits = logits.index_copy(0, index, suppressed);
  }
  torch::Tensor tokens, sampling_logprobs;
  if (params.temperature == 0) {
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
  std::vector<int64_t> keep;
  for (size_t a = 0; a < active.size(); ++a) {
    const auto i = static_cast<int64_t>(a);
    RowState& row = rows[static_cast<size_t>(active[a])];
    Advance(row, tokens_a[i], logprobs_a[i], sampling_a[i], request, tokenizer);
    if (!row.done) keep.push_back(i);
  }
  return keep;
}

// Left columns that are padding in every running row (rows are right-aligned, so the longest row decides).
int64_t CommonPadding(const RunningBatch& batch, const std::vector<RowState>& rows,
                      const std::vector<int64_t>& active) {
  int64_t longest = 0;
  for (int64_t r : active) longest = std::max(longest, rows[static_cast<size_t>(r)].length);
  return batch.width() - longest;
}

}  // namespace

std::vector<Sample> DecodeRows(CausalLMImpl& model, const Tokenizer& tokenizer, const DecodeRequest& request,
                               GenerateStats& stats) {
  torch::NoGradGuard no_grad;
  const SamplingParams& params = *request.params;
  const auto& prompts = *request.prompts;
  const torch::Device device = model.parameters().front().device();

  std::vector<RowState> rows;
  rows.reserve(request.rows.size());
  for (const RowSpec& spec : request.rows) {
    RowState row;
    row.generator = at::detail::createCPUGenerator(
        RowSeed(params.seed, params.first_prompt_index + spec.prompt_index, spec.sample_index));
    row.sample.prompt_index = spec.prompt_index;
    row.sample.sample_index = spec.sample_index;
    row.max_new_tokens = params.max_new_tokens_per_prompt.empty()
                             ? params.max_new_tokens
                             : params.max_new_tokens_per_prompt[static_cast<size_t>(spec.prompt_index)];
    row.length = static_cast<int64_t>(prompts[static_cast<size_t>(spec.prompt_index)].size());
    rows.push_back(std::move(row));
  }
  const torch::Tensor stop_ids =
      torch::tensor(std::vector<int64_t>(request.stop_token_ids.begin(), request.stop_token_ids.end()), torch::kLong);

  RunningBatch batch;
  std::vector<int64_t> active;  // batch row -> index into `rows`
  size_t waiting = 0;           // rows[waiting..] have not joined yet
  // Prefills the waiting rows that fit (all free places at once) and appends them to the running batch.
  auto admit = [&] {
    const auto free = static_cast<size_t>(request.max_batch_rows) - active.size();
    if (waiting == rows.size() || free == 0 || (!request.continuous && !active.empty())) return;
    const Clock::time_point start = Clock::now();
    const size_t end = std::min(rows.size(), waiting + free);
    batch.Append(Prefill(model, request, waiting, end, device, stats));
    for (size_t r = waiting; r < end; ++r) active.push_back(static_cast<int64_t>(r));
    waiting = end;
    ++stats.batches;
    stats.prefill_seconds += SecondsSince(start);
  };

  admit();
  while (!active.empty()) {
    const Clock::time_point start = Clock::now();
    std::vector<int64_t> keep =
        Step(batch.last_logits.to(torch::kCPU, torch::kFloat), rows, active, stop_ids, request, tokenizer);
    if (keep.size() < active.size()) {
      batch.Keep(LongTensor(keep, device));
      std::vector<int64_t> still_active;
      still_active.reserve(keep.size());
      for (int64_t i : keep) still_active.push_back(active[static_cast<size_t>(i)]);
      active = std::move(still_active);
      // Padding left behind by rows that left: cut it once it is a quarter of the width, so the width stays within
      // 4/3 of the longest running row however many rows pass through (each cut copies the cache once).
      const int64_t padding = CommonPadding(batch, rows, active);
      if (!active.empty() && padding > 0 && 4 * padding >= batch.width()) batch.TrimLeft(padding);
    }
    if (!active.empty()) {
      const auto a = static_cast<int64_t>(active.size());
      std::vector<int64_t> next_tokens;
      next_tokens.reserve(active.size());
      for (int64_t r : active) {
        RowState& row = rows[static_cast<size_t>(r)];
        next_tokens.push_back(row.sample.token_ids.back());
        ++row.length;
      }
      batch.mask = torch::cat({batch.mask, torch::ones({a, 1}, batch.mask.options())}, 1);
      ModelOutput out = model.forward(LongTensor(next_tokens, device).view({a, 1}), batch.mask, {}, &batch.cache);
      batch.last_logits = out.logits.select(1, -1);
      ++stats.decode_steps;
      stats.decode_row_steps += a;
      stats.max_decode_width = std::max(stats.max_decode_width, batch.width());
    }
    stats.decode_seconds += SecondsSince(start);
    admit();
  }

  std::vector<Sample> samples;
  samples.reserve(rows.size());
  for (RowState& row : rows) {
    row.sample.text = ValidUtf8(row.cut == std::string::npos ? absl::string_view(row.text)
                                                             : absl::string_view(row.text).substr(0, row.cut));
    stats.generated_tokens += static_cast<int64_t>(row.sample.token_ids.size());
    samples.push_back(std::move(row.sample));
  }
  return samples;
}

}  // namespace alignd::rollout
