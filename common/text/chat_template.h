// Named chat templates, rendered in C++ exactly as their Jinja text (kChatMlJinja, ...) renders in Hugging Face's
// apply_chat_template, so that a model trained here and served elsewhere sees the same strings.
//
// Templates: "chatml", "llama3", "plain" (for base models: `User: ...` / `Assistant: ...`) and "raw" (TRL's
// standard format: message contents concatenated, no role markers).
//
// Each message renders as  head(role) + content + stop(role) + after(role).  Training and generation share that
// decomposition: the trained part of an assistant turn is  content + stop  (the end-of-turn marker, so the model learns
// to stop), the generation prompt is head("assistant"), and RenderPrompt(m) + RenderCompletion(c) + CompletionTrailer()
// == Render(m + {assistant, c}) for every template.
// ChatTemplate objects are immutable and safe to share between threads.
#ifndef ALIGND_COMMON_TEXT_CHAT_TEMPLATE_H_
#define ALIGND_COMMON_TEXT_CHAT_TEMPLATE_H_

#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/text/tokenizer.h"

namespace alignd {

struct ChatMessage {
  std::string role;  // "system", "user" or "assistant"
  std::string content;

  bool operator==(const ChatMessage& o) const { return role == o.role && content == o.content; }
};

// One piece of a rendered conversation; `trained` marks assistant content and its end-of-turn marker.
struct ChatSegment {
  std::string text;
  bool trained = false;
};

// The Jinja source of each template, for tokenizer_config.json's `chat_template`. They refer to `bos_token` and
// `eos_token`, which Hugging Face fills in from tokenizer_config.json.
extern const char kChatMlJinja[];
extern const char kLlama3Jinja[];
extern const char kPlainJinja[];
extern const char kRawJinja[];

class ChatTemplate {
 public:
  // Strings substituted for the Jinja variables bos_token / eos_token. Defaults are the byte tokenizer's.
  struct Options {
    std::string bos_token = std::string(kByteBos);
    std::string eos_token = std::string(kByteEos);
  };

  // INVALID_ARGUMENT for an unknown name; the message lists the known ones.
  static absl::StatusOr<ChatTemplate> Create(absl::string_view name, Options options);
  static absl::StatusOr<ChatTemplate> Create(absl::string_view name) { return Create(name, Options()); }
  // Takes bos/eos token strings from `tokenizer` (empty when it has none); `tokenizer` is read only during the call.
  // INVALID_ARGUMENT for an unknown name.
  static absl::StatusOr<ChatTemplate> ForTokenizer(absl::string_view name, const Tokenizer& tokenizer);

  static std::vector<std::string> KnownNames();  // {"chatml", "llama3", "plain", "raw"}

  // The name it was created with, one of KnownNames().
  const std::string& name() const { return name_; }
  // Jinja text equivalent to this template.
  absl::string_view jinja() const;
  // The string that ends an assistant turn (and should stop generation): "<|im_end|>", "<|eot_id|>", or eos_token.
  std::string end_of_turn() const;

  // The whole conversation, as apply_chat_template(messages, add_generation_prompt) renders it.
  std::string Render(const std::vector<ChatMessage>& messages, bool add_generation_prompt) const;
  // Render(messages, /*add_generation_prompt=*/true): the text a model continues to answer.
  std::string RenderPrompt(const std::vector<ChatMessage>& messages) const;
  // The trained part of an assistant turn with this content: content (trimmed for llama3) + end_of_turn().
  std::string RenderCompletion(absl::string_view content) const;
  // What follows RenderCompletion in a full rendering ("\n" for chatml and plain, "" otherwise); never trained.
  std::string CompletionTrailer() const;

  // Render(messages, add_generation_prompt) cut into segments whose concatenation is that string. Assistant messages
  // at index >= `train_from` have their content+stop in a segment with trained = true; everything else is untrained.
  std::vector<ChatSegment> RenderSegments(const std::vector<ChatMessage>& messages, size_t train_from,
                                          bool add_generation_prompt) const;

 private:
  enum class Kind { kChatMl, kLlama3, kPlain, kRaw };
  ChatTemplate(Kind kind, std::string name, Options options)
      : kind_(kind), name_(std::move(name)), options_(std::move(options)) {}

  std::string Begin() const;
  std::string Head(absl::string_view role) const;
  std::string Content(absl::string_view content) const;
  std::string Stop(absl::string_view role) const;
  std::string After(absl::string_view role) const;

  Kind kind_;
  std::string name_;
  Options options_;
};

}  // namespace alignd

#endif  // ALIGND_COMMON_TEXT_CHAT_TEMPLATE_H_
