#include "common/data/dataset.h"

#include <algorithm>
#include <iterator>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/base/file_util.h"
#include "common/base/json_depth.h"
#include "common/base/status.h"

namespace alignd {
namespace {

using Json = nlohmann::json;
using OrderedJson = nlohmann::ordered_json;

constexpr absl::string_view kKnownSchemas[] = {"text", "messages", "prompt", "prompt_completion", "preference"};

// The keys a schema owns, in the order the writer emits them.
std::vector<std::string> SchemaKeys(DatasetSchema schema) {
  switch (schema) {
    case DatasetSchema::kText:
      return {"text"};
    case DatasetSchema::kMessages:
      return {"messages"};
    case DatasetSchema::kPrompt:
      return {"prompt"};
    case DatasetSchema::kPromptCompletion:
      return {"prompt", "completion"};
    case DatasetSchema::kPreference:
      return {"prompt", "chosen", "rejected"};
  }
  return {};
}

std::optional<DatasetSchema> DetectSchema(const Json& object) {
  if (object.contains("chosen") || object.contains("rejected")) return DatasetSchema::kPreference;
  if (object.contains("completion")) return DatasetSchema::kPromptCompletion;
  if (object.contains("messages")) return DatasetSchema::kMessages;
  if (object.contains("prompt")) return DatasetSchema::kPrompt;
  if (object.contains("text")) return DatasetSchema::kText;
  return std::nullopt;
}

// Parses one line's values; errors carry only the key part of the message, the caller adds file:line.
class RecordParser {
 public:
  explicit RecordParser(const Json& object) : object_(object) {}

  absl::Status String(const std::string& key, std::string* out) {
    ASSIGN_OR_RETURN(const Json* value, Get(key));
    if (!value->is_string()) {
      return absl::InvalidArgumentError(absl::StrCat("key \"", key, "\" must be a string, got ", value->type_name()));
    }
    *out = value->get<std::string>();
    return absl::OkStatus();
  }

  absl::Status MessageList(const std::string& key, std::vector<ChatMessage>* out) {
    ASSIGN_OR_RETURN(const Json* value, Get(key));
    if (!value->is_array()) {
      return absl::InvalidArgumentError(
          absl::StrCat("key \"", key, "\" must be a list of messages, got ", value->type_name()));
    }
    return Messages(key, *value, out);
  }

  // A string or a list of messages. A response (completion/chosen/rejected) in list form starts with an assistant
  // message, so that the prompt's generation prompt opens it.
  absl::Status TurnsValue(const std::string& key, bool is_response, Turns* out) {
    ASSIGN_OR_RETURN(const Json* value, Get(key));
    if (value->is_string()) {
      *out = Turns::Text(value->get<std::string>());
      return absl::OkStatus();
    }
    if (!value->is_array()) {
      return absl::InvalidArgumentError(
          absl::StrCat("key \"", key, "\" must be a string or a list of messages, got ", value->type_name()));
    }
    std::vector<ChatMessage> messages;
    RETURN_IF_ERROR(Messages(key, *value, &messages));
    if (is_response && messages.front().role != "assistant") {
      return absl::InvalidArgumentError(absl::StrCat(
          "key \"", key, "\"[0].role must be assistant in a response, got \"", messages.front().role, "\""));
    }
    *out = Turns::Messages(std::move(messages));
    return absl::OkStatus();
  }

 private:
  absl::StatusOr<const Json*> Get(const std::string& key) {
    auto it = object_.find(key);
    if (it == object_.end()) return absl::InvalidArgumentError(absl::StrCat("missing key \"", key, "\""));
    return &*it;
  }

