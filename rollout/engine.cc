#include "rollout/engine.h"

#include <torch/nn.h>

#include <algorithm>
#include <numeric>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/base/status.h"
#include "common/model/device.h"
#include "common/model/peft.h"
#include "rollout/decode.h"

namespace alignd::rollout {
namespace {

absl::Status CheckModel(const CausalLM& model) {
  if (model.is_empty()) return absl::InvalidArgumentError("model is null");
  if (model->config().head != HeadKind::kLanguageModel) {
    return absl::FailedPreconditionError(
        absl::StrCat("generation needs a language-model head; ", model->config().architecture, " has a score head"));
  }
  return absl::OkStatus();
}

absl::Status CheckTokenIds(const std::vector<int32_t>& ids, int64_t vocab_size, absl::string_view field) {
  for (size_t i = 0; i < ids.size(); ++i) {
    if (ids[i] < 0 || ids[i] >= vocab_size) {
      return absl::InvalidArgumentError(absl::StrCat(field, "[", i, "]: token id ", ids[i],
                                                     " is outside the model's vocabulary [0, ", vocab_size, ")"));
    }
  }
  return absl::OkStatus();
}

// EOS, then the template's end-of-turn string when it is one token (e.g. ChatML's <|im_end|>), without duplicates.
std::vector<int32_t> DefaultStops(const Tokenizer& tokenizer, const ChatTemplate& chat_template) {
  std::vector<int32_t> stops;
  if (tokenizer.eos_id()) stops.push_back(*tokenizer.eos_id());
  std::string end_of_turn = chat_template.end_of_turn();
  if (!end_of_turn.empty()) {
    std::vector<int32_t> ids = tokenizer.Encode(end_of_turn, /*add_special_tokens=*/false);
    if (ids.size() == 1 && std::find(stops.begin(), stops.end(), ids[0]) == stops.end()) stops.push_back(ids[0]);
  }
  return stops;
}

}  // namespace

absl::string_view FinishReasonName(FinishReason reason) { return reason == FinishReason::kStop ? "stop" : "length"; }

Engine::Engine(CausalLM model, std::shared_ptr<const Tokenizer> tokenizer, ExampleTokenizer example_tokenizer,
               std::vector<int32_t> default_stop_token_ids, uint64_t weight_version, int64_t max_batch_rows,
               bool continuous_batching)
    : tokenizer_(std::move(tokenizer)),
      example_tokenizer_(std::move(example_tokenizer)),
      default_stop_token_ids_(std::move(default_stop_token_ids)),
      max_batch_rows_(max_batch_rows),
      continuous_batching_(continuous_batching),
      model_(std::move(model)),
      weight_version_(weight_version) {}

absl::StatusOr<std::unique_ptr<Engine>> Engine::Create(Options options) {
  RETURN_IF_ERROR(CheckModel(options.model));
  if (options.tokenizer == nullptr) return absl::InvalidArgumentError("tokenizer is null");
  if (options.max_batch_rows < 1) {
    return absl::InvalidArgumentError(absl::StrCat("max_batch_rows must be >= 1, got ", options.max_batch_rows));
  }
  TokenizeOptions tokenize;
  tokenize.chat_template = options.chat_template;
  tokenize.max_length = 0;  // no truncation: a prompt that does not fit is the caller's error
  ASSIGN_OR_RETURN(ExampleTokenizer example_tokenizer,
                   ExampleTokenizer::Create(options.tokenizer.get(), std::move(tokenize)));
  std::vector<int32_t> stops =
      options.default_stop_token_ids.value_or(DefaultStops(*options.tokenizer, example_tokenizer.chat_template()));
  RETURN_IF_ERROR(CheckTokenIds(stops, options.model->config().vocab_size, "default_stop_token_ids"));
  return std::unique_ptr<Engine>(new Engine(std::move(options.model), std::move(options.tokenizer),
                                            std::move(example_tokenizer), std::move(stops), options.weight_version,
                                            options.max_batch_rows, options.continuous_batching));
}

std::vector<int32_t> Engine::EncodePrompt(const Turns& prompt) const { return example_tokenizer_.Prompt(prompt); }

absl::Status Engine::ValidateRequest(const std::vector<std::vector<int32_t>>& prompts, const SamplingParams& params,
                                     const std::vector<int32_t>& stop_ids) const {
  RETURN_IF_ERROR(ValidateSamplingParams(params));
  if (prompts.empty()) return absl::InvalidArgumentError("prompts: no prompts");
  const auto& per_prompt = params.max_new_tokens_per_prompt;
  if (!per_prompt.empty() && per_prompt.size() != prompts.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_new_tokens_per_prompt: ", per_prompt.size(), " values for ", prompts.size(), " prompts"));
  }
  const ModelConfig& config = model_->config();
  RETURN_IF_ERROR(CheckTokenIds(stop_ids, config.vocab_size, "stop_token_ids"));
  for (size_t i = 0; i < prompts.size(); ++i) {
    const std::string field = absl::StrCat("prompts[", i, "]");
    if (prompts[i].empty()) return absl::InvalidArgumentError(absl::StrCat(field, ": empty prompt"));
    RETURN_IF_ERROR(CheckTokenIds(prompts[i], config.vocab_size, field));
    const int64_t new_tokens = per_prompt.empty() ? params.max_new_tokens : per_prompt[i];
    const int64_t needed = static_cast<int64_t>(prompts[i].size()) + new_tokens;
    if (needed > config.max_position_embeddings) {
      return absl::InvalidArgumentError(absl::StrCat(field, ": ", prompts[i].size(), " prompt tokens + max_new_tokens ",
                                                     new_tokens, " exceed the model context of ",
                                                     config.max_position_embeddings, " tokens"));
    }
  }
  return absl::OkStatus();
}

Engine::~Engine() = default;

absl::Status Engine::LoadAdapter(const std::string& name, const std::string& dir) {
  if (name.empty()) return absl::InvalidArgumentError("adapter name is empty");
  absl::MutexLock lock(&mu_);
  if (adapters_.count(name))
    return absl::InvalidArgumentError(absl::StrCat("adapter \"", name, "\" is loaded already"));
  ASSIGN_OR_RETURN(std::unique_ptr<PeftModel> peft, PeftModel::Load(dir, model_));
  peft->module().eval();
  peft->SetEnabled(false);  // detached until a request names it
  adapters_.emplace(name, std::move(peft));
  return absl::OkStatus();
}

std::vector<std::string> Engine::adapter_names() const {
  absl::MutexLock lock(&mu_);
  std::vector<std::string> names;
  for (const auto& [name, peft] : adapters_) names.push_back(name);
  return names;
}

absl::StatusOr<std::vector<Sample>> Engine::Generate(const std::vector<std::vector<int32_t>>& prompts,
                                                     const SamplingParams& params, GenerateStats* stats,
                                                     const std::string& adapter) {
  absl::MutexLock lock(&mu_);
  PeftModel* peft = nullptr;
  if (!adapter.empty()) {
    auto it = adapters_.find(adapter);
    if (it == adapters_.end()) {
      std::vector<std::string> names;
      for (const auto& [name, p] : adapters_) names.push_back(name);
      return absl::NotFoundError(absl::StrCat("adapter \"", adapter, "\" is not loaded (loaded: ",
                                              names.empty() ? "none" : absl::StrJoin(names, ", "), ")"));
    }
    peft = it->second.get();
    peft->SetEnabled(true);
  }
  // The adapter is switched off again however this call ends.
  struct Off {
    PeftModel* peft;
    ~Off() {
      if (peft) peft->SetEnabled(false);
    }
  } off{peft};
  DecodeRequest request;
  request.prompts = &prompts;
  request.params = &params;
  request.stop_token_ids = params.stop_token_ids.value_or(default_stop_token_ids_);
  RETURN_IF_ERROR(ValidateRequest(prompts, params, request.stop_token_ids));
  const int64_t vocab = model_->config().vocab_size;
  const int64_t pad = tokenizer_->pad_id().value_or(0);
  request.pad_id = pad >= 0 && pad < vocab ? pad : 0;

  // Rows join the batch in order of prompt length, so that a prefill group holds prompts of similar length (little
  // padding). Which rows share a batch does not change a row's result (its seed is its own; padding is masked).
  std::vector<int64_t> order(prompts.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](int64_t a, int64_t b) { return prompts[a].size() < prompts[b].size(); });
  request.rows.reserve(prompts.size() * static_cast<size_t>(params.n));
  for (int64_t p : order) {
    for (int64_t j = 0; j < params.n; ++j) request.rows.push_back({p, j});
  }
  request.max_batch_rows = max_batch_rows_;
  request.continuous = continuous_batching_;

