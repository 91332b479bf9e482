#include "common/text/model_chat_template.h"

#include <nlohmann/json.hpp>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/base/file_util.h"
#include "common/base/json_depth.h"
#include "common/base/status.h"
#include "common/text/chat_template.h"

namespace alignd {
namespace {

using Json = nlohmann::ordered_json;  // keys keep their order when the file is written back

constexpr absl::string_view kJinjaFile = "chat_template.jinja";
constexpr absl::string_view kConfigFile = "tokenizer_config.json";

// tokenizer_config.json as an object; an empty object when the file is missing.
absl::StatusOr<Json> ReadConfig(const std::string& dir) {
  const std::string path = JoinPath(dir, kConfigFile);
  if (!PathExists(path)) return Json::object();
  ASSIGN_OR_RETURN(std::string text, ReadFile(path));
  RETURN_IF_ERROR(Annotate(CheckJsonDepth(text), path));
  Json config = Json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (config.is_discarded()) return absl::InvalidArgumentError(absl::StrCat(path, ": not valid JSON"));
  if (!config.is_object()) return absl::InvalidArgumentError(absl::StrCat(path, ": expected a JSON object"));
  return config;
}

}  // namespace

absl::StatusOr<std::optional<std::string>> ReadModelChatTemplate(const std::string& dir) {
  if (const std::string path = JoinPath(dir, kJinjaFile); PathExists(path)) return ReadFile(path);
  ASSIGN_OR_RETURN(Json config, ReadConfig(dir));
  auto it = config.find("chat_template");
  if (it == config.end() || it->is_null()) return std::nullopt;
  if (it->is_string()) return it->get<std::string>();
  const std::string where = absl::StrCat(JoinPath(dir, kConfigFile), ": chat_template");
  if (!it->is_array()) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": expected a string or a list of {name, template}"));
  }
  for (const Json& entry : *it) {
    if (!entry.is_object() || !entry.contains("name") || !entry["name"].is_string() || !entry.contains("template") ||
        !entry["template"].is_string()) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": expected a string or a list of {name, template}"));
    }
    if (entry["name"] == "default") return entry["template"].get<std::string>();
  }
  return std::nullopt;
}

absl::Status WriteModelChatTemplate(const std::string& dir, absl::string_view jinja) {
  ASSIGN_OR_RETURN(Json config, ReadConfig(dir));
  config["chat_template"] = std::string(jinja);
  return WriteFileAtomic(JoinPath(dir, kConfigFile), config.dump(2));
}

std::optional<ChatTemplateMatch> MatchChatTemplate(absl::string_view jinja) {
  const absl::string_view text = absl::StripAsciiWhitespace(jinja);
  for (const std::string& name : ChatTemplate::KnownNames()) {
    absl::StatusOr<ChatTemplate> known = ChatTemplate::Create(name);
    if (known.ok() && text == known->jinja()) return ChatTemplateMatch{name, true};
  }
  if (absl::StrContains(text, "<|im_start|>")) return ChatTemplateMatch{"chatml", false};
  if (absl::StrContains(text, "<|start_header_id|>")) return ChatTemplateMatch{"llama3", false};
  return std::nullopt;
}

}  // namespace alignd
