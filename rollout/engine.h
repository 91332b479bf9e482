// The generation engine: the one place alignd generates text. The learner (PPO/GRPO) calls it in-process and the
// rollout service wraps it; it knows nothing of gRPC.
//
// Generate runs batched decoding with a KV cache: the prompts of a group are left-padded, prefilled in one forward
// pass (each distinct prompt once, then its cache rows copied for its n samples), and then decoded one token per
// step with the attention mask grown by one column. A row that finishes leaves the batch at once (its cache rows and
// mask row are dropped), so it costs no further compute. Continuous batching (the default): up to max_batch_rows
// rows decode together, and as rows finish the waiting ones are prefilled and join the running batch (the narrower
// side's cache padded on the left, the padding masked), so a long answer does not hold up the rows behind it. Which
// rows share a step does not change any row's tokens or log-probs (beyond float rounding).
//
// Log-probabilities: every Sample carries two per generated token.
//  - logprobs: log softmax of the model's raw logits (temperature 1, no top-k/top-p, no min_new_tokens suppression)
//    at the chosen token. This is the policy log-prob PPO/GRPO need, and it equals what the learner computes on
//    prompt + completion (see rollout/logprob_gap.h for the check).
//  - sampling_logprobs: log-prob of the chosen token under the distribution it was actually drawn from (after
//    temperature, top-k, top-p and suppression); 0 for greedy decoding (temperature 0), which is deterministic.
//
// Thread safety: all methods are thread-safe. Generate calls are serialised (one runs at a time, holding the model);
// SetModel and UpdateWeights wait for the running Generate, so one call's samples all come from one weight version.
#ifndef ALIGND_ROLLOUT_ENGINE_H_
#define ALIGND_ROLLOUT_ENGINE_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "common/data/dataset.h"
#include "common/data/example_tokenizer.h"
#include "common/model/transformer.h"
#include "common/text/tokenizer.h"
#include "rollout/sampling.h"

namespace alignd {
class PeftModel;  // common/model/peft.h
}  // namespace alignd

namespace alignd::rollout {

enum class FinishReason {
  kStop,    // a stop token or stop string ended the sample
  kLength,  // max_new_tokens were generated
};
// "stop" / "length".
absl::string_view FinishReasonName(FinishReason reason);

struct Sample {
  int64_t prompt_index = 0;  // index into the request's prompts
  int64_t sample_index = 0;  // 0..n-1 among the samples of that prompt
  // Generated tokens only. A stop token that ended the sample is included (the learner trains the model to stop);
  // after a stop string, the tokens run through the one that completed it.
  std::vector<int32_t> token_ids;
  // Decoded token_ids with special tokens skipped and without the stop token; cut before a stop string. Always valid
  // UTF-8 (ValidUtf8, common/text/utf8.h): a byte the tokens spell that is not part of a valid character (a sample
  // cut inside one, or garble) reads as U+FFFD. Every consumer sees the same text: the reward in-process and on a
  // reward server, the rollout service's proto3 strings, evaluation files. token_ids stay exact.
  std::string text;
  std::vector<float> logprobs;           // one per token_ids entry: raw model, temperature 1 (see above)
  std::vector<float> sampling_logprobs;  // one per token_ids entry: the sampling distribution (see above)
  FinishReason finish_reason = FinishReason::kLength;
  uint64_t weight_version = 0;  // the version of the weights that generated it
};

// What one Generate call computed, for monitoring and tests.
struct GenerateStats {
  int64_t batches = 0;           // prefill groups: the rows joined the decode batch in this many groups
  int64_t prefill_tokens = 0;    // padded prompt positions run through prefill (distinct prompts only)
  int64_t decode_steps = 0;      // one-token decode forward passes
  int64_t decode_row_steps = 0;  // rows summed over decode steps: the decode compute actually spent
  int64_t generated_tokens = 0;  // tokens in all samples
  int64_t max_decode_width = 0;  // widest cache of a decode step, left padding included (bounded: see decode.cc)
  double prefill_seconds = 0;
  double decode_seconds = 0;  // decode forward passes plus token choice
};

class Engine {
 public:
  struct Options {
    // Required: a model with a language-model head. The engine shares ownership of the module; the caller may keep
    // a handle, but must change its parameters only through SetModel / UpdateWeights.
    CausalLM model{nullptr};
    // Required. Decodes completions and renders string prompts.
    std::shared_ptr<const Tokenizer> tokenizer;
    // Chat template that string prompts are rendered with, as one user turn plus the generation prompt: "chatml"
    // (default), "llama3", "plain" or "raw" (BOS + the string as it is, for base models).
    std::string chat_template = "chatml";
    // Stop tokens used when a request does not name its own. nullopt (default) = the tokenizer's EOS plus the
    // template's end-of-turn string when it encodes to a single token.
    std::optional<std::vector<int32_t>> default_stop_token_ids;
    // Version of the initial weights, stamped on every Sample until SetModel / UpdateWeights change it.
    uint64_t weight_version = 0;
    // Rows (prompts x n) decoded together at most; the other rows wait for a place. Must be >= 1.
    int64_t max_batch_rows = 64;
    // true (default): waiting rows join the running batch as soon as rows finish. false: batch at a time, the next
    // max_batch_rows rows start only when every row of the previous batch has finished (for comparison).
    bool continuous_batching = true;
  };

