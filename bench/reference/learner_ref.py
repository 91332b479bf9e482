#!/usr/bin/env python3
"""Learner throughput of the Python stack: the twin of bench/learner_bench.cc.

One SFT and one DPO optimiser step, on the same ~0.8M and ~20M parameter Llama-style models, the same data, shapes,
dtype, hyper-parameters and thread count, run by the libraries themselves, nothing transcribed:
  - the model is transformers' LlamaForCausalLM built from a LlamaConfig (bench_util.tiny_llama): float32, tied
    embeddings, attn_implementation="sdpa" (torch.nn.functional.scaled_dot_product_attention, what transformers picks
    by default on torch 2.x), HF's own weight init;
  - the tokenizer is alignd's byte tokenizer (256 byte tokens, no merges, its 5 special tokens, BOS prepended), built
    with the tokenizers library and wrapped as a PreTrainedTokenizerFast;
  - SFT is trl.SFTTrainer.train() on the prompt/completion records learner_bench writes: TRL tokenizes them
    (BOS + prompt + completion + EOS) and its collator sets labels -100 on the prompt; each step is HF Trainer's:
    SFTTrainer.compute_loss (TRL's fused LM head, `model(..., labels, fused_lm_head=True)`: the mean NLL of the
    completion tokens, computed in chunks without materialising the logits, plus TRL's entropy and token-accuracy
    metrics), backward, the NaN/Inf filter, clip_grad_norm_(1.0), torch.optim.AdamW as Trainer builds it (its default
    optim "adamw_torch_fused"; weight decay 0.01 on Trainer.get_decay_parameter_names, none on norms), the LambdaLR of
    get_linear_schedule_with_warmup (no warm-up, decay to 0 over the run), zero_grad;
  - DPO is trl.DPOTrainer.train() with precompute_ref_log_probs=True (one pass of the initial model over the data
    before training), loss_type sigmoid, beta 0.1: DPOTrainer.compute_loss (chosen and rejected rows in one batch
    through the fused LM head, summed completion log-probs, -logsigmoid(beta * margin) against the cached reference
    log-probs, TRL's reward/logps/logits metrics), then the same Trainer optimiser step;
  - bf16: the ~20M SFT step again with SFTTrainer(bf16=True) on the CPU, where Trainer (through accelerate) runs the
    forward and the loss under torch.autocast("cpu", torch.bfloat16) and keeps weights, gradients and AdamW in fp32.
Trainer settings that differ from TRL's defaults, to match alignd's job: no gradient checkpointing, fp32 unless
stated, use_cpu, lr 1e-4, one log line at the last step (and one at the first, for the loss check below), no saving.

Timing is learner_bench's: the run has 1 + --warmup + --reps steps, a step's time is the wall time between two
on_step_end callbacks (everything Trainer does for one step: DataLoader, collation, forward, backward, optimiser,
logging), and the first step and the --warmup steps are not measured. Checks: every sequence is exactly seq_len
tokens with seq_len - prompt_len trained ones; the first SFT loss of a fresh model is about ln(261) and the first
DPO loss is ln 2 (the reference log-probs are the policy's own); config.first_loss records them.

Usage: "$(scripts/bootstrap --prefix)/bin/python" bench/reference/learner_ref.py [--threads N] [--reps N]
       [--warmup N] [--smoke] [--out FILE]
"""
import math
import os
import random
import shutil
import sys
import tempfile
import time
import warnings

os.environ.setdefault("TQDM_DISABLE", "1")  # TRL's reference-log-prob pass draws a progress bar otherwise
# TRL 1.16 itself still calls transformers' v5-deprecated gradient-checkpointing names; nothing this script can change.
warnings.filterwarnings("ignore", r".*is deprecated and will be removed in v6", FutureWarning)

import datasets  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
import trl  # noqa: E402
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors  # noqa: E402
from transformers import PreTrainedTokenizerFast, TrainerCallback  # noqa: E402
from transformers.convert_slow_tokenizer import bytes_to_unicode  # noqa: E402
from transformers.trainer_callback import PrinterCallback, ProgressCallback  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_util  # noqa: E402

EXAMPLES = 64
SPECIAL_TOKENS = ["<|pad|>", "<|begin_of_text|>", "<|end_of_text|>", "<|im_start|>", "<|im_end|>"]  # ids 256..260


