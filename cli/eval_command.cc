#include <ATen/Parallel.h>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "cli/commands.h"
#include "common/dataset.h"
#include "common/flags.h"
#include "common/hf_model.h"
#include "common/perplexity.h"

namespace alignd::cli {
namespace {

constexpr const char* kSupportedMetrics[] = {"perplexity"};

absl::StatusOr<torch::ScalarType> ParseDtype(const std::string& name) {
  if (name == "float32") return torch::kFloat;
  if (name == "bfloat16") return torch::kBFloat16;
  if (name == "float64") return torch::kDouble;
  return absl::InvalidArgumentError(absl::StrCat("--dtype must be float32, bfloat16 or float64, got \"", name, "\""));
}

absl::StatusOr<nlohmann::json> Evaluate(const FlagSet& flags) {
  std::vector<std::string> metrics = absl::StrSplit(flags.GetString("metrics"), ',', absl::SkipEmpty());
  if (metrics.empty()) return absl::InvalidArgumentError("--metrics is empty");
  for (const std::string& m : metrics) {
    if (std::find(std::begin(kSupportedMetrics), std::end(kSupportedMetrics), m) == std::end(kSupportedMetrics)) {
      return absl::InvalidArgumentError(absl::StrCat("--metrics: unknown metric \"", m, "\"; supported: ",
                                                     absl::StrJoin(kSupportedMetrics, ", ")));
    }
  }
  if (flags.GetString("model").empty()) return absl::InvalidArgumentError("--model is required");
  if (flags.GetString("data").empty()) return absl::InvalidArgumentError("--data is required");
  if (flags.GetInt("batch_size") < 1) return absl::InvalidArgumentError("--batch_size must be at least 1");
  auto dtype = ParseDtype(flags.GetString("dtype"));
  if (!dtype.ok()) return dtype.status();

  auto data = ReadJsonl(flags.GetString("data"));
  if (!data.ok()) return data.status();
  if (data->schema != DatasetSchema::kText) {
    return absl::InvalidArgumentError(absl::StrCat(data->source, ": perplexity reads \"text\" records; this file has ",
                                                   SchemaName(data->schema), " records"));
  }
  LoadOptions load;
  load.dtype = *dtype;
  auto model = LoadModelDir(flags.GetString("model"), load);
  if (!model.ok()) return model.status();

  std::vector<std::string> texts;
  texts.reserve(data->records.size());
  const int64_t limit = flags.GetInt("max_records");
  for (const Record& r : data->records) {
    if (limit > 0 && static_cast<int64_t>(texts.size()) >= limit) break;
    texts.push_back(r.text);
  }
  PerplexityOptions options;
  options.batch_size = flags.GetInt("batch_size");
  options.max_length = flags.GetInt("max_length");
  auto ppl = ComputePerplexity(*model->model, *model->tokenizer, texts, options);
  if (!ppl.ok()) return ppl.status();
  nlohmann::json result;
  result["perplexity"] = ppl->perplexity;
  result["tokens"] = ppl->tokens;
  result["nll"] = ppl->nll;
  result["texts"] = ppl->texts;
  result["model"] = flags.GetString("model");
  result["architecture"] = model->config.architecture;
  return result;
}

}  // namespace

int RunEval(const Args& args, std::ostream& out, std::ostream& err) {
  FlagSet flags("alignd eval --model DIR --data FILE.jsonl [--metrics perplexity] [flags]");
  flags.String("model", "", "Hugging Face model folder (config.json, safetensors, tokenizer.json)");
  flags.String("data", "", "JSONL file with a \"text\" key per line");
  flags.String("metrics", "perplexity", "comma-separated metrics: perplexity");
  flags.Int("max_records", 0, "score only the first N records (0: all)");
  flags.Int("batch_size", 8, "sequences per forward pass");
  flags.Int("max_length", 0, "split longer texts into windows of this many tokens (0: the model's context)");
  flags.String("dtype", "float32", "compute dtype: float32, bfloat16 or float64");
  flags.Int("threads", AvailableCores(), "intra-op threads (default: the cores available)");
  constexpr char kAbout[] =
      "Evaluates a model folder on a data file and prints the metrics as one JSON object.";
  if (auto stop = ParseFlags(flags, args, kAbout, out, err)) return *stop;
  if (flags.GetInt("threads") < 1) {
    err << "error: --threads must be at least 1\n";
    return 2;
  }
  at::set_num_threads(static_cast<int>(flags.GetInt("threads")));
  auto result = Evaluate(flags);
  if (!result.ok()) return ReportError(result.status(), err);
  out << result->dump() << "\n";
  return 0;
}

}  // namespace alignd::cli
