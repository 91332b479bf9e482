#!/usr/bin/env python3
"""Generation throughput of Hugging Face `generate`, greedy, with and without its KV cache (the Python side of
bench/generation_bench.cc).

The real library, nothing transcribed: transformers' LlamaForCausalLM (bench_util.tiny_llama: float32, untied LM head
as generation_bench's models, attn_implementation="sdpa", HF's weight init) and its GenerationMixin.generate with
do_sample=False, num_beams=1 and max_new_tokens; with use_cache=True it decodes one token a step against a fresh
DynamicCache passed in as `cache`, with use_cache=False it runs the whole sequence every step. No
eos_token_id (the model's generation config has none either), so every row generates exactly the requested tokens,
like alignd's bench (no stop tokens). Everything generate does per call is timed: its config and logits-processor
setup, the left-padding mask and position ids, the prefill, the loop, all under its own torch.no_grad().

Same model sizes, batch 8, the same left-padded prompt lengths, fp32 and thread count as generation_bench.

The mixed case (mixed_tokens_per_s): generation_bench's 48 rows of mixed prompt and answer lengths (the same lists,
the same prompt tokens), batch at a time as `generate` works: the rows sorted by prompt length as alignd's engine
sorts them, in batches of 8 (alignd's max_batch_rows), each left-padded to its longest prompt. A StoppingCriteria
marks a row finished at its own budget (transformers' per-row `unfinished_sequences`); `generate` keeps every row in
the batch until the last one finishes, as it does with rows that reach EOS early (without an EOS criterion it does
not even overwrite the extra tokens with padding), so a batch costs its largest budget in steps. Tokens/s counts each
row's budget only, as on alignd's side.

  "$(scripts/bootstrap --prefix)/bin/python" bench/reference/generate_ref.py [--threads N] [--reps N] [--warmup N]
      [--smoke] [--out FILE] [--no-20m] [--skip-no-kv] [--skip-mixed]
"""
import os
import sys

import torch
import transformers
from transformers import DynamicCache, GenerationConfig, StoppingCriteria, StoppingCriteriaList

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_util  # noqa: E402

BATCH = 8
PROMPT_LENGTHS = [12, 20, 16, 24, 9, 30, 18, 14]
PAD = 256  # the byte tokenizer's <|pad|>
# generation_bench.cc's mixed case: lognormal prompt lengths (median 24, sigma 0.6) and answer budgets (median 40,
# sigma 0.8), drawn once with numpy's default_rng(7).
MIXED_PROMPT_LENGTHS = [24, 29, 20, 14, 18, 13, 25, 54, 18, 17, 32, 30, 26, 14, 24, 36,
                        11, 18, 8, 11, 8, 21, 11, 28, 26, 21, 5, 17, 23, 26, 10, 18,
                        13, 15, 45, 15, 24, 41, 17, 22, 26, 25, 12, 25, 54, 9, 40, 26]
MIXED_BUDGETS = [24, 198, 74, 15, 42, 63, 34, 69, 38, 68, 126, 23, 47, 28, 44, 15,
                 25, 34, 82, 100, 14, 21, 67, 8, 28, 37, 109, 69, 31, 30, 33, 135,
                 28, 31, 53, 36, 34, 16, 40, 28, 102, 67, 39, 68, 30, 93, 40, 64]
MIXED_BATCH = 8


def left_padded_prompts():
    g = torch.Generator().manual_seed(12)
    width = max(PROMPT_LENGTHS)
    ids = torch.full((BATCH, width), PAD, dtype=torch.long)
    mask = torch.zeros((BATCH, width), dtype=torch.long)
    for i, n in enumerate(PROMPT_LENGTHS):
        ids[i, width - n:] = torch.randint(0, 256, (n,), generator=g)
        mask[i, width - n:] = 1
    return ids, mask


def make_model(hidden, layers, heads, kv_heads):
    torch.manual_seed(1)
    return bench_util.tiny_llama(hidden, layers, heads, kv_heads, max_positions=512,
                                 tie_word_embeddings=False).eval()


def describe(model):
    c = model.config
    return {"family": "llama", "vocab_size": c.vocab_size, "hidden_size": c.hidden_size,
            "intermediate_size": c.intermediate_size, "num_layers": c.num_hidden_layers,
            "num_heads": c.num_attention_heads, "num_kv_heads": c.num_key_value_heads, "head_dim": c.head_dim,
            "tie_word_embeddings": c.tie_word_embeddings, "dtype": str(model.dtype).removeprefix("torch."),
            "parameters": sum(p.numel() for p in model.parameters())}


