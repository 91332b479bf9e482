// The decode loop of one batch, used by Engine: prefill of left-padded prompts with a KV cache, then one-token steps
// with finished rows dropped from the batch. Callers validate the request first (Engine::Generate does).
#ifndef ALIGND_ROLLOUT_DECODE_H_
#define ALIGND_ROLLOUT_DECODE_H_

#include <cstdint>
#include <vector>

#include "common/tokenizer.h"
#include "common/transformer.h"
#include "rollout/engine.h"
#include "rollout/sampling.h"

namespace alignd::rollout {

// One row of a batch: sample `sample_index` of prompts[prompt_index].
struct RowSpec {
  int64_t prompt_index = 0;
  int64_t sample_index = 0;
};

struct DecodeRequest {
  const std::vector<std::vector<int32_t>>* prompts = nullptr;  // the whole request's prompts
  std::vector<RowSpec> rows;                                   // this batch; not empty
  const SamplingParams* params = nullptr;
  std::vector<int32_t> stop_token_ids;  // resolved (never "default")
  int64_t pad_id = 0;                   // any id in the vocabulary; padding is masked out
};

// Generates the rows of `request` with `model` (under NoGradGuard; tokens are chosen on the CPU, so the model may
// live on any device). Returns one Sample per row, in row order, with weight_version left 0. Adds to *stats.
// Throws c10::Error when LibTorch fails.
std::vector<Sample> DecodeBatch(CausalLMImpl& model, const Tokenizer& tokenizer, const DecodeRequest& request,
                                GenerateStats& stats);

}  // namespace alignd::rollout

#endif  // ALIGND_ROLLOUT_DECODE_H_
