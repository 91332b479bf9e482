"""What every Python reference benchmark shares: the same flags and JSON as bench/bench_util.h.

Flags: --threads N (torch.set_num_threads; default os.sched_getaffinity), --reps N (5), --warmup N (2), --smoke,
--out FILE (default stdout). Figures are {"unit", "samples", "higher_is_better", "note"}; bench/report.py merges them.
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
