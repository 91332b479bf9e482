#!/usr/bin/env python3
"""Variable-length SFT and DPO records for the learner benchmark on realistic lengths (learner_var_bench.cc and
learner_var_ref.py read the same files, so both sides train on the same tokens).

Real instruction data is far from uniform in length: a padded batch is as long as its longest row. Prompt and response
lengths here are drawn log-normally, a spread like that of instruction-tuning sets such as Alpaca or UltraChat's
single turns (most prompts short, responses a few times longer, a long tail): prompt median 48 tokens (sigma 0.8,
4..192), response median 128 tokens (sigma 0.9, 4..). Each sequence, BOS + prompt + response + EOS, is cut to fit
--max-length by capping the response, so neither side truncates anything. Text is random lower-case letters, one byte
token each under alignd's byte tokenizer, so token counts are exact on both sides.

Usage: python3 bench/reference/var_data.py --out DIR [--examples N] [--max-length N] [--seed N]
Writes DIR/sft.jsonl (prompt/completion), DIR/dpo.jsonl (prompt/chosen/rejected) and DIR/stats.json.
"""
import argparse
import json
import math
import os
import random
import statistics


def lognormal_length(rng, median, sigma, low, high):
    return max(low, min(high, int(round(math.exp(rng.gauss(math.log(median), sigma))))))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True)
    p.add_argument("--examples", type=int, default=64)
    p.add_argument("--max-length", type=int, default=512)
    p.add_argument("--seed", type=int, default=7)
    args = p.parse_args()
    rng = random.Random(args.seed)
    letters = lambda n: "".join(chr(rng.randrange(97, 123)) for _ in range(n))  # noqa: E731
    os.makedirs(args.out, exist_ok=True)
    sft_lengths, dpo_lengths = [], []
    with open(os.path.join(args.out, "sft.jsonl"), "w") as sft, open(os.path.join(args.out, "dpo.jsonl"), "w") as dpo:
        for _ in range(args.examples):
            prompt = lognormal_length(rng, 48, 0.8, 4, 192)
            room = args.max_length - 2 - prompt  # BOS and EOS
            response = lognormal_length(rng, 128, 0.9, 4, room)
            sft.write(json.dumps({"prompt": letters(prompt), "completion": letters(response)}) + "\n")
            sft_lengths.append(prompt + response + 2)
            prompt = lognormal_length(rng, 48, 0.8, 4, 192)
            room = args.max_length - 2 - prompt
            chosen, rejected = (lognormal_length(rng, 128, 0.9, 4, room) for _ in range(2))
            dpo.write(json.dumps({"prompt": letters(prompt), "chosen": letters(chosen),
                                  "rejected": letters(rejected)}) + "\n")
            dpo_lengths += [prompt + chosen + 2, prompt + rejected + 2]
    stats = {name: {"sequences": len(v), "tokens": sum(v), "median": statistics.median(v), "max": max(v),
                    "mean": sum(v) / len(v)} for name, v in (("sft", sft_lengths), ("dpo", dpo_lengths))}
    stats["max_length"] = args.max_length
    with open(os.path.join(args.out, "stats.json"), "w") as f:
        json.dump(stats, f, indent=1)
    print(json.dumps(stats))


if __name__ == "__main__":
    main()
