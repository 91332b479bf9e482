// JSONL datasets in the layouts TRL-style tools use, one JSON object per line:
//   text               {"text": "..."}
//   messages           {"messages": [{"role": "user", "content": "..."}, ...]}
//   prompt             {"prompt": ...}                                  (prompt-only, for PPO rollouts and evaluation)
//   prompt_completion  {"prompt": ..., "completion": ...}
//   preference         {"prompt": ..., "chosen": ..., "rejected": ...}
// prompt / completion / chosen / rejected are each either a string (TRL's "standard" form) or a list of messages
// ("conversational" form); a conversational completion/chosen/rejected starts with an assistant message.
// Roles are system, user or assistant. Any other keys of a record (e.g. `kind`, `reference`) are kept in `extra`.
//
// Errors are INVALID_ARGUMENT (NOT_FOUND when the file is missing) and name the file, the 1-based line and the key:
//   data/train.jsonl:17: missing key "chosen"
//   data/train.jsonl:5: key "messages"[2].role must be one of system/user/assistant, got "bot"
// Blank lines are skipped (line numbers still count them).
#ifndef ALIGND_COMMON_DATA_DATASET_H_
#define ALIGND_COMMON_DATA_DATASET_H_

#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/text/chat_template.h"
#include "nlohmann/json.hpp"

namespace alignd {

enum class DatasetSchema { kText, kMessages, kPrompt, kPromptCompletion, kPreference };

// "text", "messages", "prompt", "prompt_completion", "preference".
absl::string_view SchemaName(DatasetSchema schema);
// Inverse of SchemaName; INVALID_ARGUMENT listing the known names.
absl::StatusOr<DatasetSchema> ParseSchemaName(absl::string_view name);

// A prompt or response in either form. `conversational` selects which member holds it.
struct Turns {
  bool conversational = false;
  std::string text;                   // standard form
  std::vector<ChatMessage> messages;  // conversational form

  // A standard (string) or conversational value; operator== compares the form and both members.
  static Turns Text(std::string text);
  static Turns Messages(std::vector<ChatMessage> messages);
  // The conversational form; a string becomes one message with `role`.
  std::vector<ChatMessage> AsMessages(absl::string_view role) const;
  // The text of the first message in conversational form, else `text` (e.g. a response to score).
  const std::string& FirstContent() const;
  bool operator==(const Turns& o) const;
};

// One line of a dataset. Only the members of the dataset's schema are set.
struct Record {
  std::string text;                                 // text
  std::vector<ChatMessage> messages;                // messages
  Turns prompt;                                     // prompt, prompt_completion, preference
  Turns completion;                                 // prompt_completion
  Turns chosen, rejected;                           // preference
  nlohmann::json extra = nlohmann::json::object();  // every other key of the line, as read
  int line = 0;                                     // 1-based line number in the source; 0 for built records

  // extra[key] as a string: strings as they are, numbers and booleans in JSON spelling; nullopt when absent or
  // of another type.
  std::optional<std::string> ExtraString(absl::string_view key) const;
};

struct Dataset {
  std::string source;  // the path (or name) errors refer to
  DatasetSchema schema = DatasetSchema::kText;
  std::vector<Record> records;
};

// Reads a JSONL file. The schema is `schema` when given, else detected from the first record's keys (chosen or
// rejected => preference; completion => prompt_completion; messages; prompt; text). Every record must match it.
// NOT_FOUND when the file does not exist; INVALID_ARGUMENT (file:line: ...) for content errors, including an empty
// file or one with only blank lines.
absl::StatusOr<Dataset> ReadJsonl(const std::string& path, std::optional<DatasetSchema> schema = std::nullopt);
// The same on contents already in memory; `source` names them in errors.
absl::StatusOr<Dataset> ParseJsonl(absl::string_view contents, absl::string_view source,
                                   std::optional<DatasetSchema> schema = std::nullopt);

// One record as a JSON line (no newline): the schema's keys first, then `extra`'s keys in sorted order.
std::string RecordToJsonLine(const Record& record, DatasetSchema schema);
// Writes `records` as JSONL atomically (see WriteFileAtomic). ReadJsonl reads it back equal, line numbers aside.
absl::Status WriteJsonl(const std::string& path, DatasetSchema schema, const std::vector<Record>& records);

}  // namespace alignd

#endif  // ALIGND_COMMON_DATA_DATASET_H_