  static absl::Status Messages(const std::string& key, const Json& array, std::vector<ChatMessage>* out) {
    if (array.empty()) return absl::InvalidArgumentError(absl::StrCat("key \"", key, "\" must not be an empty list"));
    out->clear();
    for (size_t i = 0; i < array.size(); ++i) {
      const Json& m = array[i];
      std::string where = absl::StrCat("key \"", key, "\"[", i, "]");
      if (!m.is_object()) {
        return absl::InvalidArgumentError(
            absl::StrCat(where, " must be an object with \"role\" and \"content\", got ", m.type_name()));
      }
      ChatMessage message;
      for (const char* field : {"role", "content"}) {
        auto it = m.find(field);
        if (it == m.end()) return absl::InvalidArgumentError(absl::StrCat(where, ".", field, " is missing"));
        if (!it->is_string()) {
          return absl::InvalidArgumentError(
              absl::StrCat(where, ".", field, " must be a string, got ", it->type_name()));
        }
        (field[0] == 'r' ? message.role : message.content) = it->get<std::string>();
      }
      if (message.role != "system" && message.role != "user" && message.role != "assistant") {
        return absl::InvalidArgumentError(
            absl::StrCat(where, ".role must be one of system/user/assistant, got \"", message.role, "\""));
      }
      out->push_back(std::move(message));
    }
    return absl::OkStatus();
  }

  const Json& object_;
};

absl::StatusOr<Record> ParseRecord(const Json& object, DatasetSchema schema) {
  Record record;
  RecordParser parser(object);
  switch (schema) {
    case DatasetSchema::kText:
      RETURN_IF_ERROR(parser.String("text", &record.text));
      break;
    case DatasetSchema::kMessages:
      RETURN_IF_ERROR(parser.MessageList("messages", &record.messages));
      break;
    case DatasetSchema::kPrompt:
      RETURN_IF_ERROR(parser.TurnsValue("prompt", false, &record.prompt));
      break;
    case DatasetSchema::kPromptCompletion:
      RETURN_IF_ERROR(parser.TurnsValue("prompt", false, &record.prompt));
      RETURN_IF_ERROR(parser.TurnsValue("completion", true, &record.completion));
      break;
    case DatasetSchema::kPreference:
      RETURN_IF_ERROR(parser.TurnsValue("prompt", false, &record.prompt));
      RETURN_IF_ERROR(parser.TurnsValue("chosen", true, &record.chosen));
      RETURN_IF_ERROR(parser.TurnsValue("rejected", true, &record.rejected));
      break;
  }
  std::vector<std::string> owned = SchemaKeys(schema);
  for (auto it = object.begin(); it != object.end(); ++it) {
    if (std::find(owned.begin(), owned.end(), it.key()) == owned.end()) record.extra[it.key()] = it.value();
  }
  return record;
}

// nlohmann's messages start with "[json.exception.parse_error.101] "; the bracket names nothing a user can act on.
std::string JsonErrorText(const std::exception& e) {
  absl::string_view text = e.what();
  if (!text.empty() && text.front() == '[') {
    size_t close = text.find("] ");
    if (close != absl::string_view::npos) text.remove_prefix(close + 2);
  }
  return std::string(text);
}

OrderedJson TurnsToJson(const Turns& turns) {
  if (!turns.conversational) return turns.text;
  OrderedJson list = OrderedJson::array();
  for (const ChatMessage& m : turns.messages) list.push_back({{"role", m.role}, {"content", m.content}});
  return list;
}

}  // namespace

absl::string_view SchemaName(DatasetSchema schema) { return kKnownSchemas[static_cast<int>(schema)]; }

absl::StatusOr<DatasetSchema> ParseSchemaName(absl::string_view name) {
  for (int i = 0; i < static_cast<int>(std::size(kKnownSchemas)); ++i) {
    if (kKnownSchemas[i] == name) return static_cast<DatasetSchema>(i);
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown dataset schema \"", name, "\"; known schemas: ", absl::StrJoin(kKnownSchemas, ", ")));
}

Turns Turns::Text(std::string text) {
  Turns t;
  t.text = std::move(text);
  return t;
}

Turns Turns::Messages(std::vector<ChatMessage> messages) {
  Turns t;
  t.conversational = true;
  t.messages = std::move(messages);
  return t;
}

std::vector<ChatMessage> Turns::AsMessages(absl::string_view role) const {
  if (conversational) return messages;
  return {ChatMessage{std::string(role), text}};
}

const std::string& Turns::FirstContent() const {
  if (conversational && !messages.empty()) return messages.front().content;
  return text;
}

bool Turns::operator==(const Turns& o) const {
  return conversational == o.conversational && text == o.text && messages == o.messages;
}

