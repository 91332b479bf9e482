// What every alignd benchmark binary shares: its flags, timing repeated runs, and the JSON file it writes for
// scripts/bench (bench/report.py merges the files, takes medians and prints the table). Torch-free.
//
// Flags every benchmark accepts:
//   --threads=N   LibTorch intra-op threads (default: alignd::AvailableCores()); the binary calls at::set_num_threads.
//   --reps=N      measured repetitions of each figure (default 5); each sample is one repetition
//   --warmup=N    unmeasured repetitions first (default 2)
//   --smoke       tiny sizes and one repetition: proves the benchmark runs, measures nothing worth reading
//   --out=FILE    where to write the JSON (default: print it to stdout)
//
// The JSON (one object per binary):
//   {"component": "learner", "config": {...free-form: sizes, threads...},
//    "figures": {"sft_1m_tokens_per_s": {"unit": "tokens/s", "samples": [..], "higher_is_better": true,
//                                        "note": "..."}, ...}}
// Samples are raw per-repetition values; report.py computes median, min and max.
#ifndef ALIGND_BENCH_BENCH_UTIL_H_
#define ALIGND_BENCH_BENCH_UTIL_H_

#include <errno.h>  // program_invocation_short_name (glibc)

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/base/cpu.h"
#include "common/model/model_config.h"

namespace alignd::bench {

struct Args {
  int threads = 0;  // resolved to AvailableCores() by Parse
  int reps = 5;
  int warmup = 2;
  bool smoke = false;
  std::string out;
  std::map<std::string, std::string> extra;  // --key=value flags this header does not know, for the binary to read

