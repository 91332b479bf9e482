// `alignd generate`: samples completions for a JSONL file of prompts with the rollout engine.
#include <ATen/Parallel.h>

#include <algorithm>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "cli/commands.h"
#include "common/base/cpu.h"
#include "common/base/file_util.h"
#include "common/base/flags.h"
#include "common/base/status.h"
#include "common/data/dataset.h"
#include "common/model/compute_threads.h"
#include "common/model/device.h"
#include "common/model/hf_model.h"
#include "common/model/peft.h"
#include "common/text/chat_template.h"
#include "common/text/model_chat_template.h"
#include "rollout/engine.h"

namespace alignd::cli {
namespace {

using Json = nlohmann::ordered_json;  // keys in the order written

// One prompt of the input file: the turns to render and the value echoed as "prompt" in the output.
struct PromptRecord {
  Turns turns;
  Json echo;
  int line = 0;
};

Json MessagesToJson(const std::vector<ChatMessage>& messages) {
  Json out = Json::array();
  for (const ChatMessage& m : messages) out.push_back({{"role", m.role}, {"content", m.content}});
  return out;
}

// Prompts from `prompt` (string or messages) records, or from `messages` records: the conversation up to its last
// non-assistant turn (so an SFT or eval file of full conversations can be used as prompts).
absl::StatusOr<std::vector<PromptRecord>> ReadPrompts(const std::string& path) {
  ASSIGN_OR_RETURN(Dataset data, ReadJsonl(path));
  if (data.schema == DatasetSchema::kText) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": generate reads \"prompt\" or \"messages\" records; this file has text records"));
  }
  std::vector<PromptRecord> prompts;
  prompts.reserve(data.records.size());
  for (Record& r : data.records) {
    PromptRecord p;
    p.line = r.line;
    if (data.schema == DatasetSchema::kMessages) {
      std::vector<ChatMessage> messages = std::move(r.messages);
      while (!messages.empty() && messages.back().role == "assistant") messages.pop_back();
      if (messages.empty()) {
        return absl::InvalidArgumentError(absl::StrCat(path, ":", r.line, ": \"messages\" has no turn to answer"));
      }
      p.echo = MessagesToJson(messages);
      p.turns = Turns::Messages(std::move(messages));
    } else {
      p.echo = r.prompt.conversational ? MessagesToJson(r.prompt.messages) : Json(r.prompt.text);
      p.turns = std::move(r.prompt);
    }
    prompts.push_back(std::move(p));
  }
  return prompts;
}

// Flags left unset take the model's generation_config.json value when it has one.
absl::StatusOr<rollout::SamplingParams> ParamsFromFlags(const FlagSet& flags, const GenerationConfig& generation) {
  rollout::SamplingParams params;
  params.max_new_tokens = flags.GetInt("max_new_tokens");
  params.temperature = flags.GetDouble("temperature");
  params.top_p = flags.GetDouble("top_p");
  params.top_k = flags.GetInt("top_k");
  if (!flags.IsSet("max_new_tokens") && generation.max_new_tokens) params.max_new_tokens = *generation.max_new_tokens;
  if (!flags.IsSet("temperature")) {
    if (generation.temperature) params.temperature = *generation.temperature;
    if (generation.do_sample && !*generation.do_sample) params.temperature = 0;
  }
  if (!flags.IsSet("top_p") && generation.top_p) params.top_p = *generation.top_p;
  if (!flags.IsSet("top_k") && generation.top_k) params.top_k = *generation.top_k;
  params.min_new_tokens = flags.GetInt("min_new_tokens");
  params.n = flags.GetInt("n");
  params.seed = static_cast<uint64_t>(flags.GetInt("seed"));
  RETURN_IF_ERROR(Annotate(rollout::ValidateSamplingParams(params), "flags"));
  return params;
}

