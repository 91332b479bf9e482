#include <ATen/Parallel.h>

#include "absl/strings/str_cat.h"
#include "cli/commands.h"
#include "common/base/cpu.h"
#include "common/base/flags.h"
#include "common/model/compute_threads.h"
#include "common/model/hf_model.h"

namespace alignd::cli {

int RunInit(const Args& args, std::ostream& out, std::ostream& err) {
  FlagSet flags("alignd init --out DIR [--arch llama|qwen2|gpt2] [sizes] [--seed N]");
  flags.String("out", "", "folder to write the new model to (a Hugging Face model folder)");
  flags.String("arch", "llama", "llama, qwen2 or gpt2");
  flags.Int("hidden_size", 128, "model width");
  flags.Int("layers", 4, "transformer blocks");
  flags.Int("heads", 4, "attention heads");
  flags.Int("kv_heads", 2, "key/value heads (Llama family; must divide --heads)");
  flags.Int("max_positions", 512, "context length");
  flags.Int("seed", 0, "initialisation seed");
  flags.String("dtype", "F32", "dtype on disk: F32, F16 or BF16");
  flags.Int("threads", AvailableCores(), "intra-op threads (default: the cores available)");
  constexpr char kAbout[] = "Initialises a tiny model with alignd's byte-level tokenizer, as a Hugging Face folder.";
  if (auto stop = ParseFlags(flags, args, kAbout, out, err)) return *stop;
  if (flags.GetString("out").empty()) {
    err << "error: --out is required\n" << flags.Usage();
    return 2;
  }
  SetComputeThreads(static_cast<int>(std::max<int64_t>(1, flags.GetInt("threads"))));
  auto tokenizer = MakeByteTokenizer();
  const std::string arch = flags.GetString("arch");
  ModelConfig config;
  if (arch == "gpt2") {
    config = TinyGpt2Config(tokenizer->vocab_size(), flags.GetInt("hidden_size"), flags.GetInt("layers"),
                            flags.GetInt("heads"), flags.GetInt("max_positions"));
  } else if (arch == "llama" || arch == "qwen2") {
    config = TinyLlamaConfig(tokenizer->vocab_size(), flags.GetInt("hidden_size"), flags.GetInt("layers"),
                             flags.GetInt("heads"), flags.GetInt("kv_heads"), flags.GetInt("max_positions"));
    if (arch == "qwen2") {
      config.model_type = "qwen2";
      config.architecture = "Qwen2ForCausalLM";
      config.attention_bias = true;
    }
  } else {
    return ReportError(
        absl::InvalidArgumentError(absl::StrCat("--arch must be llama, qwen2 or gpt2, got \"", arch, "\"")), err);
  }
  if (flags.GetInt("heads") > 0) config.head_dim = config.hidden_size / flags.GetInt("heads");
  config.bos_token_id = tokenizer->bos_id();
  config.eos_token_id = tokenizer->eos_id();
  config.pad_token_id = tokenizer->pad_id();
  absl::Status valid = config.Validate();
  if (!valid.ok()) return ReportError(valid, err);
  auto dtype = safetensors::ParseDtype(flags.GetString("dtype"));
  if (!dtype.ok()) return ReportError(dtype.status(), err);
  SaveOptions save;
  save.dtype = *dtype;
  CausalLM model(config);
  model->InitWeights(static_cast<uint64_t>(flags.GetInt("seed")));
  absl::Status s = SaveModelDir(flags.GetString("out"), *model, tokenizer.get(), {}, save);
  if (!s.ok()) return ReportError(s, err);
  out << "initialised " << config.architecture << " with " << config.NumParameters() << " parameters in "
      << flags.GetString("out") << "\n";
  return 0;
}

}  // namespace alignd::cli
