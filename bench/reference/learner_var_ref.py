#!/usr/bin/env python3
"""Learner throughput and memory of TRL on realistic data: the twin of bench/learner_var_bench.cc.

The same records (bench/reference/var_data.py), model shapes (a ~19M Llama, vocabulary 32,000, tied embeddings, built
by transformers from bench_util.tiny_llama), batch sizes, optimiser and thread count; one case per process, so that
its peak memory is its own. What runs is the library itself:
  - sft: trl.SFTTrainer.train() on prompt/completion records, completion_only_loss, TRL's fused LM head (chunked, no
    full logits). --padding_free 1 turns on SFTConfig(padding_free=True): each batch is flattened into one row with
    position_ids, from which transformers builds a block-diagonal attention mask (masking_utils'
    find_packed_sequence_indices); --padding_free 0 pads each batch to its longest row.
  - dpo: trl.DPOTrainer.train() with precompute_ref_log_probs (as alignd caches reference log-probs), sigmoid loss,
    beta 0.1, padded batches: TRL 1.16's DPOConfig(padding_free=True) warns that it is "temporarily unavailable" and
    falls back to padding, so only the padded case exists.
Figures and timing are learner_var_bench.cc's: tokens_per_s per measured step is the step's input tokens (the growth
of TRL's logged num_tokens: attention-mask tokens, no padding) over the time between on_step_end callbacks;
peak_rss_mb is ru_maxrss after the run; step_memory_mb is that minus the resident set just before the model is made.

Usage: "$(scripts/bootstrap --prefix)/bin/python" bench/reference/learner_var_ref.py --data DIR --algo sft|dpo
       --padding-free 0|1 [--threads N] [--reps N] [--warmup N] [--smoke] [--out FILE]
"""
import os
import resource
import shutil
import sys
import tempfile
import time
import warnings

os.environ.setdefault("TQDM_DISABLE", "1")
warnings.filterwarnings("ignore", r".*is deprecated and will be removed in v6", FutureWarning)

import datasets  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
import trl  # noqa: E402
from transformers import TrainerCallback  # noqa: E402
from transformers.trainer_callback import PrinterCallback, ProgressCallback  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_util  # noqa: E402
from learner_ref import byte_tokenizer  # noqa: E402


def rss_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    sys.exit("learner_var_ref: no VmRSS in /proc/self/status")


class StepClock(TrainerCallback):
    def __init__(self):
        self.at = []

    def on_step_end(self, args, state, control, **kwargs):
        self.at.append(time.perf_counter())


def main():
    p = bench_util.parser(__doc__.splitlines()[0])
    p.add_argument("--data", required=True)
    p.add_argument("--algo", choices=("sft", "dpo"), required=True)
    p.add_argument("--padding-free", type=int, choices=(0, 1), default=0)
    args = bench_util.finish_args(p.parse_args())
    if args.algo == "dpo" and args.padding_free:
        sys.exit("learner_var_ref: TRL 1.16's DPOTrainer has no padding-free mode (it falls back to padding)")
    transformers.logging.set_verbosity_error()
    datasets.disable_progress_bars()
    report = bench_util.Report("learner_var_python", args)
    mode = "padding_free" if args.padding_free else "padded"
    data = datasets.load_dataset("json", data_files=os.path.join(args.data, f"{args.algo}.jsonl"), split="train")
    tokenizer = byte_tokenizer()
    hidden, layers, heads, vocab = (64, 2, 4, 4096) if args.smoke else (384, 4, 6, 32000)
    batch = 8 if args.algo == "sft" else 4
    steps = 1 + args.warmup + args.reps

    rss_before = rss_mb()
    torch.manual_seed(1)
    model = bench_util.tiny_llama(hidden, layers, heads, 2, max_positions=512, tie_word_embeddings=True,
                                  vocab_size=vocab)
    out_dir = tempfile.mkdtemp(prefix="learner_var_ref.")
    common = dict(output_dir=out_dir, max_steps=steps, per_device_train_batch_size=batch, learning_rate=1e-4,
                  weight_decay=0.01, adam_beta1=0.9, adam_beta2=0.999, adam_epsilon=1e-8, lr_scheduler_type="linear",
                  warmup_steps=0, max_grad_norm=1.0, activation_checkpointing=False, bf16=False, fp16=False,
                  use_cpu=True, seed=1, report_to="none", save_strategy="no", eval_strategy="no",
                  logging_strategy="steps", logging_steps=1, disable_tqdm=True, dataloader_pin_memory=False,
                  max_length=512)
    try:
        if args.algo == "sft":
            if args.padding_free:  # TRL refuses max_length without packing here; var_data.py's rows fit 512
                common["max_length"] = None
            config = trl.SFTConfig(completion_only_loss=True, packing=False, padding_free=bool(args.padding_free),
                                   **common)
            trainer = trl.SFTTrainer(model=model, args=config, train_dataset=data, processing_class=tokenizer)
        else:
            config = trl.DPOConfig(beta=0.1, loss_type=["sigmoid"], precompute_ref_log_probs=True, **common)
            trainer = trl.DPOTrainer(model=model, args=config, train_dataset=data, processing_class=tokenizer)
        for callback in (PrinterCallback, ProgressCallback):
            trainer.remove_callback(callback)
        clock = StepClock()
        trainer.add_callback(clock)
        torch.set_num_threads(args.threads)
        trainer.train()
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    totals = [entry["num_tokens"] for entry in trainer.state.log_history if "num_tokens" in entry]
    if len(clock.at) != steps or len(totals) != steps:
        sys.exit(f"learner_var_ref: {len(clock.at)} steps and {len(totals)} token counts, want {steps}")
    tokens = [totals[0]] + [totals[i] - totals[i - 1] for i in range(1, steps)]
    rates = [tokens[i] / (clock.at[i] - clock.at[i - 1]) for i in range(1 + args.warmup, steps)]
    c = model.config
    report.json["config"].update({
        "algo": args.algo, "mode": mode, "batch": batch, "torch": torch.__version__,
        "transformers": transformers.__version__, "trl": trl.__version__, "attn_implementation": "sdpa",
        "model": {"vocab": c.vocab_size, "hidden": c.hidden_size, "layers": c.num_hidden_layers,
                  "heads": c.num_attention_heads, "kv_heads": c.num_key_value_heads,
                  "tie_word_embeddings": c.tie_word_embeddings,
                  "parameters": sum(p.numel() for p in model.parameters())}})
    name = f"{args.algo}_{mode}"
    trainer_name = "SFTTrainer" if args.algo == "sft" else "DPOTrainer"
    report.add(name + "_tokens_per_s", "tokens/s", rates, True,
               f"trl.{trainer_name}.train(): the step's num_tokens / time between on_step_end callbacks; batch {batch}"
               + (", padding_free=True" if args.padding_free else ", padded"))
    report.add(name + "_peak_rss_mb", "MiB", [peak], False, "ru_maxrss of the process after the run")
    report.add(name + "_step_memory_mb", "MiB", [peak - rss_before], False,
               "peak resident set minus the resident set before the model was made")
    report.write()


if __name__ == "__main__":
    main()