// The template prompts are rendered with: --template when given, else the model's own when alignd renders it, else
// raw text when the model has none. Says which on `err`. FAILED_PRECONDITION for a model template alignd cannot render.
absl::StatusOr<std::string> ChooseTemplate(const FlagSet& flags, const std::string& model_dir, std::ostream& err) {
  if (flags.IsSet("template")) {
    err << "generate: prompts rendered with --template " << flags.GetString("template") << "\n";
    return flags.GetString("template");
  }
  ASSIGN_OR_RETURN(std::optional<std::string> jinja, ReadModelChatTemplate(model_dir));
  if (!jinja) {
    err << "generate: prompts rendered as raw text (the model has no chat template)\n";
    return std::string("raw");
  }
  std::optional<ChatTemplateMatch> match = MatchChatTemplate(*jinja);
  if (!match) {
    return absl::FailedPreconditionError(
        absl::StrCat(model_dir, ": the model's chat template is not one alignd renders; choose one with --template (",
                     absl::StrJoin(ChatTemplate::KnownNames(), ", "), ")"));
  }
  if (match->exact) {
    err << "generate: prompts rendered with the model's chat template (" << match->name << ")\n";
  } else {
    err << "generate: prompts rendered as " << match->name << ", the format of the model's chat template (its other "
        << "details, such as a default system message, are not applied; --template chooses another)\n";
  }
  return match->name;
}

absl::StatusOr<Json> Generate(const FlagSet& flags, std::ostream& err) {
  const std::string model_dir = flags.GetString("model"), prompts_path = flags.GetString("prompts"),
                    out_path = flags.GetString("out");
  ASSIGN_OR_RETURN(std::vector<PromptRecord> records, ReadPrompts(prompts_path));
  ASSIGN_OR_RETURN(torch::Device device, ResolveDevice(flags.GetString("device"), "--device"));
  LoadOptions load;
  load.device = device;
  ASSIGN_OR_RETURN(std::string chat_template, ChooseTemplate(flags, model_dir, err));
  ASSIGN_OR_RETURN(LoadedModel loaded, LoadModelDir(model_dir, load));
  ASSIGN_OR_RETURN(rollout::SamplingParams params, ParamsFromFlags(flags, loaded.generation));
  // A PEFT adapter folder (LoRA or bottleneck adapters, as alignd train writes to adapter/ or PEFT saves) on the base.
  std::unique_ptr<PeftModel> adapter;
  if (!flags.GetString("adapter").empty()) {
    absl::StatusOr<std::unique_ptr<PeftModel>> peft = PeftModel::Load(flags.GetString("adapter"), loaded.model);
    if (!peft.ok()) return Annotate(peft.status(), "--adapter");
    adapter = std::move(*peft);
    adapter->module().eval();
  }

  rollout::Engine::Options options;
  options.model = loaded.model;
  options.tokenizer = std::shared_ptr<const Tokenizer>(std::move(loaded.tokenizer));
  options.chat_template = chat_template;
  options.max_batch_rows = flags.GetInt("batch_size");
  ASSIGN_OR_RETURN(std::unique_ptr<rollout::Engine> engine, rollout::Engine::Create(std::move(options)));
  std::vector<int32_t> stops = engine->default_stop_token_ids();
  if (loaded.generation.eos_token_id) {
    auto eos = static_cast<int32_t>(*loaded.generation.eos_token_id);
    if (std::find(stops.begin(), stops.end(), eos) == stops.end()) stops.push_back(eos);
  }
  params.stop_token_ids = stops;

  std::vector<std::vector<int32_t>> prompts;
  prompts.reserve(records.size());
  const int64_t context = loaded.config.max_position_embeddings;
  for (const PromptRecord& r : records) {
    prompts.push_back(engine->EncodePrompt(r.turns));
    if (static_cast<int64_t>(prompts.back().size()) + params.max_new_tokens > context) {
      return absl::InvalidArgumentError(absl::StrCat(
          prompts_path, ":", r.line, ": the prompt has ", prompts.back().size(), " tokens; with --max-new-tokens ",
          params.max_new_tokens, " it exceeds the model context of ", context, " tokens"));
    }
  }
  rollout::GenerateStats stats;
  ASSIGN_OR_RETURN(std::vector<rollout::Sample> samples, engine->Generate(prompts, params, &stats));

  std::string lines;
  for (const rollout::Sample& s : samples) {
    Json line;
    line["index"] = s.prompt_index;
    line["sample"] = s.sample_index;
    line["prompt"] = records[static_cast<size_t>(s.prompt_index)].echo;
    line["completion"] = s.text;
    line["token_ids"] = s.token_ids;
    line["logprobs"] = s.logprobs;
    line["finish_reason"] = std::string(rollout::FinishReasonName(s.finish_reason));
    // A completion cut inside a multi-byte character is not valid UTF-8; JSON gets U+FFFD in its place.
    absl::StrAppend(&lines, line.dump(-1, ' ', false, Json::error_handler_t::replace), "\n");
  }
  RETURN_IF_ERROR(WriteFileAtomic(out_path, lines));

  const double seconds = stats.prefill_seconds + stats.decode_seconds;
  Json summary;
  summary["out"] = out_path;
  summary["prompts"] = prompts.size();
  summary["samples"] = samples.size();
  summary["generated_tokens"] = stats.generated_tokens;
  summary["seconds"] = seconds;
  summary["tokens_per_second"] = seconds > 0 ? static_cast<double>(stats.generated_tokens) / seconds : 0.0;
  return summary;
}

}  // namespace

