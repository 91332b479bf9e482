#!/usr/bin/env python3
"""Merges the benchmark JSON files of one scripts/bench run, prints the Markdown table and writes latest.json.

  report.py --results DIR --out bench/results/latest.json [--markdown bench/results/latest.md] [--command CMD]

Each input file is one component (bench/bench_util.h's format). Every figure keeps its raw samples and gains
median, min and max. The ratios the issue asks for are computed from medians; each ratio's spread is the range of
the ratio over the inputs' min/max (the worst and best pairing). Needs no torch: any python3 runs it.
"""
import argparse
import datetime
import glob
import json
import os
import platform
import statistics
import sys


def summarise(samples):
    s = sorted(samples)
    return {"median": statistics.median(s), "min": s[0], "max": s[-1], "n": len(s)}


# name: (numerator (component, figure), denominator (component, figure) or None, target, "ge"/"le", description)
RATIOS = [
    ("learner_sft_speedup_vs_python_1m", ("learner", "sft_1m_tokens_per_s"),
     ("learner_python", "sft_1m_tokens_per_s"), 1.3, "ge", "SFT step tokens/s, alignd / Python (~1M model)"),
    ("learner_sft_speedup_vs_python_20m", ("learner", "sft_20m_tokens_per_s"),
     ("learner_python", "sft_20m_tokens_per_s"), 1.0, "ge", "SFT step tokens/s, alignd / Python (~20M model)"),
    ("learner_dpo_speedup_vs_python_1m", ("learner", "dpo_1m_tokens_per_s"),
     ("learner_python", "dpo_1m_tokens_per_s"), 1.3, "ge", "DPO step tokens/s, alignd / Python (~1M model)"),
    ("learner_dpo_speedup_vs_python_20m", ("learner", "dpo_20m_tokens_per_s"),
     ("learner_python", "dpo_20m_tokens_per_s"), 1.0, "ge", "DPO step tokens/s, alignd / Python (~20M model)"),
    ("learner_mfu", ("learner", "sft_20m_gflops"), ("learner", "matmul_gflops"), None, "ge",
     "SFT step FLOP/s (~20M) / the machine's measured fp32 matmul rate"),
    ("learner_mfu_dpo", ("learner", "dpo_20m_gflops"), ("learner", "matmul_gflops"), None, "ge",
     "DPO step FLOP/s (~20M) / the machine's measured fp32 matmul rate"),
    ("learner_sft_bf16_speedup_vs_python_20m", ("learner", "sft_20m_bf16_tokens_per_s"),
     ("learner_python", "sft_20m_bf16_tokens_per_s"), None, "ge",
     "SFT step tokens/s under bf16 autocast, alignd / Python (~20M model)"),
    ("learner_bf16_over_fp32_20m", ("learner", "sft_20m_bf16_tokens_per_s"), ("learner", "sft_20m_tokens_per_s"),
     None, "ge", "alignd SFT step tokens/s, bf16 autocast / float32 (~20M model)"),
    ("matmul_bf16_over_fp32", ("learner", "matmul_bf16_gflops"), ("learner", "matmul_gflops"), None, "ge",
     "bf16 / fp32 matmul GFLOP/s on this CPU"),
    ("learner_var_sft_speedup_vs_trl", ("learner_var", "sft_padding_free_tokens_per_s"),
     ("learner_var_python", "sft_padding_free_tokens_per_s"), 1.3, "ge",
     "SFT tokens/s on variable-length data, ~19M model, 32k vocab: alignd padding-free / TRL padding_free"),
    ("learner_var_dpo_speedup_vs_trl", ("learner_var", "dpo_padding_free_tokens_per_s"),
     ("learner_var_python", "dpo_padded_tokens_per_s"), 1.3, "ge",
     "DPO tokens/s, the same: alignd padding-free / TRL (padded: TRL 1.16 has no padding-free DPO)"),
    ("learner_var_sft_memory_vs_trl", ("learner_var", "sft_padding_free_step_memory_mb"),
     ("learner_var_python", "sft_padding_free_step_memory_mb"), 0.7, "le",
     "SFT peak memory the job adds (peak RSS - RSS before the model), alignd / TRL, as above"),
    ("learner_var_dpo_memory_vs_trl", ("learner_var", "dpo_padding_free_step_memory_mb"),
     ("learner_var_python", "dpo_padded_step_memory_mb"), 0.7, "le",
     "DPO peak memory the job adds, alignd / TRL, as above"),
    ("learner_var_sft_padding_free_over_padded", ("learner_var", "sft_padding_free_tokens_per_s"),
     ("learner_var", "sft_padded_tokens_per_s"), None, "ge", "alignd SFT tokens/s, padding-free / padded"),
    ("learner_var_dpo_padding_free_over_padded", ("learner_var", "dpo_padding_free_tokens_per_s"),
     ("learner_var", "dpo_padded_tokens_per_s"), None, "ge", "alignd DPO tokens/s, padding-free / padded"),
    ("learner_var_sft_padded_vs_trl", ("learner_var", "sft_padded_tokens_per_s"),
     ("learner_var_python", "sft_padded_tokens_per_s"), None, "ge",
     "SFT tokens/s, both padded: alignd / TRL (what is left once neither side packs)"),
    ("head_logprobs_memory_over_full", ("head_memory", "head_logprobs_peak_mb"), ("head_memory", "head_full_peak_mb"),
     None, "le", "loss head's peak memory (8x512 positions, 32k vocab): trained positions in chunks / full logits"),
    ("head_nll_memory_over_full", ("head_memory", "head_nll_peak_mb"), ("head_memory", "head_full_peak_mb"), None,
     "le", "the same for the SFT form (gradients made in the forward)"),
    ("head_nll_time_over_full", ("head_memory", "head_nll_ms"), ("head_memory", "head_full_ms"), None, "le",
     "loss head forward + backward time, SFT form / full logits"),
    ("trl_sft_padding_free_over_padded", ("learner_var_python", "sft_padding_free_tokens_per_s"),
     ("learner_var_python", "sft_padded_tokens_per_s"), None, "ge", "TRL SFT tokens/s, padding_free / padded"),
    ("rollout_kv_speedup", ("generation", "kv_tokens_per_s"), ("generation", "no_kv_tokens_per_s"), 4.0, "ge",
     "generation tokens/s with / without the KV cache (128 new tokens)"),
    ("rollout_speedup_vs_python", ("generation", "kv_tokens_per_s"), ("generation_python", "kv_tokens_per_s"), 1.5,
     "ge", "generation tokens/s, alignd engine / HF-style generate (KV cache, 128 new tokens)"),
    ("rollout_mixed_speedup_vs_python", ("generation", "mixed_tokens_per_s"),
     ("generation_python", "mixed_tokens_per_s"), 2.0, "ge",
     "generation tokens/s on 48 rows of mixed lengths, alignd (continuous batching) / HF generate (batch at a time)"),
    ("rollout_continuous_over_batch", ("generation", "mixed_tokens_per_s"), ("generation", "mixed_batch_tokens_per_s"),
     None, "ge", "alignd generation tokens/s on the mixed rows, continuous batching / batch at a time"),
    ("rollout_mixed_vs_vllm", ("generation", "mixed_tokens_per_s"), ("generation_vllm", "mixed_tokens_per_s"), None,
     "ge", "generation tokens/s on the mixed rows, alignd / vLLM CPU (bench/reference/generate_vllm.py, by hand)"),
    ("weight_sync_fraction_of_tcp", ("weight_sync", "weight_sync_gb_per_s"),
     ("weight_sync", "tcp_loopback_gb_per_s"), 0.8, "ge", "weight publish GB/s / plain loopback TCP GB/s"),
    ("lora_sync_bytes_ratio", ("weight_sync", "lora_sync_bytes"), ("weight_sync", "full_sync_bytes"), None, "le",
     "bytes of a LoRA-only sync / bytes of a full sync"),
    ("ppo_overhead_fraction", ("ppo", "ppo_overhead_fraction"), None, 0.05, "le",
     "share of a PPO step outside generation, scoring, learner compute and weight sync"),
    ("rpc_p50_us", ("control_plane", "rpc_p50_us"), None, 200.0, "le", "unary RPC to the coordinator, p50 (µs)"),
]
# The headline ratios the issue names: the more demanding of the two model sizes.
HEADLINES = {"learner_sft_speedup_vs_python": ["learner_sft_speedup_vs_python_1m", "learner_sft_speedup_vs_python_20m"],
             "learner_dpo_speedup_vs_python": ["learner_dpo_speedup_vs_python_1m", "learner_dpo_speedup_vs_python_20m"]}


