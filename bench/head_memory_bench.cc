// What computing the LM head only where the loss is saves: the loss head of one training micro-batch (forward and
// backward, from the final hidden states to their gradient and the head weight's), computed three ways, one way per
// process so that each peak resident set is its own:
//   full      the whole [B, T, vocab] logits, log-softmax, the trained tokens' log-probs summed (what a padded batch
//             through CausalLM::forward costs: every position, padding included);
//   logprobs  learner::MaskedNextTokenLogProbs: the trained positions only, in chunks of ~32 MB, recomputed in the
//             backward (DPO, PPO, GRPO);
//   nll       learner::MaskedNextTokenNllSum: the trained positions only, in chunks, gradients made in the forward
//             (SFT).
//
//   head_memory_bench --mode=full|logprobs|nll [--rows=8] [--seq=512] [--trained=0.45] [--vocab=32000]
//                     [--hidden=384] [--threads=N] [--reps=N] [--warmup=N] [--smoke] [--out=FILE]
//
// The batch is `rows` x `seq` positions of which the first `trained` fraction of each row is trained (the rest
// stands for prompts and padding; var_data.py's batches of 8 pad to ~480 and train ~45% of the positions).
// Figures: head_<mode>_ms (per forward + backward), head_<mode>_peak_mb (VmHWM minus VmRSS before the first pass).
#include <torch/torch.h>

#include <string>

#include "bench/bench_util.h"
#include "common/model/compute_threads.h"
#include "learner/losses.h"

namespace alignd::bench {

int Main(int argc, char** argv) {
  Args args = ParseArgs(argc, argv);
  const std::string mode = args.Str("mode", "full");
  if (mode != "full" && mode != "logprobs" && mode != "nll") Die("--mode must be full, logprobs or nll");
  const int64_t rows = args.Int("rows", args.smoke ? 2 : 8), seq = args.Int("seq", args.smoke ? 64 : 512);
  const int64_t vocab = args.Int("vocab", args.smoke ? 4096 : 32000);
  const int64_t hidden = args.Int("hidden", args.smoke ? 64 : 384);
  const double trained = std::stod(args.Str("trained", "0.45"));
  SetComputeThreads(args.threads);
  Report report("head_memory", args);
  report.config()["mode"] = mode;
  report.config()["shape"] = {
      {"rows", rows}, {"seq", seq}, {"vocab", vocab}, {"hidden", hidden}, {"trained_fraction", trained}};

  torch::manual_seed(1);
  torch::Tensor h = torch::randn({rows, seq, hidden}).requires_grad_();
  torch::Tensor w = (torch::randn({vocab, hidden}) * 0.02).requires_grad_();
  torch::Tensor ids = torch::randint(0, vocab, {rows, seq}, torch::kLong);
  torch::Tensor mask = torch::zeros({rows, seq}, torch::kLong);
  mask.narrow(1, 1, static_cast<int64_t>(trained * static_cast<double>(seq))).fill_(1);

  const double before = ProcStatusMb("VmRSS");
  auto pass = [&] {
    torch::Tensor loss;
    if (mode == "full") {
      loss = -(learner::NextTokenLogProbs(torch::matmul(h, w.t()), ids) * mask).sum();
    } else if (mode == "logprobs") {
      loss = -learner::MaskedNextTokenLogProbs(h, w, ids, mask).logp.sum();
    } else {
      loss = learner::MaskedNextTokenNllSum(h, w, ids, mask);
    }
    loss.backward();
    h.mutable_grad().reset();
    w.mutable_grad().reset();
  };
  auto seconds = TimeRepeated(args, pass);
  const double peak = ProcStatusMb("VmHWM") - before;
  std::vector<double> ms;
  for (double s : seconds) ms.push_back(s * 1e3);
  report.Add("head_" + mode + "_ms", "ms", ms, false, "one forward + backward of the loss head");
  report.Add("head_" + mode + "_peak_mb", "MiB", {peak}, false, "peak resident set over the one before the passes");
  return report.Write();
}

}  // namespace alignd::bench

int main(int argc, char** argv) { return alignd::bench::Main(argc, argv); }
