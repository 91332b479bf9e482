#include "common/text/chat_template.h"

#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace alignd {

// The ChatML template as Hugging Face model repositories ship it (no default system message).
const char kChatMlJinja[] =
    R"({% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %})";

// Meta-Llama-3-Instruct's template, verbatim.
const char kLlama3Jinja[] =
    R"({% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %})";

const char kPlainJinja[] =
    R"({{ bos_token }}{% for message in messages %}{% if message['role'] == 'system' %}{{ 'System: ' + message['content'] + '\n' }}{% elif message['role'] == 'user' %}{{ 'User: ' + message['content'] + '\n' }}{% elif message['role'] == 'assistant' %}{{ 'Assistant: ' + message['content'] + eos_token + '\n' }}{% endif %}{% endfor %}{% if add_generation_prompt %}{{ 'Assistant: ' }}{% endif %})";

const char kRawJinja[] =
    R"({{ bos_token }}{% for message in messages %}{{ message['content'] }}{% if message['role'] == 'assistant' %}{{ eos_token }}{% endif %}{% endfor %})";

absl::StatusOr<ChatTemplate> ChatTemplate::Create(absl::string_view name, Options options) {
  Kind kind;
  if (name == "chatml") {
    kind = Kind::kChatMl;
  } else if (name == "llama3") {
    kind = Kind::kLlama3;
  } else if (name == "plain") {
    kind = Kind::kPlain;
  } else if (name == "raw") {
    kind = Kind::kRaw;
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown chat template \"", name, "\"; known templates: ", absl::StrJoin(KnownNames(), ", ")));
  }
  return ChatTemplate(kind, std::string(name), std::move(options));
}

absl::StatusOr<ChatTemplate> ChatTemplate::ForTokenizer(absl::string_view name, const Tokenizer& tokenizer) {
  Options options;
  options.bos_token.clear();
  options.eos_token.clear();
  if (tokenizer.bos_id()) options.bos_token = tokenizer.IdToToken(*tokenizer.bos_id()).value_or("");
  if (tokenizer.eos_id()) options.eos_token = tokenizer.IdToToken(*tokenizer.eos_id()).value_or("");
  return Create(name, std::move(options));
}

std::vector<std::string> ChatTemplate::KnownNames() { return {"chatml", "llama3", "plain", "raw"}; }

absl::string_view ChatTemplate::jinja() const {
  switch (kind_) {
    case Kind::kChatMl:
      return kChatMlJinja;
    case Kind::kLlama3:
      return kLlama3Jinja;
    case Kind::kPlain:
      return kPlainJinja;
    case Kind::kRaw:
      return kRawJinja;
  }
  return "";
}

std::string ChatTemplate::end_of_turn() const { return Stop("assistant"); }

// Llama-3 adds bos_token before the first message only, so an empty conversation has none; plain and raw start with
// it unconditionally, as their Jinja does.
std::string ChatTemplate::Begin() const {
  switch (kind_) {
    case Kind::kChatMl:
      return "";
    case Kind::kLlama3:
    case Kind::kPlain:
    case Kind::kRaw:
      return options_.bos_token;
  }
  return "";
}

std::string ChatTemplate::Head(absl::string_view role) const {
  switch (kind_) {
    case Kind::kChatMl:
      return absl::StrCat("<|im_start|>", role, "\n");
    case Kind::kLlama3:
      return absl::StrCat("<|start_header_id|>", role, "<|end_header_id|>\n\n");
    case Kind::kPlain:
      if (role == "system") return "System: ";
      if (role == "user") return "User: ";
      if (role == "assistant") return "Assistant: ";
      return "";
    case Kind::kRaw:
      return "";
  }
  return "";
}

// Jinja's `trim` is Python's str.strip(); ASCII whitespace is what alignd's data contains.
std::string ChatTemplate::Content(absl::string_view content) const {
  if (kind_ == Kind::kLlama3) return std::string(absl::StripAsciiWhitespace(content));
  return std::string(content);
}

std::string ChatTemplate::Stop(absl::string_view role) const {
  switch (kind_) {
    case Kind::kChatMl:
      return "<|im_end|>";
    case Kind::kLlama3:
      return "<|eot_id|>";
    case Kind::kPlain:
    case Kind::kRaw:
      return role == "assistant" ? options_.eos_token : "";
  }
  return "";
}

std::string ChatTemplate::After(absl::string_view role) const {
  switch (kind_) {
    case Kind::kChatMl:
    case Kind::kPlain:
      return "\n";
    case Kind::kLlama3:
    case Kind::kRaw:
      return "";
  }
  return "";
}

std::vector<ChatSegment> ChatTemplate::RenderSegments(const std::vector<ChatMessage>& messages, size_t train_from,
                                                      bool add_generation_prompt) const {
  std::vector<ChatSegment> segments;
  auto append = [&segments](std::string text, bool trained) {
    if (text.empty()) return;
    if (!segments.empty() && segments.back().trained == trained) {
      segments.back().text += text;
    } else {
      segments.push_back({std::move(text), trained});
    }
  };
  if (!messages.empty() || kind_ != Kind::kLlama3) append(Begin(), false);
  for (size_t i = 0; i < messages.size(); ++i) {
    const ChatMessage& m = messages[i];
    bool trained = m.role == "assistant" && i >= train_from;
    append(Head(m.role), false);
    append(absl::StrCat(Content(m.content), Stop(m.role)), trained);
    append(After(m.role), false);
  }
  if (add_generation_prompt) append(Head("assistant"), false);
  return segments;
}

std::string ChatTemplate::Render(const std::vector<ChatMessage>& messages, bool add_generation_prompt) const {
  std::string out;
  for (const ChatSegment& s : RenderSegments(messages, messages.size(), add_generation_prompt)) out += s.text;
  return out;
}

std::string ChatTemplate::RenderPrompt(const std::vector<ChatMessage>& messages) const {
  return Render(messages, /*add_generation_prompt=*/true);
}

std::string ChatTemplate::RenderCompletion(absl::string_view content) const {
  return absl::StrCat(Content(content), end_of_turn());
}

std::string ChatTemplate::CompletionTrailer() const { return After("assistant"); }

}  // namespace alignd
