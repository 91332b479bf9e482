#include "cli/eval_cache.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/base/file_util.h"
#include "common/base/status.h"
#include "rollout/weight_manifest.h"
#include "rollout/weight_update.h"

namespace alignd::cli {

std::string TextDigest(absl::string_view text) {
  rollout::Checksum checksum(rollout::kChecksumXxh3);
  checksum.Update(text);
  return checksum.HexDigest();
}

absl::StatusOr<std::string> FolderDigest(const std::string& dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return absl::NotFoundError(absl::StrCat(dir, ": not a folder"));
  std::vector<std::string> names;
  for (const fs::directory_entry& e : fs::directory_iterator(dir, ec)) {
    if (e.is_regular_file()) names.push_back(e.path().filename().string());
  }
  if (ec) return absl::InternalError(absl::StrCat(dir, ": ", ec.message()));
  std::sort(names.begin(), names.end());
  rollout::Checksum checksum(rollout::kChecksumXxh3);
  std::vector<char> buffer(1 << 20);
  for (const std::string& name : names) {
    const std::string path = (fs::path(dir) / name).string();
    std::ifstream in(path, std::ios::binary);
    if (!in) return absl::InternalError(absl::StrCat(path, ": cannot be read"));
    checksum.Update(absl::StrCat(name, "\n", fs::file_size(path, ec), "\n"));
    while (in) {
      in.read(buffer.data(), static_cast<std::streamsize>(buffer.size()));
      checksum.Update(absl::string_view(buffer.data(), static_cast<size_t>(in.gcount())));
    }
  }
  return checksum.HexDigest();
}

AnswerCache::AnswerCache(std::string dir, std::string settings)
    : dir_(std::move(dir)), settings_(std::move(settings)) {}

std::string AnswerCache::PathFor(const std::string& model_digest) const {
  return JoinPath(dir_,
                  absl::StrCat("answers-", TextDigest(absl::StrCat(settings_, "\nmodel ", model_digest)), ".json"));
}

std::optional<learner::ReferenceAnswers> AnswerCache::Find(const std::string& model_digest,
                                                           const std::string& judge_digest, size_t records) const {
  absl::StatusOr<std::string> text = ReadFile(PathFor(model_digest));
  if (!text.ok()) return std::nullopt;
  nlohmann::json j = nlohmann::json::parse(*text, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object() || j.value("settings", "") != settings_ || j.value("model_digest", "") != model_digest) {
    return std::nullopt;
  }
  try {
    learner::ReferenceAnswers answers;
    answers.completions = j.at("completions").get<std::vector<std::string>>();
    answers.judge_scores = j.at("judges").at(judge_digest).get<std::vector<double>>();
    if (answers.completions.size() != records || answers.judge_scores.size() != records) return std::nullopt;
    return answers;
  } catch (const nlohmann::json::exception&) {
    return std::nullopt;
  }
}

absl::Status AnswerCache::Store(const std::string& model_digest, const std::string& model_path,
                                const std::string& judge_digest, const learner::ReferenceAnswers& answers) const {
  RETURN_IF_ERROR(MakeDirs(dir_));
  const std::string path = PathFor(model_digest);
  nlohmann::json judges = nlohmann::json::object();
  if (absl::StatusOr<std::string> old = ReadFile(path); old.ok()) {
    // Other judges' scores of the same answers stay (the same key means the same answers).
    nlohmann::json j = nlohmann::json::parse(*old, nullptr, /*allow_exceptions=*/false);
    if (j.is_object() && j.value("settings", "") == settings_ && j.contains("judges") && j["judges"].is_object()) {
      judges = j["judges"];
    }
  }
  judges[judge_digest] = answers.judge_scores;
  nlohmann::json entry = {{"settings", settings_},
                          {"model", model_path},
                          {"model_digest", model_digest},
                          {"completions", answers.completions},
                          {"judges", judges}};
  return WriteFileAtomic(path, entry.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n");
}

}  // namespace alignd::cli