  // INVALID_ARGUMENT for a missing model or tokenizer, an unknown template, max_batch_rows < 1 or a default stop
  // token outside the vocabulary; FAILED_PRECONDITION for a model with a score head.
  static absl::StatusOr<std::unique_ptr<Engine>> Create(Options options);

  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;
  ~Engine();

  // Generates params.n samples for every prompt (token ids, e.g. from EncodePrompt). Samples are returned ordered by
  // (prompt_index, sample_index). INVALID_ARGUMENT naming the field (and prompt index) for: no prompts, an empty
  // prompt, max_new_tokens_per_prompt not one per prompt, a token id outside the model's vocabulary, a prompt whose
  // length + max_new_tokens exceeds the model's context, and every ValidateSamplingParams error. INTERNAL when
  // LibTorch fails. `stats`, when given, is filled.
  // `adapter` non-empty: the samples come from the base with that loaded adapter switched on (LoadAdapter), NOT_FOUND
  // when none has the name; the adapter is off again when the call returns, so requests for different adapters (and
  // for the base) share one copy of the base weights.
  absl::StatusOr<std::vector<Sample>> Generate(const std::vector<std::vector<int32_t>>& prompts,
                                               const SamplingParams& params, GenerateStats* stats = nullptr,
                                               const std::string& adapter = "") ABSL_LOCKS_EXCLUDED(mu_);
  // The same for prompt strings, each rendered with EncodePrompt.
  absl::StatusOr<std::vector<Sample>> GenerateText(const std::vector<std::string>& prompts,
                                                   const SamplingParams& params, GenerateStats* stats = nullptr,
                                                   const std::string& adapter = "") ABSL_LOCKS_EXCLUDED(mu_);

  // Loads a PEFT adapter folder (LoRA or bottleneck adapters: adapter_config.json + adapter_model.safetensors) for the
  // current model under `name`, switched off until a request names it. INVALID_ARGUMENT for an empty or taken name;
  // the folder's errors (NOT_FOUND, INVALID_ARGUMENT naming the tensor); FAILED_PRECONDITION when the model has other
  // hooks attached. Waits for the running Generate.
  absl::Status LoadAdapter(const std::string& name, const std::string& dir) ABSL_LOCKS_EXCLUDED(mu_);
  // Names of the loaded adapters, sorted.
  std::vector<std::string> adapter_names() const ABSL_LOCKS_EXCLUDED(mu_);

  // Prompt ids as the learner's data pipeline makes them (ExampleTokenizer::Prompt, no truncation): a string is one
  // user turn, messages are rendered as they are; then the template's generation prompt.
  std::vector<int32_t> EncodePrompt(const Turns& prompt) const;
  std::vector<int32_t> EncodePrompt(const std::string& prompt) const { return EncodePrompt(Turns::Text(prompt)); }

  // Replaces the model (same rules as Options::model; the vocabulary must still cover the default stop tokens) and
  // the weight version, after the running Generate finishes. FAILED_PRECONDITION while adapters are loaded (they
  // belong to the old model). On error nothing changes.
  absl::Status SetModel(CausalLM model, uint64_t version) ABSL_LOCKS_EXCLUDED(mu_);
  // Runs `update` on the current model (e.g. copying broadcast tensors into its parameters, under NoGradGuard)
  // between Generate calls, then sets the version. When `update` fails, the version stays as it was and the status is
  // returned (INTERNAL when it throws c10::Error); the weights may then be partly updated, and the caller should retry
  // or restore them. `update` runs under the engine's lock, so it must not call back into the engine.
  absl::Status UpdateWeights(uint64_t version, const std::function<absl::Status(CausalLMImpl&)>& update)
      ABSL_LOCKS_EXCLUDED(mu_);

  // The version stamped on the samples of the next Generate; waits for a running Generate, SetModel or UpdateWeights.
  uint64_t weight_version() const ABSL_LOCKS_EXCLUDED(mu_);
  // The stop tokens a request without stop_token_ids gets.
  const std::vector<int32_t>& default_stop_token_ids() const { return default_stop_token_ids_; }
  // The chat template's name and the tokenizer (valid while the engine lives); both fixed at Create.
  const std::string& chat_template() const { return example_tokenizer_.chat_template().name(); }
  const Tokenizer& tokenizer() const { return *tokenizer_; }

 private:
  Engine(CausalLM model, std::shared_ptr<const Tokenizer> tokenizer, ExampleTokenizer example_tokenizer,
         std::vector<int32_t> default_stop_token_ids, uint64_t weight_version, int64_t max_batch_rows,
         bool continuous_batching);

  absl::Status ValidateRequest(const std::vector<std::vector<int32_t>>& prompts, const SamplingParams& params,
                               const std::vector<int32_t>& stop_ids) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const std::shared_ptr<const Tokenizer> tokenizer_;
  const ExampleTokenizer example_tokenizer_;  // refers to *tokenizer_
  const std::vector<int32_t> default_stop_token_ids_;
  const int64_t max_batch_rows_;
  const bool continuous_batching_;

  mutable absl::Mutex mu_;
  CausalLM model_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, std::unique_ptr<PeftModel>> adapters_ ABSL_GUARDED_BY(mu_);  // detached while idle
  uint64_t weight_version_ ABSL_GUARDED_BY(mu_);
};

}  // namespace alignd::rollout

#endif  // ALIGND_ROLLOUT_ENGINE_H_