def fmt(x):
    if x is None:
        return "—"
    a = abs(x)
    if a == 0:
        return "0"
    if a >= 1e5:
        return f"{x:.3g}"
    if a >= 100:
        return f"{x:.0f}"
    if a >= 10:
        return f"{x:.1f}"
    if a >= 0.01:
        return f"{x:.3f}"
    return f"{x:.2e}"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--results", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--markdown", default="")
    p.add_argument("--command", default="scripts/bench")
    a = p.parse_args()

    # Several files of one component (rounds that scripts/bench interleaved with the reference's) pool their samples.
    components = {}
    for path in sorted(glob.glob(os.path.join(a.results, "*.json"))):
        with open(path) as f:
            c = json.load(f)
        seen = components.get(c["component"])
        if seen is None:
            components[c["component"]] = c
            c["config"]["rounds"] = 1
            continue
        seen["config"]["rounds"] += 1
        seen["config"]["reps"] = seen["config"].get("reps", 0) + c["config"].get("reps", 0)
        for name, fig in c["figures"].items():
            if name in seen["figures"]:
                seen["figures"][name]["samples"].extend(fig["samples"])
            else:
                seen["figures"][name] = fig
    for c in components.values():
        for fig in c["figures"].values():
            fig.update(summarise(fig["samples"]))

    def fig(ref):
        comp, name = ref
        return components.get(comp, {}).get("figures", {}).get(name)

    ratios, lines = {}, []
    for name, num, den, target, sense, desc in RATIOS:
        n, d = fig(num), fig(den) if den else None
        if n is None or (den and d is None):
            ratios[name] = None
            continue
        if d is None:
            value, lo, hi = n["median"], n["min"], n["max"]
        else:
            value = n["median"] / d["median"] if d["median"] else None
            lo = n["min"] / d["max"] if d["max"] else None
            hi = n["max"] / d["min"] if d["min"] else None
        met = None if target is None or value is None else (value >= target if sense == "ge" else value <= target)
        ratios[name] = value
        lines.append((name, value, lo, hi, target, sense, met, desc))
    for head, parts in HEADLINES.items():
        values = [ratios.get(x) for x in parts if ratios.get(x) is not None]
        ratios[head] = min(values) if values else None

    cpu = ""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    threads = sorted({c["config"].get("threads") for c in components.values()} - {None})
    result = {
        "generated": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": a.command,
        "machine": {"cpu": cpu, "cores": len(os.sched_getaffinity(0)), "threads": threads,
                    "kernel": platform.release()},
        "ratios": ratios,
        "targets": {name: {"target": t, "sense": s, "met": m} for name, _, _, _, t, s, m, _ in lines},
        "components": components,
    }
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")

    md = [f"Measured {result['generated']} on {cpu or 'this machine'}, {result['machine']['cores']} cores, "
          f"LibTorch threads {', '.join(map(str, threads))}; `{a.command}`.", "",
          "| ratio | value | spread | target | met |", "|---|---|---|---|---|"]
    for name, value, lo, hi, target, sense, met, desc in lines:
        t = "—" if target is None else ("≥ " if sense == "ge" else "≤ ") + fmt(target)
        m = "—" if met is None else ("yes" if met else "**no**")
        md.append(f"| `{name}`: {desc} | {fmt(value)} | {fmt(lo)}–{fmt(hi)} | {t} | {m} |")
    md += ["", "| component | figure | median | min–max | n | unit |", "|---|---|---|---|---|---|"]
    for cname, c in components.items():
        for fname, f in c["figures"].items():
            md.append(f"| {cname} | {fname} | {fmt(f['median'])} | {fmt(f['min'])}–{fmt(f['max'])} | {f['n']} | "
                      f"{f['unit']} |")
    text = "\n".join(md) + "\n"
    print(text)
    if a.markdown:
        with open(a.markdown, "w") as f:
            f.write(text)
    missing = [n for n, *_ in RATIOS if ratios.get(n) is None]
    if missing:
        print(f"report.py: no value for {', '.join(missing)} (a component did not run)", file=sys.stderr)


if __name__ == "__main__":
    main()