std::optional<std::string> Record::ExtraString(absl::string_view key) const {
  auto it = extra.find(std::string(key));
  if (it == extra.end()) return std::nullopt;
  if (it->is_string()) return it->get<std::string>();
  if (it->is_number() || it->is_boolean()) return it->dump();
  return std::nullopt;
}

absl::StatusOr<Dataset> ParseJsonl(absl::string_view contents, absl::string_view source,
                                   std::optional<DatasetSchema> schema) {
  if (contents.empty()) return absl::InvalidArgumentError(absl::StrCat(source, ": empty file, expected JSON lines"));
  Dataset dataset;
  dataset.source = std::string(source);
  int line_number = 0;
  for (absl::string_view line : absl::StrSplit(contents, '\n')) {
    ++line_number;
    if (absl::StripAsciiWhitespace(line).empty()) continue;
    auto error = [&](absl::string_view message) {
      return absl::InvalidArgumentError(absl::StrCat(source, ":", line_number, ": ", message));
    };
    // Deeper nesting would overflow the stack when a record copies or writes its extra keys.
    if (absl::Status depth = CheckJsonDepth(line); !depth.ok()) return error(depth.message());
    Json object;
    try {
      object = Json::parse(line.begin(), line.end());
    } catch (const Json::exception& e) {
      return error(absl::StrCat("invalid JSON: ", JsonErrorText(e)));
    }
    if (!object.is_object()) return error(absl::StrCat("expected a JSON object, got ", object.type_name()));
    if (!schema) {
      schema = DetectSchema(object);
      if (!schema) {
        std::vector<std::string> keys;
        for (auto it = object.begin(); it != object.end(); ++it) keys.push_back(absl::StrCat("\"", it.key(), "\""));
        return error(absl::StrCat("cannot tell the dataset schema from keys {", absl::StrJoin(keys, ", "),
                                  "}; expected \"text\", \"messages\", \"prompt\", \"prompt\"+\"completion\" or "
                                  "\"prompt\"+\"chosen\"+\"rejected\""));
      }
    }
    absl::StatusOr<Record> record = ParseRecord(object, *schema);
    if (!record.ok()) return error(record.status().message());
    record->line = line_number;
    dataset.records.push_back(std::move(*record));
  }
  if (dataset.records.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(source, ": no records, only blank lines"));
  }
  dataset.schema = *schema;
  return dataset;
}

absl::StatusOr<Dataset> ReadJsonl(const std::string& path, std::optional<DatasetSchema> schema) {
  ASSIGN_OR_RETURN(std::string contents, ReadFile(path));
  return ParseJsonl(contents, path, schema);
}

std::string RecordToJsonLine(const Record& record, DatasetSchema schema) {
  OrderedJson out = OrderedJson::object();
  switch (schema) {
    case DatasetSchema::kText:
      out["text"] = record.text;
      break;
    case DatasetSchema::kMessages:
      out["messages"] = TurnsToJson(Turns::Messages(record.messages));
      break;
    case DatasetSchema::kPrompt:
      out["prompt"] = TurnsToJson(record.prompt);
      break;
    case DatasetSchema::kPromptCompletion:
      out["prompt"] = TurnsToJson(record.prompt);
      out["completion"] = TurnsToJson(record.completion);
      break;
    case DatasetSchema::kPreference:
      out["prompt"] = TurnsToJson(record.prompt);
      out["chosen"] = TurnsToJson(record.chosen);
      out["rejected"] = TurnsToJson(record.rejected);
      break;
  }
  if (record.extra.is_object()) {
    for (auto it = record.extra.begin(); it != record.extra.end(); ++it) {
      if (!out.contains(it.key())) out[it.key()] = OrderedJson(it.value());
    }
  }
  // Invalid UTF-8 is replaced (U+FFFD) rather than thrown on.
  return out.dump(-1, ' ', /*ensure_ascii=*/false, OrderedJson::error_handler_t::replace);
}

absl::Status WriteJsonl(const std::string& path, DatasetSchema schema, const std::vector<Record>& records) {
  std::string contents;
  for (const Record& record : records) absl::StrAppend(&contents, RecordToJsonLine(record, schema), "\n");
  return WriteFileAtomic(path, contents);
}

}  // namespace alignd