def byte_tokenizer():
    """alignd's built-in byte tokenizer (common/text/tokenizer.cc ByteTokenizerFiles), built with the tokenizers library."""
    byte_to_unicode = bytes_to_unicode()
    vocab = {byte_to_unicode[b]: b for b in range(256)}
    vocab.update({token: 256 + i for i, token in enumerate(SPECIAL_TOKENS)})
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])
    tok.post_processor = processors.TemplateProcessing(single=f"{SPECIAL_TOKENS[1]} $A",
                                                       special_tokens=[(SPECIAL_TOKENS[1], 257)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token=SPECIAL_TOKENS[0], bos_token=SPECIAL_TOKENS[1],
                                   eos_token=SPECIAL_TOKENS[2])


def make_data(seq_len, prompt_len):
    """The records learner_bench writes: random lower-case letters, one byte token each, so that BOS + prompt +
    response + EOS is exactly seq_len tokens with prompt_len untrained ones."""
    rng = random.Random(7)
    letters = lambda n: "".join(chr(rng.randrange(97, 123)) for _ in range(n))  # noqa: E731
    prompt_chars, response_chars = prompt_len - 1, seq_len - prompt_len - 1
    sft, dpo = [], []
    for _ in range(EXAMPLES):
        sft.append({"prompt": letters(prompt_chars), "completion": letters(response_chars)})
        dpo.append({"prompt": letters(prompt_chars), "chosen": letters(response_chars),
                    "rejected": letters(response_chars)})
    return datasets.Dataset.from_list(sft), datasets.Dataset.from_list(dpo)


def check_lengths(trainer, algo, seq_len, prompt_len):
    """Exits unless TRL tokenized every sequence to seq_len tokens with seq_len - prompt_len trained ones."""
    trained = seq_len - prompt_len
    for row in trainer.train_dataset:
        if algo == "sft":
            got = [(len(row["input_ids"]), sum(label != -100 for label in row["labels"]))]
        else:
            got = [(len(row["prompt_ids"]) + len(row[k]), len(row[k])) for k in ("chosen_ids", "rejected_ids")]
        for length, n in got:
            if (length, n) != (seq_len, trained):
                sys.exit(f"learner_ref: a {algo} sequence has {length} tokens, {n} trained; "
                         f"want {seq_len} and {trained}")


class StepClock(TrainerCallback):
    """Records the time of every on_step_end, as learner_bench's on_step callback does."""

    def __init__(self):
        self.at = []

    def on_step_end(self, args, state, control, **kwargs):
        self.at.append(time.perf_counter())


def run_trainer(algo, model, data, tokenizer, batch, total_steps, out_dir, bf16=False):
    """Builds TRL's trainer for `algo` over `data` and trains `total_steps` steps.
    Returns (trainer, step end times)."""
    common = dict(output_dir=out_dir, max_steps=total_steps, per_device_train_batch_size=batch,
                  learning_rate=1e-4, weight_decay=0.01, adam_beta1=0.9, adam_beta2=0.999, adam_epsilon=1e-8,
                  lr_scheduler_type="linear", warmup_steps=0, max_grad_norm=1.0, activation_checkpointing=False,
                  bf16=bf16, fp16=False, use_cpu=True, seed=1, report_to="none", save_strategy="no",
                  eval_strategy="no", logging_strategy="steps", logging_steps=total_steps, logging_first_step=True,
                  disable_tqdm=True, dataloader_pin_memory=False, max_length=model.config.max_position_embeddings)
    if algo == "sft":
        args = trl.SFTConfig(completion_only_loss=True, packing=False, **common)
        trainer = trl.SFTTrainer(model=model, args=args, train_dataset=data, processing_class=tokenizer)
    else:
        args = trl.DPOConfig(beta=0.1, loss_type=["sigmoid"], precompute_ref_log_probs=True, **common)
        trainer = trl.DPOTrainer(model=model, args=args, train_dataset=data, processing_class=tokenizer)
    for callback in (PrinterCallback, ProgressCallback):  # keep stdout for the JSON
        trainer.remove_callback(callback)
    clock = StepClock()
    trainer.add_callback(clock)
    return trainer, clock


def step_flops(model, rows, seq_len):
    """The formula of learner_bench.cc: 6 * N * tokens + 12 * layers * seq_len * heads * head_dim * tokens, N = the
    parameters that multiply an activation (named_parameters lists the tied LM head once, as the embedding)."""
    c = model.config
    n = sum(p.numel() for name, p in model.named_parameters() if not name.endswith("norm.weight"))
    tokens = rows * seq_len
    return 6.0 * n * tokens + 12.0 * c.num_hidden_layers * seq_len * c.num_attention_heads * c.head_dim * tokens


def first_loss(trainer):
    return next(entry["loss"] for entry in trainer.state.log_history if "loss" in entry)


def measure(args, algo, sizes, data, tokenizer, batch, seq_len, prompt_len, bf16=False):
    """Trains a fresh model for 1 + warmup + reps steps; returns (measured step seconds, first loss, model)."""
    torch.manual_seed(1)
    model = bench_util.tiny_llama(*sizes, max_positions=seq_len, tie_word_embeddings=True)
    out_dir = tempfile.mkdtemp(prefix="learner_ref.")
    try:
        trainer, clock = run_trainer(algo, model, data, tokenizer, batch, 1 + args.warmup + args.reps, out_dir,
                                     bf16)
        check_lengths(trainer, algo, seq_len, prompt_len)
        torch.set_num_threads(args.threads)  # whatever Trainer or accelerate did, the bench's thread count rules
        trainer.train()
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)
    at = clock.at
    if len(at) != 1 + args.warmup + args.reps:
        sys.exit(f"learner_ref: {algo} ran {len(at)} steps, want {1 + args.warmup + args.reps}")
    loss = first_loss(trainer)
    want, tolerance = (math.log(2), 1e-4) if algo == "dpo" else (math.log(261), 0.5)
    if not abs(loss - want) <= tolerance:
        sys.exit(f"learner_ref: the first {algo} loss is {loss}, want {want:.4f} +- {tolerance}")
    return [at[i] - at[i - 1] for i in range(1 + args.warmup, len(at))], loss, model


