// Turns dataset records into token ids with loss masks, through a chat template.
//
// Rendering: a string prompt is the content of one user turn and a string completion/chosen/rejected the content of
// the assistant turn (use the "raw" template for TRL's standard format, where strings are concatenated as they are).
// The conversation is rendered with ChatTemplate::RenderSegments and each segment is tokenized on its own, without
// special tokens (the template writes BOS where it wants one), then concatenated: the mask is exact, and the prompt
// part is token for token what Encode(RenderPrompt(prompt)) gives at generation time.
//
// Masks: text trains every token except a leading BOS; messages trains every assistant turn's content and its
// end-of-turn marker; prompt_completion and preference train the response's assistant turns only.
//
// Truncation to max_length (0 = none):
//  - text and messages keep their start and cut the end;
//  - a prompt with a response keeps the prompt's END and the response's START: the prompt keeps
//    min(prompt length, max(max_prompt_length, max_length - response length)) tokens, and never all of max_length,
//    the response gets the rest. Chosen and rejected share one prompt cut (computed with the longer response).
// An example left with no trained token is an error (INVALID_ARGUMENT); TokenizeDataset skips and counts those.
#ifndef ALIGND_COMMON_DATA_EXAMPLE_TOKENIZER_H_
#define ALIGND_COMMON_DATA_EXAMPLE_TOKENIZER_H_

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "common/data/dataset.h"
#include "common/text/chat_template.h"
#include "common/text/tokenizer.h"

namespace alignd {

// loss_mask[t] == 1 means token t is a training target, i.e. predicted from position t - 1.
struct TokenizedExample {
  std::vector<int32_t> input_ids;
  std::vector<uint8_t> loss_mask;
};

// Both sequences start with the same prompt_length prompt tokens.
struct TokenizedPair {
  TokenizedExample chosen, rejected;
  int32_t prompt_length = 0;
  std::string kind;      // the record's string field "kind", if it has one: evaluation reports accuracy per kind
  std::string contrast;  // the record's "contrast" (what makes `rejected` worse), if any: and per contrast
};

struct TokenizeOptions {
  std::string chat_template = "chatml";  // see ChatTemplate::KnownNames()
  int32_t max_length = 1024;             // tokens per sequence; 0 = no limit, else >= 2
  int32_t max_prompt_length = 0;         // the prompt share kept when cutting is needed; 0 = max_length / 2
  bool add_special_tokens = true;        // text: BOS first, as Tokenizer::Encode adds it
  bool append_eos = true;                // text: EOS last (the document separator when packing)
};

// The result of tokenizing a whole dataset. One of examples/pairs/prompts is filled, by schema:
// text, messages, prompt_completion -> examples; preference -> pairs; prompt -> prompts.
struct TokenizedDataset {
  std::vector<TokenizedExample> examples;
  std::vector<TokenizedPair> pairs;
  std::vector<std::vector<int32_t>> prompts;
  std::vector<size_t> record_index;  // the Dataset record each entry came from
  int64_t truncated = 0;             // entries cut to max_length
  int64_t skipped = 0;               // records without any trained token, left out
  std::string first_skip_reason;     // e.g. "data.jsonl:4: no trained tokens: no assistant turn"
};

class ExampleTokenizer {
 public:
  // `tokenizer` must outlive the result. INVALID_ARGUMENT for an unknown template or max_length of 1 or < 0.
  static absl::StatusOr<ExampleTokenizer> Create(const Tokenizer* tokenizer, TokenizeOptions options);

  // The template named by options().chat_template, and the options as given to Create.
  const ChatTemplate& chat_template() const { return template_; }
  const TokenizeOptions& options() const { return options_; }

  // Each sets *truncated (when given) to whether max_length cut the result. INVALID_ARGUMENT when nothing is trained.
  absl::StatusOr<TokenizedExample> Text(absl::string_view text, bool* truncated = nullptr) const;
  absl::StatusOr<TokenizedExample> Messages(const std::vector<ChatMessage>& messages, bool* truncated = nullptr) const;
  absl::StatusOr<TokenizedExample> PromptCompletion(const Turns& prompt, const Turns& completion,
                                                    bool* truncated = nullptr) const;
  absl::StatusOr<TokenizedPair> Preference(const Turns& prompt, const Turns& chosen, const Turns& rejected,
                                           bool* truncated = nullptr) const;
  // Ids of RenderPrompt(prompt) for generation, keeping the last max_prompt_length tokens (max_length / 2 when that
  // is 0; no cut when both are 0).
  std::vector<int32_t> Prompt(const Turns& prompt, bool* truncated = nullptr) const;

  // Every record of `dataset`. INVALID_ARGUMENT when every record is skipped (with the first reason).
  absl::StatusOr<TokenizedDataset> Tokenize(const Dataset& dataset) const;

 private:
  ExampleTokenizer(const Tokenizer* tokenizer, TokenizeOptions options, ChatTemplate chat_template)
      : tokenizer_(tokenizer), options_(std::move(options)), template_(std::move(chat_template)) {}

  TokenizedExample EncodeSegments(const std::vector<ChatSegment>& segments) const;
  int32_t PromptBudget() const;

  const Tokenizer* tokenizer_;
  TokenizeOptions options_;
  ChatTemplate template_;
};

}  // namespace alignd

#endif  // ALIGND_COMMON_DATA_EXAMPLE_TOKENIZER_H_
