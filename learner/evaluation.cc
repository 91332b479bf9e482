#include "learner/evaluation.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/base/status.h"
#include "common/model/device.h"
#include "reward/registry.h"
#include "reward/rules.h"
#include "rollout/engine.h"
#include "rollout/logprob_gap.h"

namespace alignd::learner {
namespace {

constexpr int64_t kRepetitionN = 3;

bool Wants(const GenerationEvalOptions& options, absl::string_view metric) {
  return std::find(options.metrics.begin(), options.metrics.end(), metric) != options.metrics.end();
}

absl::Status Validate(const std::vector<Record>& records, const GenerationEvalModels& models,
                      const GenerationEvalOptions& options) {
  if (records.empty()) return absl::InvalidArgumentError("records: no prompts to evaluate");
  if (options.metrics.empty()) return absl::InvalidArgumentError("metrics: empty");
  for (const std::string& m : options.metrics) {
    if (!IsGenerationMetric(m)) {
      return absl::InvalidArgumentError(absl::StrCat("metrics: unknown generation metric \"", m,
                                                     "\"; known: ", absl::StrJoin(GenerationMetricNames(), ", ")));
    }
  }
  if (options.max_new_tokens < 1) {
    return absl::InvalidArgumentError(absl::StrCat("max_new_tokens must be >= 1, got ", options.max_new_tokens));
  }
  if (options.batch_size < 1) {
    return absl::InvalidArgumentError(absl::StrCat("batch_size must be >= 1, got ", options.batch_size));
  }
  if (!models.policy) return absl::InvalidArgumentError("policy: no model");
  if (!models.tokenizer) return absl::InvalidArgumentError("tokenizer: none given");
  for (const char* m : {"kl_to_ref", "win_rate"}) {
    if (Wants(options, m) && !models.reference) {
      return absl::InvalidArgumentError(absl::StrCat("reference: ", m, " needs a reference model"));
    }
  }
  if (models.reference && models.reference->config().vocab_size != models.policy->config().vocab_size) {
    return absl::InvalidArgumentError(absl::StrCat("reference: vocabulary of ", models.reference->config().vocab_size,
                                                   " tokens differs from the policy's ",
                                                   models.policy->config().vocab_size));
  }
  if (Wants(options, "reward_mean") && models.reward == nullptr) {
    return absl::InvalidArgumentError("reward: reward_mean needs a reward function");
  }
  if (Wants(options, "win_rate") && models.judge == nullptr) {
    return absl::InvalidArgumentError("judge: win_rate needs a judge");
  }
  if (const auto& given = options.reference_answers) {
    if (given->completions.size() != records.size() || given->judge_scores.size() != records.size()) {
      return absl::InvalidArgumentError(absl::StrCat("reference_answers: ", given->completions.size(), " answers and ",
                                                     given->judge_scores.size(), " judge scores for ", records.size(),
                                                     " records"));
    }
  }
  return absl::OkStatus();
}

// Greedy answers of `model` to `prompt_ids`, one Sample per prompt.
absl::StatusOr<std::vector<rollout::Sample>> Answer(const CausalLM& model, const GenerationEvalModels& models,
                                                    const GenerationEvalOptions& options,
                                                    const std::vector<std::vector<int32_t>>& prompt_ids) {
  rollout::Engine::Options eo;
  eo.model = model;
  eo.tokenizer = models.tokenizer;
  eo.chat_template = options.chat_template;
  eo.max_batch_rows = options.batch_size;
  ASSIGN_OR_RETURN(std::unique_ptr<rollout::Engine> engine, rollout::Engine::Create(std::move(eo)));
  rollout::SamplingParams params;
  params.temperature = 0;
  params.max_new_tokens = options.max_new_tokens;
  return engine->Generate(prompt_ids, params);
}

std::optional<double> Mean(double sum, int64_t n) {
  return n > 0 ? std::optional<double>(sum / static_cast<double>(n)) : std::nullopt;
}

// `models` by value: CausalLM handles give mutable access only when not const.
absl::StatusOr<GenerationEvalResult> Evaluate(const std::vector<Record>& records, GenerationEvalModels models,
                                              const GenerationEvalOptions& options) {
  torch::NoGradGuard no_grad;
  models.policy->eval();
  if (models.reference) models.reference->eval();
  const bool own_reference = models.reference && models.reference.get() == models.policy.get();

  // Prompt ids as the engine renders them; an engine only for that, so both models see identical prompts.
  rollout::Engine::Options eo;
  eo.model = models.policy;
  eo.tokenizer = models.tokenizer;
  eo.chat_template = options.chat_template;
  ASSIGN_OR_RETURN(std::unique_ptr<rollout::Engine> renderer, rollout::Engine::Create(std::move(eo)));
  std::vector<std::vector<int32_t>> prompt_ids;
  for (const Record& r : records) {
    prompt_ids.push_back(renderer->EncodePrompt(r.prompt));
  }
  renderer.reset();

  ASSIGN_OR_RETURN(std::vector<rollout::Sample> samples, Answer(models.policy, models, options, prompt_ids));
  GenerationEvalResult result;
  result.n_prompts = static_cast<int64_t>(records.size());
  result.prompts.resize(records.size());
  std::vector<reward::ScoreInput> inputs;
  for (size_t i = 0; i < records.size(); ++i) {
    PromptEval& p = result.prompts[i];
    inputs.push_back(reward::InputFor(records[i], samples[i].text));
    p.fields = inputs.back().fields;
    p.completion = samples[i].text;
    p.completion_tokens = static_cast<int64_t>(samples[i].token_ids.size());
    if (Wants(options, "repetition")) p.repetition = reward::RepeatedNgramFraction(p.completion, kRepetitionN);
  }
  // The task metrics: the registry's scorers (reward/registry.h TaskMetric), each over the records it applies to.
  std::vector<std::string> task_names;
  for (const std::string& m : options.metrics) {
    if (reward::DefaultRegistry().FindMetric(m) != nullptr) task_names.push_back(m);
  }
  ASSIGN_OR_RETURN(auto task, reward::ScoreTaskMetrics(task_names, inputs));
  for (const auto& [name, values] : task) {
    for (size_t i = 0; i < records.size(); ++i) {
      if (values[i].has_value()) result.prompts[i].task[name] = *values[i];
    }
    const reward::Mean mean = reward::MeanOfSet(values);
    result.metrics[name] = mean.mean;
    result.n_scored[name] = mean.n;
  }

  if (Wants(options, "reward_mean")) {
    ASSIGN_OR_RETURN(std::vector<reward::ScoreResult> scored, models.reward->Score(inputs));
    for (size_t i = 0; i < records.size(); ++i) {
      result.prompts[i].reward = scored[i].total;
      result.prompts[i].reward_parts = scored[i].parts;
    }
    result.reward_parts = reward::PartMeans(scored);
  }
  if (Wants(options, "kl_to_ref")) {
    // Both sides through the same full forward pass (not the engine's cached log-probs), so a model that is its own
    // reference gives exactly 0.
    ASSIGN_OR_RETURN(auto policy_lp,
                     rollout::RecomputeLogProbs(*models.policy, prompt_ids, samples, options.batch_size));
    std::vector<std::vector<float>> other_lp;
    if (!own_reference) {
      ASSIGN_OR_RETURN(other_lp,
                       rollout::RecomputeLogProbs(*models.reference, prompt_ids, samples, options.batch_size));
    }
    const std::vector<std::vector<float>>& reference_lp = own_reference ? policy_lp : other_lp;
    for (size_t i = 0; i < records.size(); ++i) {
      double kl = 0;
      for (size_t t = 0; t < policy_lp[i].size(); ++t) kl += double{policy_lp[i][t]} - double{reference_lp[i][t]};
      result.prompts[i].kl = kl;
    }
  }
  if (Wants(options, "win_rate")) {
    ASSIGN_OR_RETURN(std::vector<reward::ScoreResult> scored, models.judge->Score(inputs));
    std::vector<double> mine, theirs;
    for (const reward::ScoreResult& s : scored) mine.push_back(s.total);
    std::vector<std::string> ref_text;
    if (options.reference_answers) {
      ref_text = options.reference_answers->completions;
      theirs = options.reference_answers->judge_scores;
    } else if (own_reference) {
      for (const rollout::Sample& s : samples) ref_text.push_back(s.text);
      theirs = mine;
    } else {
      ASSIGN_OR_RETURN(std::vector<rollout::Sample> ref_samples, Answer(models.reference, models, options, prompt_ids));
      std::vector<reward::ScoreInput> ref_inputs;
      for (size_t i = 0; i < records.size(); ++i) {
        ref_text.push_back(ref_samples[i].text);
        ref_inputs.push_back(reward::InputFor(records[i], ref_text.back()));
      }
      ASSIGN_OR_RETURN(std::vector<reward::ScoreResult> ref_scored, models.judge->Score(ref_inputs));
      for (const reward::ScoreResult& s : ref_scored) theirs.push_back(s.total);
    }
    for (size_t i = 0; i < records.size(); ++i) {
      PromptEval& p = result.prompts[i];
      p.reference_completion = ref_text[i];
      p.judge_policy = mine[i];
      p.judge_reference = theirs[i];
      p.win = mine[i] > theirs[i] ? 1.0 : mine[i] == theirs[i] ? 0.5 : 0.0;
    }
  }

  double reward = 0, kl = 0, win = 0, repetition = 0;
  for (const PromptEval& p : result.prompts) {
    reward += p.reward.value_or(0);
    kl += p.kl.value_or(0);
    win += p.win.value_or(0);
    repetition += p.repetition.value_or(0);
  }
  const std::map<std::string, std::optional<double>> all = {
      {"reward_mean", Mean(reward, result.n_prompts)},
      {"kl_to_ref", Mean(kl, result.n_prompts)},
      {"win_rate", Mean(win, result.n_prompts)},
      {"repetition", Mean(repetition, result.n_prompts)},
  };
  for (const std::string& m : options.metrics) {
    if (all.count(m)) result.metrics[m] = all.at(m);
  }
  return result;
}

}  // namespace

const std::vector<std::string>& GenerationMetricNames() {
  static const auto* const kNames = [] {
    auto* names = new std::vector<std::string>(reward::DefaultRegistry().MetricNames());
    for (const char* m : {"reward_mean", "kl_to_ref", "win_rate", "repetition"}) names->push_back(m);
    return names;
  }();
  return *kNames;
}

bool IsGenerationMetric(absl::string_view name) {
  const std::vector<std::string>& names = GenerationMetricNames();
  return std::find(names.begin(), names.end(), name) != names.end();
}

nlohmann::json PromptEval::ToJson() const {
  nlohmann::json j;
  j["fields"] = fields;
  j["completion"] = completion;
  j["completion_tokens"] = completion_tokens;
  j["task"] = task;
  if (reward) j["reward"] = *reward;
  if (reward) j["reward_parts"] = reward_parts;
  if (kl) j["kl"] = *kl;
  if (repetition) j["repetition"] = *repetition;
  if (reference_completion) j["reference_completion"] = *reference_completion;
  if (judge_policy) j["judge_policy"] = *judge_policy;
  if (judge_reference) j["judge_reference"] = *judge_reference;
  if (win) j["win"] = *win;
  return j;
}

absl::StatusOr<GenerationEvalResult> EvaluateGeneration(const std::vector<Record>& records,
                                                        const GenerationEvalModels& models,
                                                        const GenerationEvalOptions& options) {
  RETURN_IF_ERROR(Validate(records, models, options));
  try {
    return Evaluate(records, models, options);
  } catch (const c10::Error& e) {
    return TorchErrorStatus(e, "evaluation");
  }
}

}  // namespace alignd::learner
