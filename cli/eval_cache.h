// `alignd eval --cache DIR`: a model's greedy answers to an evaluation's prompts, with a judge's scores of them, kept
// so that a later evaluation with that model as its --reference (the usual case: the SFT model, against which every
// later checkpoint is compared) takes them instead of generating and judging them again.
//
// An entry is found only by a key that names everything the answers depend on: the model folder's bytes, the prompt
// file's bytes and --max_records, the template, max_new_tokens, batch size, dtype, the intra-op thread count, the CPU
// kernels LibTorch dispatches to and the LibTorch version. Answers from the cache are therefore the answers the
// evaluation would have generated; any change in those gives another key and a fresh generation. Judge scores are
// kept per judge (the judge folder's bytes) beside the answers.
#ifndef ALIGND_CLI_EVAL_CACHE_H_
#define ALIGND_CLI_EVAL_CACHE_H_

#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "learner/evaluation.h"

namespace alignd::cli {

// XXH3-128 of `text` in hex (rollout::Checksum, as weight manifests use it).
std::string TextDigest(absl::string_view text);

// XXH3-128 over a folder's regular files (sorted by name; each file's name, size and bytes), in hex.
// NOT_FOUND when `dir` is not a folder.
absl::StatusOr<std::string> FolderDigest(const std::string& dir);

class AnswerCache {
 public:
  // `settings`: everything besides the model and judge that the answers depend on, as text (eval_command.cc's AnswerSettings).
  AnswerCache(std::string dir, std::string settings);

  // The answers of the model with `model_digest` and the scores of the judge with `judge_digest`, when both are kept.
  // A missing or unreadable entry is a miss (the evaluation generates); an entry of the wrong size too.
  std::optional<learner::ReferenceAnswers> Find(const std::string& model_digest, const std::string& judge_digest,
                                                size_t records) const;

  // Keeps `answers` as the model's, with their scores under the judge's digest, beside other judges' scores of the
  // same answers. Written atomically; the folder is made if missing.
  absl::Status Store(const std::string& model_digest, const std::string& model_path, const std::string& judge_digest,
                     const learner::ReferenceAnswers& answers) const;

 private:
  // The entry's file for a model.
  std::string PathFor(const std::string& model_digest) const;

  std::string dir_, settings_;
};

}  // namespace alignd::cli

#endif  // ALIGND_CLI_EVAL_CACHE_H_
