// Learner throughput and memory on realistic data: SFT or DPO steps of alignd's real trainer (learner::RunTraining) on
// variable-length records (bench/reference/var_data.py) with a ~19M-parameter Llama-style model whose vocabulary is
// 32,000 entries, as in real tokenizers, so that the LM head is a large share of the work. One case per process, so
// that its peak memory is its own; bench/reference/learner_var_ref.py is the TRL twin and scripts/bench runs both.
//
//   learner_var_bench --data=DIR --algo=sft|dpo --padding_free=0|1 [--threads=N] [--reps=N] [--warmup=N] [--smoke]
//                     [--out=FILE]
//
// Figures, named <algo>_<padded|padding_free>_...:
//   tokens_per_s     per measured step: the step's input tokens (prompt and response of every sequence, no padding:
//                    the trainer's train/input_tokens, TRL's num_tokens) / the step's wall time, between two on_step
//                    callbacks as in learner_bench.cc;
//   peak_rss_mb      the process's peak resident set (VmHWM) after the run;
//   step_memory_mb   peak_rss_mb minus the resident set just before RunTraining: what the job added (weights, AdamW
//                    state, gradients, activations, logits), without the runtime's own libraries.
#include <filesystem>
#include <string>
#include <vector>

#include "bench/bench_train.h"
#include "bench/bench_util.h"
#include "common/model/compute_threads.h"
#include "learner/trainer.h"
#include "spec/job_spec.h"

namespace alignd::bench {

namespace fs = std::filesystem;

int Main(int argc, char** argv) {
  Args args = ParseArgs(argc, argv);
  const std::string data = args.Str("data", "");
  const std::string algo = args.Str("algo", "sft");
  const bool padding_free = args.Int("padding_free", 0) != 0;
  if (data.empty() || (algo != "sft" && algo != "dpo")) Die("--data=DIR and --algo=sft|dpo are required");
  SetComputeThreads(args.threads);
  Report report("learner_var", args);

  JobSpec spec;
  spec.name = "learner-var-bench";
  spec.algorithm = algo == "sft" ? Algorithm::kSft : Algorithm::kDpo;
  spec.seed = 1;
  spec.threads = args.threads;
  spec.model.init_arch = "llama";
  spec.model.init_hidden_size = args.smoke ? 64 : 384;
  spec.model.init_layers = args.smoke ? 2 : 4;
  spec.model.init_heads = args.smoke ? 4 : 6;
  spec.model.init_kv_heads = 2;
  spec.model.init_max_positions = 512;
  spec.model.init_vocab_size = args.smoke ? 4096 : 32000;
  spec.data.train = data + (algo == "sft" ? "/sft.jsonl" : "/dpo.jsonl");
  spec.data.chat_template = "raw";
  spec.data.max_length = 512;
  spec.data.max_prompt_length = 256;
  spec.data.padding_free = padding_free;
  spec.train.steps = 1 + args.warmup + args.reps;
  spec.train.batch_size = algo == "sft" ? 8 : 4;
  SetBenchTraining(&spec);
  spec.train.log_every = 1;

  std::string dir = (fs::temp_directory_path() / "learner_var_bench.XXXXXX").string();
  if (mkdtemp(dir.data()) == nullptr) Die("mkdtemp failed");
  spec.output_dir = dir + "/out";

  const std::string mode = padding_free ? "padding_free" : "padded";
  nlohmann::json& config = report.config();
  config["algo"] = algo;
  config["mode"] = mode;
  config["batch"] = spec.train.batch_size;
  config["model"] = {{"vocab", spec.model.init_vocab_size},  {"hidden", spec.model.init_hidden_size},
                     {"layers", spec.model.init_layers},     {"heads", spec.model.init_heads},
                     {"kv_heads", spec.model.init_kv_heads}, {"tie_word_embeddings", true}};

  const double rss_before = ProcStatusMb("VmRSS");
  std::vector<double> at, tokens;
  learner::TrainOptions options;
  options.on_step = [&](int64_t, const learner::Metrics& m) {
    at.push_back(NowSeconds());
    auto it = m.find("train/input_tokens");
    if (it == m.end()) Die("the trainer reported no train/input_tokens");
    tokens.push_back(it->second);
  };
  auto result = learner::RunTraining(spec, options);
  if (!result.ok()) Die(algo + ": " + result.status().ToString());
  const double peak = ProcStatusMb("VmHWM");
  fs::remove_all(dir);

  std::vector<double> rates;
  for (size_t i = 1 + static_cast<size_t>(args.warmup); i < at.size(); ++i) {
    rates.push_back(tokens[i] / (at[i] - at[i - 1]));
  }
  const std::string name = algo + "_" + mode;
  report.Add(name + "_tokens_per_s", "tokens/s", rates, true,
             "input tokens of the step (no padding) / step wall time; " + algo + " batch " +
                 std::to_string(spec.train.batch_size) +
                 (padding_free ? ", one padding-free row per step" : ", padded to the batch's longest"));
  report.Add(name + "_peak_rss_mb", "MiB", {peak}, false, "VmHWM of the process after the run");
  report.Add(name + "_step_memory_mb", "MiB", {peak - rss_before}, false,
             "peak resident set minus the resident set before RunTraining");
  return report.Write();
}

}  // namespace alignd::bench

int main(int argc, char** argv) { return alignd::bench::Main(argc, argv); }