def measure(args, model, new_tokens, use_cache):
    ids, mask = left_padded_prompts()
    config = GenerationConfig(do_sample=False, num_beams=1, max_new_tokens=new_tokens, use_cache=use_cache,
                              pad_token_id=PAD, eos_token_id=None)
    expected = BATCH * new_tokens

    def run():
        cache = DynamicCache(config=model.config) if use_cache else None
        out = model.generate(input_ids=ids, attention_mask=mask, generation_config=config, cache=cache)
        assert out.shape == (BATCH, ids.shape[1] + new_tokens), out.shape
        assert cache is None or cache.get_seq_length() == ids.shape[1] + new_tokens - 1, cache.get_seq_length()

    return [expected / s for s in bench_util.time_repeated(args, run)]


class RowBudgets(StoppingCriteria):
    """Row i is done once it has generated budgets[i] tokens after the prompt width."""

    def __init__(self, prompt_width, budgets):
        self.prompt_width = prompt_width
        self.budgets = torch.tensor(budgets)

    def __call__(self, input_ids, scores, **kwargs):
        return (input_ids.shape[1] - self.prompt_width) >= self.budgets


def mixed_batches(rows, cap):
    order = sorted(range(rows), key=lambda r: MIXED_PROMPT_LENGTHS[r])  # stable, as std::stable_sort
    batches = []
    for begin in range(0, rows, MIXED_BATCH):
        chunk = order[begin:begin + MIXED_BATCH]
        width = max(MIXED_PROMPT_LENGTHS[r] for r in chunk)
        ids = torch.full((len(chunk), width), PAD, dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for i, r in enumerate(chunk):
            n = MIXED_PROMPT_LENGTHS[r]
            ids[i, width - n:] = torch.tensor([(7 * r + 3 * j) % 256 for j in range(n)])
            mask[i, width - n:] = 1
        batches.append((ids, mask, [min(cap, MIXED_BUDGETS[r]) for r in chunk]))
    return batches


def measure_mixed(args, model, rows, cap):
    batches = mixed_batches(rows, cap)
    expected = sum(sum(b) for _, _, b in batches)

    def run():
        for ids, mask, budgets in batches:
            config = GenerationConfig(do_sample=False, num_beams=1, max_new_tokens=max(budgets), use_cache=True,
                                      pad_token_id=PAD, eos_token_id=None)
            out = model.generate(input_ids=ids, attention_mask=mask, generation_config=config,
                                 stopping_criteria=StoppingCriteriaList([RowBudgets(ids.shape[1], budgets)]))
            assert out.shape == (ids.shape[0], ids.shape[1] + max(budgets)), out.shape

    return [expected / s for s in bench_util.time_repeated(args, run)]


def main():
    p = bench_util.parser(__doc__.splitlines()[0])
    p.add_argument("--no-20m", action="store_true", help="skip the ~20M model")
    p.add_argument("--skip-no-kv", action="store_true", help="skip use_cache=False on the ~1M model")
    p.add_argument("--skip-mixed", action="store_true", help="skip the mixed-length case")
    args = bench_util.finish_args(p.parse_args())
    transformers.logging.set_verbosity_error()
    new_tokens = 8 if args.smoke else 128
    report = bench_util.Report("generation_python", args)
    model = make_model(128, 4, 4, 2)
    report.json["config"].update({"model_1m": describe(model), "batch": BATCH, "prompt_lengths": PROMPT_LENGTHS,
                                  "padding": "left", "new_tokens": new_tokens,
                                  "decoding": "greedy, no eos_token_id", "torch": torch.__version__,
                                  "transformers": transformers.__version__, "attn_implementation": "sdpa"})
    per_rep = f"8 rows x {new_tokens} new tokens / wall time of one call"
    report.add("kv_tokens_per_s", "tokens/s", measure(args, model, new_tokens, True), True,
               "transformers generate, greedy, DynamicCache, ~1M model; " + per_rep)
    if not args.skip_no_kv:
        report.add("no_kv_tokens_per_s", "tokens/s", measure(args, model, new_tokens, False), True,
                   "transformers generate, greedy, use_cache=False, ~1M model; " + per_rep)
    if not args.skip_mixed:
        rows, cap = (12, 8) if args.smoke else (len(MIXED_PROMPT_LENGTHS), 256)
        report.json["config"]["mixed"] = {"rows": rows, "batch": MIXED_BATCH,
                                          "prompt_lengths": MIXED_PROMPT_LENGTHS[:rows], "budget_cap": cap,
                                          "budgets": MIXED_BUDGETS[:rows], "batching": "batch at a time, sorted"}
        report.add("mixed_tokens_per_s", "tokens/s", measure_mixed(args, model, rows, cap), True,
                   f"transformers generate, greedy, DynamicCache, {rows} rows of mixed lengths in batches of 8 "
                   "(a StoppingCriteria ends each row at its budget), ~1M model; generated tokens / wall time")
    if not args.smoke and not args.no_20m:
        model20 = make_model(512, 6, 8, 4)
        report.json["config"]["model_20m"] = describe(model20)
        report.add("kv_20m_tokens_per_s", "tokens/s", measure(args, model20, new_tokens, True), True,
                   "transformers generate, greedy, DynamicCache, ~20M model; " + per_rep)
    report.write()


if __name__ == "__main__":
    main()
