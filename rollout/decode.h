// The decode loop used by Engine: prompts are prefilled in groups (left-padded, each distinct prompt once, with a KV
// cache), then every running row gets one token per step; finished rows leave the batch at once. With continuous
// batching the waiting rows are prefilled and join the running batch as soon as rows leave (rollout/running_batch.h
// pads the shorter side's cache on the left); without it a group starts only when the previous one has finished.
// Callers validate the request first (Engine::Generate does).
#ifndef ALIGND_ROLLOUT_DECODE_H_
#define ALIGND_ROLLOUT_DECODE_H_

#include <cstdint>
#include <vector>

#include "common/model/transformer.h"
#include "common/text/tokenizer.h"
#include "rollout/engine.h"
#include "rollout/sampling.h"

namespace alignd::rollout {

// One row: sample `sample_index` of prompts[prompt_index].
struct RowSpec {
  int64_t prompt_index = 0;
  int64_t sample_index = 0;
};

struct DecodeRequest {
  const std::vector<std::vector<int32_t>>* prompts = nullptr;  // the whole request's prompts
  std::vector<RowSpec> rows;                                   // in the order they enter the batch; not empty
  const SamplingParams* params = nullptr;
  std::vector<int32_t> stop_token_ids;  // resolved (never "default")
  int64_t pad_id = 0;                   // any id in the vocabulary; padding is masked out
  int64_t max_batch_rows = 64;          // rows decoded together at most; >= 1
  bool continuous = true;               // waiting rows join as running rows leave (else: group after group)
};

// Generates the rows of `request` with `model` (under NoGradGuard; tokens are chosen on the CPU, so the model may
// live on any device). Returns one Sample per row, in row order, with weight_version left 0. Adds to *stats.
// A row's tokens do not depend on which rows share its batch (beyond floating-point rounding): padding is masked,
// positions skip it, and each row samples from its own generator (RowSeed). Throws c10::Error when LibTorch fails.
std::vector<Sample> DecodeRows(CausalLMImpl& model, const Tokenizer& tokenizer, const DecodeRequest& request,
                               GenerateStats& stats);

}  // namespace alignd::rollout

#endif  // ALIGND_ROLLOUT_DECODE_H_
