#include <ATen/Parallel.h>
#include <ATen/Version.h>
#include <torch/version.h>

#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "cli/commands.h"
#include "cli/eval_cache.h"
#include "common/base/cpu.h"
#include "common/base/file_util.h"
#include "common/base/flags.h"
#include "common/base/status.h"
#include "common/data/dataset.h"
#include "common/data/example_tokenizer.h"
#include "common/model/compute_threads.h"
#include "common/model/hf_model.h"
#include "common/model/perplexity.h"
#include "common/text/chat_template.h"
#include "learner/evaluation.h"
#include "reward/model_scorer.h"
#include "reward/registry.h"
#include "spec/job_spec.h"

namespace alignd::cli {
namespace {

std::vector<std::string> SupportedMetrics() {
  std::vector<std::string> all = {"perplexity"};
  for (const std::string& m : learner::GenerationMetricNames()) all.push_back(m);
  return all;
}

bool Contains(const std::vector<std::string>& list, absl::string_view item) {
  return std::find(list.begin(), list.end(), item) != list.end();
}

absl::StatusOr<torch::ScalarType> ParseDtype(const std::string& name) {
  if (name == "float32") return torch::kFloat;
  if (name == "bfloat16") return torch::kBFloat16;
  if (name == "float64") return torch::kDouble;
  return absl::InvalidArgumentError(absl::StrCat("--dtype must be float32, bfloat16 or float64, got \"", name, "\""));
}

// Every flag combination error, before anything is loaded. `generation` are the requested generation metrics.
absl::Status CheckFlags(const FlagSet& flags, bool perplexity, const std::vector<std::string>& generation) {
  if (flags.GetString("model").empty()) return absl::InvalidArgumentError("--model is required");
  if (flags.GetInt("batch_size") < 1) return absl::InvalidArgumentError("--batch_size must be at least 1");
  const bool has_data = !flags.GetString("data").empty();
  const bool has_text_data = !flags.GetString("text_data").empty();
  if (!generation.empty() && !has_data) {
    return absl::InvalidArgumentError(
        absl::StrCat("--data (prompt records) is required by ", absl::StrJoin(generation, ", ")));
  }
  if (perplexity && !has_data && !has_text_data) return absl::InvalidArgumentError("--data is required");
  if (flags.GetBool("assistant_only") && !perplexity) {
    return absl::InvalidArgumentError("--assistant_only is read only by the perplexity metric, which --metrics lacks");
  }
  if (has_text_data && !perplexity) {
    return absl::InvalidArgumentError("--text_data is read only by the perplexity metric, which --metrics lacks");
  }
  const bool needs_reference = Contains(generation, "kl_to_ref") || Contains(generation, "win_rate");
  const bool has_reference = !flags.GetString("reference").empty();
  if (needs_reference && !has_reference) {
    return absl::InvalidArgumentError("--reference is required by kl_to_ref and win_rate");
  }
  if (has_reference && !needs_reference) {
    return absl::InvalidArgumentError("--reference is read only by kl_to_ref and win_rate, which --metrics lacks");
  }
  const bool has_rewards = !flags.GetString("rewards").empty();
  const bool has_judge = !flags.GetString("judge").empty();
  if (Contains(generation, "win_rate") && !has_judge) {
    return absl::InvalidArgumentError("--judge (a reward model) is required by win_rate");
  }
  if (has_judge && !Contains(generation, "win_rate")) {
    return absl::InvalidArgumentError("--judge is read only by win_rate, which --metrics lacks");
  }
  if (Contains(generation, "reward_mean") && !has_rewards) {
    return absl::InvalidArgumentError("reward_mean needs --rewards (a YAML file with a `rewards` list: a job spec)");
  }
  if (has_rewards && !Contains(generation, "reward_mean")) {
    return absl::InvalidArgumentError("--rewards is read only by reward_mean, which --metrics lacks");
  }
  if (!generation.empty() && flags.GetInt("max_new_tokens") < 1) {
    return absl::InvalidArgumentError("--max_new_tokens must be at least 1");
  }
  return ParseDtype(flags.GetString("dtype")).status();
}

// The records of `path`, at most --max_records of them.
absl::StatusOr<Dataset> ReadRecords(const FlagSet& flags, const std::string& path) {
  ASSIGN_OR_RETURN(Dataset data, ReadJsonl(path));
  const int64_t limit = flags.GetInt("max_records");
  if (limit > 0 && static_cast<int64_t>(data.records.size()) > limit) data.records.resize(limit);
  return data;
}

// The records of --text_data (else --data) that perplexity scores: "text" or "messages".
absl::StatusOr<Dataset> ReadTextData(const FlagSet& flags) {
  const bool text_flag = !flags.GetString("text_data").empty();
  ASSIGN_OR_RETURN(Dataset data, ReadRecords(flags, flags.GetString(text_flag ? "text_data" : "data")));
  if (data.schema != DatasetSchema::kText && data.schema != DatasetSchema::kMessages) {
    return absl::InvalidArgumentError(absl::StrCat(
        text_flag ? "--text_data " : "--data ", data.source, ": perplexity reads \"text\" records; this file has ",
        SchemaName(data.schema), " records (\"messages\" records work too, rendered with --template",
        text_flag ? ")" : "; with prompts in --data, give perplexity's text with --text_data)"));
  }
  return data;
}

// The prompt records of --data that the generation metrics answer.
absl::StatusOr<Dataset> ReadPromptData(const FlagSet& flags, const std::vector<std::string>& metrics) {
  ASSIGN_OR_RETURN(Dataset data, ReadRecords(flags, flags.GetString("data")));
  if (data.schema != DatasetSchema::kPrompt) {
    return absl::InvalidArgumentError(absl::StrCat("--data ", data.source, ": ", absl::StrJoin(metrics, ", "),
                                                   " read \"prompt\" records; this file has ", SchemaName(data.schema),
                                                   " records (perplexity's text goes in --text_data)"));
  }
  return data;
}

// The assistant turns of messages records (their content and end-of-turn marker, the tokens SFT trains) as the
// scored tokens of each conversation.
absl::StatusOr<std::vector<ScoredTokens>> AssistantTurns(const FlagSet& flags, const Dataset& data,
                                                         const Tokenizer& tokenizer) {
  if (data.schema != DatasetSchema::kMessages) {
    return absl::InvalidArgumentError(absl::StrCat("--assistant_only scores \"messages\" records; ", data.source,
                                                   " has ", SchemaName(data.schema), " records"));
  }
  TokenizeOptions to;
  to.chat_template = flags.GetString("template");
  to.max_length = 0;  // perplexity splits long sequences into windows itself
  ASSIGN_OR_RETURN(ExampleTokenizer tokenize, ExampleTokenizer::Create(&tokenizer, to));
  std::vector<ScoredTokens> sequences;
  for (const Record& r : data.records) {
    absl::StatusOr<TokenizedExample> example = tokenize.Messages(r.messages);
    if (!example.ok()) return Annotate(example.status(), absl::StrCat(data.source, ":", r.line));
    sequences.push_back({std::move(example->input_ids), std::move(example->loss_mask)});
  }
  return sequences;
}

// Perplexity of text records as they are, or of messages rendered with --template; with --assistant_only, of the
// messages' assistant turns alone, in context.
absl::Status AddPerplexity(const FlagSet& flags, const Dataset& data, LoadedModel& model, const Tokenizer& tokenizer,
                           nlohmann::json& result) {
  PerplexityOptions options;
  options.batch_size = flags.GetInt("batch_size");
  options.max_length = flags.GetInt("max_length");
  absl::StatusOr<PerplexityResult> ppl;
  if (flags.GetBool("assistant_only")) {
    ASSIGN_OR_RETURN(std::vector<ScoredTokens> sequences, AssistantTurns(flags, data, tokenizer));
    ppl = ComputePerplexity(*model.model, sequences, static_cast<int32_t>(tokenizer.pad_id().value_or(0)), options);
  } else {
    std::vector<std::string> texts;
    if (data.schema == DatasetSchema::kMessages) {
      ASSIGN_OR_RETURN(ChatTemplate tmpl, ChatTemplate::ForTokenizer(flags.GetString("template"), tokenizer));
      for (const Record& r : data.records) texts.push_back(tmpl.Render(r.messages, /*add_generation_prompt=*/false));
      options.add_special_tokens = false;  // the template renders BOS itself
    } else {
      for (const Record& r : data.records) texts.push_back(r.text);
    }
    ppl = ComputePerplexity(*model.model, tokenizer, texts, options);
  }
  RETURN_IF_ERROR(ppl.status());
  result["perplexity"] = ppl->perplexity;
  result["tokens"] = ppl->tokens;
  result["nll"] = ppl->nll;
  result["texts"] = ppl->texts;
  return absl::OkStatus();
}

// What the greedy answers depend on besides the model's weights (--cache's key): the prompts, the tokenizer that renders
// them (--model's), the decoding options, and the kernels that compute them.
absl::StatusOr<std::string> AnswerSettings(const FlagSet& flags, const Dataset& data, torch::ScalarType dtype) {
  ASSIGN_OR_RETURN(std::string prompts, ReadFile(flags.GetString("data")));
  std::string tokenizer;
  for (const char* name : {"tokenizer.json", "tokenizer_config.json"}) {
    const std::string path = JoinPath(flags.GetString("model"), name);
    if (!PathExists(path)) continue;
    ASSIGN_OR_RETURN(std::string bytes, ReadFile(path));
    absl::StrAppend(&tokenizer, name, " ", bytes.size(), "\n", bytes);
  }
  return absl::StrCat("alignd eval answers, format 1\nprompts ", prompts.size(), " bytes, ", data.records.size(),
                      " records, digest ", TextDigest(prompts), "\ntokenizer digest ", TextDigest(tokenizer),
                      "\ntemplate ", flags.GetString("template"), "\nmax_new_tokens ", flags.GetInt("max_new_tokens"),
                      "\nbatch_size ", flags.GetInt("batch_size"), "\ndtype ", flags.GetString("dtype"), " (",
                      c10::toString(dtype), ")\nthreads ", at::get_num_threads(), "\ncpu ", at::get_cpu_capability(),
                      "\nlibtorch ", TORCH_VERSION, "\n");
}

absl::Status AddGeneration(const FlagSet& flags, const Dataset& data, const LoadedModel& model,
                           std::shared_ptr<const Tokenizer> tokenizer, torch::ScalarType dtype,
                           const std::vector<std::string>& metrics, nlohmann::json& result) {
  const std::string tmpl = flags.GetString("template");
  learner::GenerationEvalModels models;
  models.policy = model.model;
  models.tokenizer = std::move(tokenizer);
  // --cache: the folders' digests key the answers. A reference that is the model's own folder (or, with --cache, has
  // its bytes) is the model itself: answered and judged once.
  const std::string cache_dir = flags.GetString("cache");
  const bool has_reference = !flags.GetString("reference").empty();
  std::string model_digest, reference_digest, judge_digest;
  bool own_reference = false;
  if (has_reference) {
    std::error_code ec;
    own_reference = std::filesystem::equivalent(flags.GetString("model"), flags.GetString("reference"), ec);
  }
  if (!cache_dir.empty()) {
    ASSIGN_OR_RETURN(model_digest, FolderDigest(flags.GetString("model")));
    if (has_reference) {
      absl::StatusOr<std::string> digest = FolderDigest(flags.GetString("reference"));
      if (!digest.ok()) return Annotate(digest.status(), "--reference");
      reference_digest = *digest;
      own_reference = own_reference || reference_digest == model_digest;
    }
    if (Contains(metrics, "win_rate")) {
      absl::StatusOr<std::string> digest = FolderDigest(flags.GetString("judge"));
      if (!digest.ok()) return Annotate(digest.status(), "--judge");
      judge_digest = *digest;
    }
  }
  LoadedModel reference;
  if (own_reference) {
    models.reference = model.model;
  } else if (has_reference) {
    LoadOptions load;
    load.dtype = dtype;
    load.load_tokenizer = false;
    auto loaded = LoadModelDir(flags.GetString("reference"), load);
    if (!loaded.ok()) return Annotate(loaded.status(), "--reference");
    reference = std::move(loaded).value();
    models.reference = reference.model;
  }
  std::unique_ptr<reward::Reward> reward, judge;
  const reward::ScorerContext context = reward::ModelScorerContext(tmpl, c10::kCPU);
  if (Contains(metrics, "reward_mean")) {
    absl::StatusOr<std::vector<reward::RewardPartSpec>> parts = reward::ReadRewardParts(flags.GetString("rewards"));
    if (!parts.ok()) return Annotate(parts.status(), "--rewards");
    absl::StatusOr<std::vector<reward::WeightedScorer>> scorers = reward::MakeScorers(*parts, context);
    if (!scorers.ok()) return Annotate(scorers.status(), "--rewards");
    ASSIGN_OR_RETURN(reward, reward::MakeLocalReward(std::move(scorers).value()));
    models.reward = reward.get();
  }
  if (Contains(metrics, "win_rate")) {
    auto model = reward::MakeRewardModelScorer(flags.GetString("judge"), tmpl);
    if (!model.ok()) return Annotate(model.status(), "--judge");
    std::vector<reward::WeightedScorer> parts;
    parts.push_back({"judge", 1.0, std::move(model).value()});
    ASSIGN_OR_RETURN(judge, reward::MakeLocalReward(std::move(parts)));
    models.judge = judge.get();
  }
  learner::GenerationEvalOptions options;
  options.metrics = metrics;
  options.chat_template = tmpl;
  options.max_new_tokens = flags.GetInt("max_new_tokens");
  options.batch_size = flags.GetInt("batch_size");
  std::optional<AnswerCache> cache;
  if (!cache_dir.empty()) {
    ASSIGN_OR_RETURN(std::string settings, AnswerSettings(flags, data, dtype));
    cache.emplace(cache_dir, std::move(settings));
    if (Contains(metrics, "win_rate") && !own_reference) {
      options.reference_answers = cache->Find(reference_digest, judge_digest, data.records.size());
    }
    result["reference_answers"] = options.reference_answers ? "cache" : "generated";
  }
  ASSIGN_OR_RETURN(learner::GenerationEvalResult eval, learner::EvaluateGeneration(data.records, models, options));
  if (cache && Contains(metrics, "win_rate")) {
    // The model's answers and the judge's scores of them, for an evaluation that has this model as its reference.
    learner::ReferenceAnswers mine;
    for (const learner::PromptEval& p : eval.prompts) {
      mine.completions.push_back(p.completion);
      mine.judge_scores.push_back(*p.judge_policy);
    }
    RETURN_IF_ERROR(Annotate(cache->Store(model_digest, flags.GetString("model"), judge_digest, mine), "--cache"));
  }
  for (const auto& [name, value] : eval.metrics) {
    result[name] = value ? nlohmann::json(*value) : nlohmann::json(nullptr);
  }
  result["n_prompts"] = eval.n_prompts;
  if (!eval.n_scored.empty()) result["n_scored"] = eval.n_scored;
  if (!eval.reward_parts.empty()) result["reward_parts"] = eval.reward_parts;
  if (!flags.GetString("reference").empty()) result["reference"] = flags.GetString("reference");
  if (!flags.GetString("details").empty()) {
    std::string lines;
    for (size_t i = 0; i < eval.prompts.size(); ++i) {
      nlohmann::json line = eval.prompts[i].ToJson();
      const Turns& prompt = data.records[i].prompt;
      line["prompt"] = !prompt.conversational    ? prompt.text
                       : prompt.messages.empty() ? std::string()
                                                 : prompt.messages.back().content;  // the last (user) turn
      absl::StrAppend(&lines, line.dump(), "\n");
    }
    RETURN_IF_ERROR(WriteFileAtomic(flags.GetString("details"), lines));
  }
  return absl::OkStatus();
}

absl::StatusOr<nlohmann::json> Evaluate(const FlagSet& flags) {
  std::vector<std::string> metrics = absl::StrSplit(flags.GetString("metrics"), ',', absl::SkipEmpty());
  if (metrics.empty()) return absl::InvalidArgumentError("--metrics is empty");
  const std::vector<std::string> supported = SupportedMetrics();
  bool perplexity = false;
  std::vector<std::string> generation;
  for (const std::string& m : metrics) {
    if (!Contains(supported, m)) {
      return absl::InvalidArgumentError(
          absl::StrCat("--metrics: unknown metric \"", m, "\"; supported: ", absl::StrJoin(supported, ", ")));
    }
    if (m == "perplexity") {
      perplexity = true;
    } else if (!Contains(generation, m)) {
      generation.push_back(m);
    }
  }
  RETURN_IF_ERROR(CheckFlags(flags, perplexity, generation));
  ASSIGN_OR_RETURN(torch::ScalarType dtype, ParseDtype(flags.GetString("dtype")));
  // Data before models: a bad file fails fast, before seconds of loading.
  Dataset text_data, prompt_data;
  if (perplexity) {
    ASSIGN_OR_RETURN(text_data, ReadTextData(flags));
  }
  if (!generation.empty()) {
    ASSIGN_OR_RETURN(prompt_data, ReadPromptData(flags, generation));
  }

  LoadOptions load;
  load.dtype = dtype;
  ASSIGN_OR_RETURN(LoadedModel model, LoadModelDir(flags.GetString("model"), load));
  std::shared_ptr<const Tokenizer> tokenizer = std::move(model.tokenizer);
  nlohmann::json result;
  if (perplexity) RETURN_IF_ERROR(AddPerplexity(flags, text_data, model, *tokenizer, result));
  if (!generation.empty()) {
    RETURN_IF_ERROR(AddGeneration(flags, prompt_data, model, tokenizer, dtype, generation, result));
  }
  result["model"] = flags.GetString("model");
  result["architecture"] = model.config.architecture;
  return result;
}

}  // namespace

int RunEval(const Args& args, std::ostream& out, std::ostream& err) {
  FlagSet flags("alignd eval --model DIR --data FILE.jsonl [--metrics perplexity,accuracy,...] [flags]");
  flags.String("model", "", "Hugging Face model folder (config.json, safetensors, tokenizer.json)");
  flags.String("data", "",
               "JSONL: \"prompt\" records (with any other fields the rewards and task metrics read) for the generation "
               "metrics; for perplexity alone "
               "it may hold \"text\" or \"messages\" records instead");
  flags.String("text_data", "",
               "JSONL of \"text\" or \"messages\" records for perplexity when --data holds prompts (messages are "
               "rendered with --template)");
  flags.String("metrics", "perplexity",
               "comma-separated: perplexity (on --text_data, else --data); generation metrics on the prompts of "
               "--data, greedy: the task metrics (accuracy, refusal_rate, false_refusal_rate), reward_mean (needs "
               "--rewards), kl_to_ref (needs --reference), win_rate (needs --reference and --judge), repetition");
  flags.String("reference", "", "reference model folder (e.g. the SFT model) for kl_to_ref and win_rate");
  flags.String("rewards", "",
               "YAML file with a `rewards` list (a PPO/GRPO job spec will do): reward_mean's reward, part by part");
  flags.String("judge", "", "reward model folder (score head) that judges win_rate");
  flags.String("template", "chatml", "chat template for prompts and messages: chatml, llama3, plain or raw");
  flags.Int("max_new_tokens", 32, "tokens generated per prompt at most (greedy decoding)");
  flags.String("details", "",
               "write one JSON line per prompt (fields, completion, task metrics, reward and its parts, kl, win) here");
  flags.Int("max_records", 0, "use only the first N records of each data file (0: all)");
  flags.Int("batch_size", 8, "sequences per forward pass (and rows decoded together)");
  flags.Int("max_length", 0,
            "perplexity: split longer texts into windows of this many tokens (0: the model's context)");
  flags.Bool("assistant_only", false,
             "perplexity of \"messages\" records over their assistant turns only (content and end-of-turn marker, "
             "what SFT trains), the rest as context");
  flags.String("cache", "",
               "folder that keeps each evaluated model's greedy answers and the judge's scores of them: a later "
               "evaluation whose --reference is that model takes the reference's side of win_rate from it instead of "
               "generating and judging again (keyed by the models' and prompts' bytes and every decoding setting)");
  flags.String("dtype", "float32", "compute dtype of --model and --reference: float32, bfloat16 or float64");
  flags.Int("threads", AvailableCores(), "intra-op threads (default: the cores available)");
  constexpr char kAbout[] =
      "Evaluates a model folder and prints the metrics as one JSON object. Generation metrics answer each prompt of "
      "--data once, greedily; kl_to_ref is the mean summed log-ratio log p_model - log p_reference over the model's "
      "own greedy answers (a proxy for the KL, not an unbiased estimate); win_rate counts a tie as 0.5.";
  if (auto stop = ParseFlags(flags, args, kAbout, out, err)) return *stop;
  if (flags.GetInt("threads") < 1) {
    err << "error: --threads must be at least 1\n";
    return 2;
  }
  SetComputeThreads(static_cast<int>(flags.GetInt("threads")));
  auto result = Evaluate(flags);
  if (!result.ok()) return ReportError(result.status(), err);
  out << result->dump() << "\n";
  return 0;
}

}  // namespace alignd::cli