def main():
    args = bench_util.finish_args(bench_util.parser(__doc__.splitlines()[0]).parse_args())
    transformers.logging.set_verbosity_error()
    datasets.disable_progress_bars()
    report = bench_util.Report("learner_python", args)
    models = ([("1m", 32, 2, 4, 2), ("20m", 64, 2, 4, 2)] if args.smoke
              else [("1m", 128, 4, 4, 2), ("20m", 512, 7, 8, 4)])
    sft_batch, dpo_batch, seq_len, prompt_len = (2, 1, 32, 16) if args.smoke else (4, 2, 128, 64)
    cfg = report.json["config"]
    cfg.update({"seq_len": seq_len, "prompt_len": prompt_len, "sft_batch_sequences": sft_batch,
                "dpo_batch_pairs": dpo_batch, "sft_tokens_per_step": sft_batch * seq_len,
                "dpo_tokens_per_step": 2 * dpo_batch * seq_len, "dtype": "float32",
                "torch": torch.__version__, "transformers": transformers.__version__, "trl": trl.__version__,
                "attn_implementation": "sdpa", "first_loss": {}})

    n = 256 if args.smoke else 2048
    a, b = torch.randn(n, n), torch.randn(n, n)
    report.add("matmul_gflops", "GFLOP/s", [2.0 * n ** 3 / 1e9 / s for s in bench_util.time_repeated(
        args, lambda: torch.mm(a, b))], True, f"fp32 torch.mm of two {n}x{n} matrices, 2n^3 FLOPs")

    tokenizer = byte_tokenizer()
    sft_data, dpo_data = make_data(seq_len, prompt_len)
    for tag, *sizes in models:
        for algo in ("sft", "dpo"):
            batch, rows = (sft_batch, sft_batch) if algo == "sft" else (dpo_batch, 2 * dpo_batch)
            seconds, loss, model = measure(args, algo, sizes, sft_data if algo == "sft" else dpo_data, tokenizer,
                                           batch, seq_len, prompt_len)
            name = f"{algo}_{tag}"
            cfg["first_loss"][name] = loss
            if algo == "sft":
                c = model.config
                cfg["model_" + tag] = {"vocab": c.vocab_size, "hidden": c.hidden_size,
                                       "intermediate": c.intermediate_size, "layers": c.num_hidden_layers,
                                       "heads": c.num_attention_heads, "kv_heads": c.num_key_value_heads,
                                       "tie_word_embeddings": c.tie_word_embeddings,
                                       "parameters": sum(p.numel() for p in model.parameters())}
            tokens = rows * seq_len
            trainer_name = "SFTTrainer" if algo == "sft" else "DPOTrainer"
            report.add(name + "_tokens_per_s", "tokens/s", [tokens / s for s in seconds], True,
                       f"trl.{trainer_name}.train(), time between on_step_end callbacks; "
                       f"tokens = rows x seq_len = {tokens}")
            report.add(name + "_step_s", "s", seconds, False)
            flops = step_flops(model, rows, seq_len)
            report.add(name + "_gflops", "GFLOP/s", [flops / 1e9 / s for s in seconds], True,
                       "(6 * N * tokens + 12 * layers * seq_len * heads * head_dim * tokens) / step time")

    # bf16 autocast, as learner_bench.cc: the bf16 matmul rate and the SFT step on the ~20M model.
    a16, b16 = a.bfloat16(), b.bfloat16()
    report.add("matmul_bf16_gflops", "GFLOP/s", [2.0 * n ** 3 / 1e9 / s for s in bench_util.time_repeated(
        args, lambda: torch.mm(a16, b16))], True, f"bf16 torch.mm of two {n}x{n} matrices, 2n^3 FLOPs")
    seconds, loss, _ = measure(args, "sft", models[-1][1:], sft_data, tokenizer, sft_batch, seq_len, prompt_len,
                               bf16=True)
    cfg["first_loss"]["sft_20m_bf16"] = loss
    report.add("sft_20m_bf16_tokens_per_s", "tokens/s", [sft_batch * seq_len / s for s in seconds], True,
               "the SFT step of sft_20m with SFTTrainer(bf16=True): torch.autocast('cpu', torch.bfloat16)")
    report.add("sft_20m_bf16_step_s", "s", seconds, False)
    report.write()


if __name__ == "__main__":
    main()
