#include "common/data/example_tokenizer.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/base/status.h"

namespace alignd {
namespace {

int32_t CountTrained(const TokenizedExample& ex) {
  return static_cast<int32_t>(std::count(ex.loss_mask.begin(), ex.loss_mask.end(), 1));
}

int32_t FirstTrained(const TokenizedExample& ex) {
  auto it = std::find(ex.loss_mask.begin(), ex.loss_mask.end(), 1);
  return static_cast<int32_t>(it - ex.loss_mask.begin());
}

// Tokens [prompt_length - prompt_keep, prompt_length + response_keep) of `ex`.
TokenizedExample Slice(const TokenizedExample& ex, int32_t prompt_length, int32_t prompt_keep, int32_t response_keep) {
  int32_t begin = prompt_length - prompt_keep;
  int32_t end = std::min<int32_t>(prompt_length + response_keep, static_cast<int32_t>(ex.input_ids.size()));
  TokenizedExample out;
  out.input_ids.assign(ex.input_ids.begin() + begin, ex.input_ids.begin() + end);
  out.loss_mask.assign(ex.loss_mask.begin() + begin, ex.loss_mask.begin() + end);
  return out;
}

absl::Status NothingTrained(bool before_cut, int32_t max_length) {
  if (before_cut) return absl::InvalidArgumentError("no trained tokens: no assistant turn");
  return absl::InvalidArgumentError(absl::StrCat("no trained tokens within max_length ", max_length));
}

}  // namespace

absl::StatusOr<ExampleTokenizer> ExampleTokenizer::Create(const Tokenizer* tokenizer, TokenizeOptions options) {
  if (tokenizer == nullptr) return absl::InvalidArgumentError("tokenizer is null");
  if (options.max_length < 0 || options.max_length == 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_length must be 0 (no limit) or >= 2, got ", options.max_length));
  }
  if (options.max_prompt_length < 0) {
    return absl::InvalidArgumentError(absl::StrCat("max_prompt_length must be >= 0, got ", options.max_prompt_length));
  }
  ASSIGN_OR_RETURN(ChatTemplate chat_template, ChatTemplate::ForTokenizer(options.chat_template, *tokenizer));
  return ExampleTokenizer(tokenizer, std::move(options), std::move(chat_template));
}

int32_t ExampleTokenizer::PromptBudget() const {
  return options_.max_prompt_length > 0 ? options_.max_prompt_length : options_.max_length / 2;
}

TokenizedExample ExampleTokenizer::EncodeSegments(const std::vector<ChatSegment>& segments) const {
  TokenizedExample ex;
  for (const ChatSegment& segment : segments) {
    std::vector<int32_t> ids = tokenizer_->Encode(segment.text, /*add_special_tokens=*/false);
    ex.input_ids.insert(ex.input_ids.end(), ids.begin(), ids.end());
    ex.loss_mask.insert(ex.loss_mask.end(), ids.size(), segment.trained ? 1 : 0);
  }
  return ex;
}

absl::StatusOr<TokenizedExample> ExampleTokenizer::Text(absl::string_view text, bool* truncated) const {
  TokenizedExample ex;
  ex.input_ids = tokenizer_->Encode(text, options_.add_special_tokens);
  if (options_.append_eos && tokenizer_->eos_id()) ex.input_ids.push_back(*tokenizer_->eos_id());
  ex.loss_mask.assign(ex.input_ids.size(), 1);
  // A leading BOS is context, never a target.
  if (options_.add_special_tokens && !ex.input_ids.empty() && ex.input_ids[0] == tokenizer_->bos_id()) {
    ex.loss_mask[0] = 0;
  }
  bool cut = options_.max_length > 0 && ex.input_ids.size() > static_cast<size_t>(options_.max_length);
  if (cut) ex = Slice(ex, 0, 0, options_.max_length);
  if (truncated != nullptr) *truncated = cut;
  if (CountTrained(ex) == 0) return absl::InvalidArgumentError("no trained tokens: empty text");
  return ex;
}

absl::StatusOr<TokenizedExample> ExampleTokenizer::Messages(const std::vector<ChatMessage>& messages,
                                                            bool* truncated) const {
  TokenizedExample ex = EncodeSegments(template_.RenderSegments(messages, 0, /*add_generation_prompt=*/false));
  bool any_trained = CountTrained(ex) > 0;
  bool cut = options_.max_length > 0 && ex.input_ids.size() > static_cast<size_t>(options_.max_length);
  if (cut) ex = Slice(ex, 0, 0, options_.max_length);
  if (truncated != nullptr) *truncated = cut;
  if (CountTrained(ex) == 0) return NothingTrained(!any_trained, options_.max_length);
  return ex;
}

absl::StatusOr<TokenizedExample> ExampleTokenizer::PromptCompletion(const Turns& prompt, const Turns& completion,
                                                                    bool* truncated) const {
  ASSIGN_OR_RETURN(TokenizedPair pair, Preference(prompt, completion, completion, truncated));
  return std::move(pair.chosen);
}

absl::StatusOr<TokenizedPair> ExampleTokenizer::Preference(const Turns& prompt, const Turns& chosen,
                                                           const Turns& rejected, bool* truncated) const {
  std::vector<ChatMessage> messages = prompt.AsMessages("user");
  size_t train_from = messages.size();
  auto encode = [&](const Turns& response) {
    std::vector<ChatMessage> all = messages;
    std::vector<ChatMessage> tail = response.AsMessages("assistant");
    all.insert(all.end(), tail.begin(), tail.end());
    return EncodeSegments(template_.RenderSegments(all, train_from, /*add_generation_prompt=*/false));
  };
  TokenizedExample c = encode(chosen);
  TokenizedExample r = encode(rejected);
  if (CountTrained(c) == 0 || CountTrained(r) == 0) return NothingTrained(true, options_.max_length);
  int32_t prompt_length = FirstTrained(c);
  if (FirstTrained(r) != prompt_length ||
      !std::equal(c.input_ids.begin(), c.input_ids.begin() + prompt_length, r.input_ids.begin())) {
    return absl::InvalidArgumentError("chosen and rejected do not continue the prompt with the same tokens");
  }
  int32_t response_length = static_cast<int32_t>(std::max(c.input_ids.size(), r.input_ids.size())) - prompt_length;
  int32_t max_length = options_.max_length;
  bool cut = max_length > 0 && prompt_length + response_length > max_length;
  if (truncated != nullptr) *truncated = cut;
  TokenizedPair pair;
  pair.prompt_length = prompt_length;
  if (!cut) {
    pair.chosen = std::move(c);
    pair.rejected = std::move(r);
    return pair;
  }
  int32_t prompt_keep =
      std::min({prompt_length, std::max(PromptBudget(), max_length - response_length), max_length - 1});
  pair.chosen = Slice(c, prompt_length, prompt_keep, max_length - prompt_keep);
  pair.rejected = Slice(r, prompt_length, prompt_keep, max_length - prompt_keep);
  pair.prompt_length = prompt_keep;
  return pair;
}

std::vector<int32_t> ExampleTokenizer::Prompt(const Turns& prompt, bool* truncated) const {
  std::vector<int32_t> ids = tokenizer_->Encode(template_.RenderPrompt(prompt.AsMessages("user")), false);
  int32_t budget = PromptBudget();
  bool cut = budget > 0 && ids.size() > static_cast<size_t>(budget);
  if (cut) ids.erase(ids.begin(), ids.end() - budget);
  if (truncated != nullptr) *truncated = cut;
  return ids;
}

absl::StatusOr<TokenizedDataset> ExampleTokenizer::Tokenize(const Dataset& dataset) const {
  TokenizedDataset out;
  for (size_t i = 0; i < dataset.records.size(); ++i) {
    const Record& record = dataset.records[i];
    bool truncated = false;
    absl::Status status;
    switch (dataset.schema) {
      case DatasetSchema::kPrompt:
        out.prompts.push_back(Prompt(record.prompt, &truncated));
        break;
      case DatasetSchema::kPreference: {
        absl::StatusOr<TokenizedPair> pair = Preference(record.prompt, record.chosen, record.rejected, &truncated);
        status = pair.status();
        if (pair.ok()) {
          pair->kind = record.ExtraString("kind").value_or("");
          pair->contrast = record.ExtraString("contrast").value_or("");
          out.pairs.push_back(std::move(*pair));
        }
        break;
      }
      default: {
        absl::StatusOr<TokenizedExample> ex = dataset.schema == DatasetSchema::kText ? Text(record.text, &truncated)
                                              : dataset.schema == DatasetSchema::kMessages
                                                  ? Messages(record.messages, &truncated)
                                                  : PromptCompletion(record.prompt, record.completion, &truncated);
        status = ex.status();
        if (ex.ok()) out.examples.push_back(std::move(*ex));
        break;
      }
    }
    if (!status.ok()) {
      if (out.skipped++ == 0) {
        out.first_skip_reason = absl::StrCat(dataset.source, ":", record.line, ": ", status.message());
      }
      continue;
    }
    out.record_index.push_back(i);
    if (truncated) ++out.truncated;
  }
  if (out.record_index.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(dataset.source, ": all ", dataset.records.size(),
                                                   " records were skipped; the first: ", out.first_skip_reason));
  }
  return out;
}

}  // namespace alignd