  // A binary's own --name=value flag from `extra`, or `fallback` when absent; exits naming the flag when an integer
  // flag does not parse.
  int64_t Int(const std::string& name, int64_t fallback) const {
    auto it = extra.find(name);
    if (it == extra.end()) return fallback;
    char* end = nullptr;
    long long v = std::strtoll(it->second.c_str(), &end, 10);
    if (it->second.empty() || *end != '\0') {
      std::fprintf(stderr, "%s: --%s wants an integer, got '%s'\n", program_invocation_short_name, name.c_str(),
                   it->second.c_str());
      std::exit(2);
    }
    return v;
  }
  std::string Str(const std::string& name, const std::string& fallback) const {
    auto it = extra.find(name);
    return it == extra.end() ? fallback : it->second;
  }
};

// Prints "<binary>: what" and exits 1: a benchmark that cannot measure what it says stops rather than report.
[[noreturn]] inline void Die(const std::string& what) {
  std::fprintf(stderr, "%s: %s\n", program_invocation_short_name, what.c_str());
  std::exit(1);
}

// Parses argv; exits with a message on a malformed known flag. Unknown --key=value flags land in Args::extra.
inline Args ParseArgs(int argc, char** argv) {
  Args a;
  a.threads = AvailableCores();
  for (int i = 1; i < argc; ++i) {
    std::string s = argv[i];
    auto value = [&](const char* name) -> const char* {
      size_t n = std::strlen(name);
      return s.compare(0, n, name) == 0 ? s.c_str() + n : nullptr;
    };
    auto as_int = [&](const char* v, const char* name) {
      char* end = nullptr;
      long x = std::strtol(v, &end, 10);
      if (*v == '\0' || *end != '\0' || x < 0) {
        std::fprintf(stderr, "%s: %s wants a non-negative integer, got '%s'\n", argv[0], name, v);
        std::exit(2);
      }
      return static_cast<int>(x);
    };
    if (const char* v = value("--threads=")) {
      a.threads = std::max(1, as_int(v, "--threads"));
    } else if (const char* v = value("--reps=")) {
      a.reps = std::max(1, as_int(v, "--reps"));
    } else if (const char* v = value("--warmup=")) {
      a.warmup = as_int(v, "--warmup");
    } else if (s == "--smoke") {
      a.smoke = true;
    } else if (const char* v = value("--out=")) {
      a.out = v;
    } else if (s.compare(0, 2, "--") == 0 && s.find('=') != std::string::npos) {
      size_t eq = s.find('=');
      a.extra[s.substr(2, eq - 2)] = s.substr(eq + 1);
    } else {
      std::fprintf(stderr, "%s: unknown argument '%s'\n", argv[0], s.c_str());
      std::exit(2);
    }
  }
  if (a.smoke) {
    a.reps = 1;
    a.warmup = 0;
  }
  return a;
}

// A /proc/self/status field in MiB ("VmRSS", the resident set now; "VmHWM", its peak so far). Exits when absent.
inline double ProcStatusMb(const std::string& field) {
  std::ifstream in("/proc/self/status");
  for (std::string line; std::getline(in, line);) {
    if (line.compare(0, field.size() + 1, field + ":") == 0) return std::stod(line.substr(field.size() + 1)) / 1024;
  }
  Die("no " + field + " in /proc/self/status");
}

inline double NowSeconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// amount / each of `seconds`: a rate per sample.
inline std::vector<double> Rates(const std::vector<double>& seconds, double amount) {
  std::vector<double> out;
  for (double s : seconds) out.push_back(amount / s);
  return out;
}

// FLOPs of one training step over `rows` sequences of `t` tokens: 6 * N * tokens for the weight matmuls (N = every
// parameter that multiplies an activation: the projections and the (tied) LM head; not the embedding lookup or the
// norms), plus the attention scores and weighted sum, 4 * layers * t^2 * hidden per row forward, 3x for forward and
// backward. Attention with alignd's explicit mask computes the full t x t matrix, so the causal half is not
// discounted. learner_bench and gpu_check both count this way.
inline double StepFlops(const ModelConfig& c, int64_t rows, int64_t t) {
  const double n = static_cast<double>(c.NumParameters() - (2 * c.num_layers + 1) * c.hidden_size);
  const double tokens = static_cast<double>(rows * t);
  const double attention = 12.0 * static_cast<double>(c.num_layers * t * c.num_heads * c.head_dim) * tokens;
  return 6.0 * n * tokens + attention;
}

// Runs fn warmup times unmeasured, then reps times, returning each repetition's wall seconds.
inline std::vector<double> TimeRepeated(const Args& a, const std::function<void()>& fn) {
  for (int i = 0; i < a.warmup; ++i) fn();
  std::vector<double> seconds;
  for (int i = 0; i < a.reps; ++i) {
    double t0 = NowSeconds();
    fn();
    seconds.push_back(NowSeconds() - t0);
  }
  return seconds;
}

// Collects figures and writes the JSON described above.
class Report {
 public:
  Report(std::string component, const Args& args) : args_(args) {
    json_["component"] = std::move(component);
    json_["config"] = nlohmann::json::object();
    json_["config"]["threads"] = args.threads;
    json_["config"]["reps"] = args.reps;
    json_["config"]["warmup"] = args.warmup;
    json_["config"]["smoke"] = args.smoke;
    json_["figures"] = nlohmann::json::object();
  }
  nlohmann::json& config() { return json_["config"]; }
  void Add(const std::string& name, const std::string& unit, const std::vector<double>& samples, bool higher_is_better,
           const std::string& note = "") {
    nlohmann::json f;
    f["unit"] = unit;
    f["samples"] = samples;
    f["higher_is_better"] = higher_is_better;
    if (!note.empty()) f["note"] = note;
    json_["figures"][name] = f;
    std::vector<double> sorted = samples;
    std::sort(sorted.begin(), sorted.end());
    double median = sorted.empty() ? 0 : sorted[sorted.size() / 2];
    std::fprintf(stderr, "  %-40s %14.4g %s (n=%zu)\n", name.c_str(), median, unit.c_str(), samples.size());
  }
  // Writes to --out, or stdout. Returns the process exit code.
  int Write() const {
    std::string text = json_.dump(2) + "\n";
    if (args_.out.empty()) {
      std::cout << text;
      return 0;
    }
    std::ofstream f(args_.out);
    f << text;
    f.close();
    if (!f) {
      std::fprintf(stderr, "cannot write %s\n", args_.out.c_str());
      return 1;
    }
    return 0;
  }

 private:
  Args args_;
  nlohmann::json json_;
};

}  // namespace alignd::bench

#endif  // ALIGND_BENCH_BENCH_UTIL_H_