int RunGenerate(const Args& args, std::ostream& out, std::ostream& err) {
  FlagSet flags("alignd generate --model DIR --prompts FILE.jsonl --out FILE.jsonl [flags]");
  flags.String("model", "", "Hugging Face model folder (config.json, safetensors, tokenizer.json)");
  flags.String("prompts", "", "JSONL with a \"prompt\" (string or messages) or \"messages\" key per line");
  flags.String("out", "", "JSONL to write, one line per sample (written atomically)");
  flags.Int("max_new_tokens", 128, "tokens to generate per sample at most (unset: generation_config.json, then this)");
  flags.Int("min_new_tokens", 0, "tokens before a stop token may end a sample");
  flags.Double("temperature", 1.0, "softmax temperature; 0 = greedy (unset: generation_config.json, then this)");
  flags.Double("top_p", 1.0, "nucleus sampling mass in (0, 1]; 1 = off (unset: generation_config.json, then this)");
  flags.Int("top_k", 0, "sample among the k most likely tokens; 0 = off (unset: generation_config.json, then this)");
  flags.Int("n", 1, "samples per prompt");
  flags.Int("seed", 0, "random seed; the same seed gives the same samples");
  flags.String("template", "",
               "chat template for the prompts: chatml, llama3, plain or raw (default: the model's own "
               "from its tokenizer_config.json, or raw text when it has none)");
  flags.String("adapter", "",
               "PEFT adapter folder (adapter_config.json + adapter_model.safetensors) applied to --model");
  flags.Int("batch_size", 8, "rows (prompts x n) decoded together");
  flags.String("device", "cpu", "cpu, cuda or cuda:N");
  flags.Int("threads", AvailableCores(), "intra-op threads (default: the cores available)");
  absl::Status parsed = flags.Parse(args);
  if (!parsed.ok()) {
    err << "error: " << parsed.message() << "\n" << flags.Usage();
    return 2;
  }
  if (flags.help_requested()) {
    out << "Samples completions for each prompt and writes them with their token ids and log-probs as JSONL.\n"
        << "Prompts are rendered with the model's chat template (raw text when it has none) unless --template "
           "says otherwise; stderr says which.\n"
        << flags.Usage();
    return 0;
  }
  for (const char* required : {"model", "prompts", "out"}) {
    if (flags.GetString(required).empty()) {
      err << "error: --" << required << " is required\n" << flags.Usage();
      return 2;
    }
  }
  if (flags.GetInt("threads") < 1) {
    err << "error: --threads must be at least 1\n";
    return 2;
  }
  SetComputeThreads(static_cast<int>(flags.GetInt("threads")));
  auto summary = Generate(flags, err);
  if (!summary.ok()) return ReportError(summary.status(), err);
  out << summary->dump() << "\n";
  return 0;
}

}  // namespace alignd::cli