  GenerateStats local_stats;
  std::vector<Sample> samples(request.rows.size());
  try {
    for (Sample& s : DecodeRows(*model_, *tokenizer_, request, local_stats)) {
      s.weight_version = weight_version_;
      size_t at = static_cast<size_t>(s.prompt_index * params.n + s.sample_index);
      samples[at] = std::move(s);
    }
  } catch (const c10::Error& e) {
    return TorchErrorStatus(e, "generation");
  }
  if (stats != nullptr) *stats = local_stats;
  return samples;
}

absl::StatusOr<std::vector<Sample>> Engine::GenerateText(const std::vector<std::string>& prompts,
                                                         const SamplingParams& params, GenerateStats* stats,
                                                         const std::string& adapter) {
  std::vector<std::vector<int32_t>> ids;
  ids.reserve(prompts.size());
  for (const std::string& prompt : prompts) ids.push_back(EncodePrompt(prompt));
  return Generate(ids, params, stats, adapter);
}

absl::Status Engine::SetModel(CausalLM model, uint64_t version) {
  RETURN_IF_ERROR(CheckModel(model));
  RETURN_IF_ERROR(CheckTokenIds(default_stop_token_ids_, model->config().vocab_size, "default_stop_token_ids"));
  absl::MutexLock lock(&mu_);
  if (!adapters_.empty()) {
    return absl::FailedPreconditionError("SetModel: adapters are loaded on the current model");
  }
  model_ = std::move(model);
  weight_version_ = version;
  return absl::OkStatus();
}

absl::Status Engine::UpdateWeights(uint64_t version, const std::function<absl::Status(CausalLMImpl&)>& update) {
  absl::MutexLock lock(&mu_);
  absl::Status status;
  try {
    status = update(*model_);
  } catch (const c10::Error& e) {
    status = absl::InternalError(absl::StrCat("weight update failed: ", e.what_without_backtrace()));
  }
  if (status.ok()) weight_version_ = version;
  return status;
}

uint64_t Engine::weight_version() const {
  absl::MutexLock lock(&mu_);
  return weight_version_;
}

}  // namespace alignd::rollout
