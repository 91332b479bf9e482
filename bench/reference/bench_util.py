"""What every Python reference benchmark shares: the same flags and JSON as bench/bench_util.h, and the model.

Flags: --threads N (torch.set_num_threads; default os.sched_getaffinity), --reps N (5), --warmup N (2), --smoke,
--out FILE (default stdout). Figures are {"unit", "samples", "higher_is_better", "note"}; bench/report.py merges them.
tiny_llama builds transformers' own LlamaForCausalLM with the shapes of alignd's TinyLlamaConfig.
"""
import argparse
import json
import os
import sys
import time


def parser(description):
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--smoke", action="store_true")
    p.add_argument("--out", default="")
    return p


def finish_args(args):
    import torch
    args.threads = max(1, args.threads)
    if args.smoke:
        args.reps, args.warmup = 1, 0
    torch.set_num_threads(args.threads)
    return args


def tiny_llama(hidden, layers, heads, kv_heads, max_positions, tie_word_embeddings, vocab_size=261):
    """transformers.LlamaForCausalLM sized as alignd's TinyLlamaConfig (common/model/model_config.cc): vocab 261 (the byte
    tokenizer; more pads it, as alignd's model.init.vocab_size does), SwiGLU intermediate size 8/3 * hidden rounded up
    to a multiple of 16, RMSNorm eps 1e-5, rope theta 10000, no biases; float32, SDPA attention (transformers' default
    on torch 2.x), HF's own weight init (normal(0, 0.02) for Linear and Embedding, ones for the norms), drawn from
    torch's global generator."""
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig
    config = LlamaConfig(
        vocab_size=vocab_size, hidden_size=hidden, intermediate_size=(hidden * 8 // 3 + 15) // 16 * 16,
        num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=kv_heads, head_dim=hidden // heads,
        max_position_embeddings=max_positions, rms_norm_eps=1e-5,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0}, tie_word_embeddings=tie_word_embeddings,
        pad_token_id=256, bos_token_id=257, eos_token_id=None)  # no stop token, as in alignd's benches
    model = AutoModelForCausalLM.from_config(config, attn_implementation="sdpa", dtype=torch.float32)
    assert type(model).__name__ == "LlamaForCausalLM" and model.config._attn_implementation == "sdpa"
    assert model.dtype == torch.float32
    return model


def time_repeated(args, fn):
    for _ in range(args.warmup):
        fn()
    seconds = []
    for _ in range(args.reps):
        t0 = time.perf_counter()
        fn()
        seconds.append(time.perf_counter() - t0)
    return seconds


class Report:
    def __init__(self, component, args):
        self.args = args
        self.json = {"component": component,
                     "config": {"threads": args.threads, "reps": args.reps, "warmup": args.warmup,
                                "smoke": args.smoke},
                     "figures": {}}

    def add(self, name, unit, samples, higher_is_better, note=""):
        f = {"unit": unit, "samples": list(samples), "higher_is_better": higher_is_better}
        if note:
            f["note"] = note
        self.json["figures"][name] = f
        s = sorted(samples)
        print(f"  {name:40s} {s[len(s) // 2]:14.4g} {unit} (n={len(s)})", file=sys.stderr)

    def write(self):
        text = json.dumps(self.json, indent=2) + "\n"
        if not self.args.out:
            sys.stdout.write(text)
        else:
            with open(self.args.out, "w") as f:
                f.write(text)
