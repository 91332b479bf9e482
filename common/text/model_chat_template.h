// The chat template a Hugging Face model folder declares, and which of alignd's templates (common/text/chat_template.h)
// renders it.
//
// Hugging Face keeps a tokenizer's chat template, as Jinja text, in `chat_template.jinja` (newer transformers) or
// under "chat_template" in tokenizer_config.json: a string, or a list of {"name", "template"} objects of which the
// one named "default" applies. alignd renders its four templates in C++ rather than running Jinja, so a folder's
// template is used by recognising it.
#ifndef ALIGND_COMMON_TEXT_MODEL_CHAT_TEMPLATE_H_
#define ALIGND_COMMON_TEXT_MODEL_CHAT_TEMPLATE_H_

#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace alignd {

// The Jinja text of the chat template the folder `dir` declares; nullopt when it declares none (no
// chat_template.jinja, and no tokenizer_config.json or no "chat_template" in it, or a list without "default").
// INVALID_ARGUMENT naming the file when tokenizer_config.json is not a JSON object or its "chat_template" is neither a
// string nor a list of {"name", "template"}; the status of the read when a file exists but cannot be read.
absl::StatusOr<std::optional<std::string>> ReadModelChatTemplate(const std::string& dir);

// Sets "chat_template" in `dir`/tokenizer_config.json to `jinja` (creating the file as `{}` when it is missing),
// keeping every other key, so Hugging Face's apply_chat_template renders what the model was trained on. Errors as
// ReadModelChatTemplate's, and those of writing the file.
absl::Status WriteModelChatTemplate(const std::string& dir, absl::string_view jinja);

struct ChatTemplateMatch {
  std::string name;    // one of ChatTemplate::KnownNames()
  bool exact = false;  // the text is that template's Jinja; false: only its turn markers are that template's
};

// Which of alignd's templates renders `jinja`: the one whose Jinja text it is (ignoring surrounding whitespace), else
// the one whose turn markers it uses ("<|im_start|>": chatml, "<|start_header_id|>": llama3) with exact = false.
// nullopt when neither.
std::optional<ChatTemplateMatch> MatchChatTemplate(absl::string_view jinja);

}  // namespace alignd

#endif  // ALIGND_COMMON_TEXT_MODEL_CHAT_TEMPLATE_H_
