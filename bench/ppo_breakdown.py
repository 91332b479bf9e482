#!/usr/bin/env python3
"""Where a PPO step's time goes on the local cluster (issue #7, part 4).

Runs a real PPO job through `alignd local` (a coordinator, a learner, a rollout worker and a reward server on
loopback, as the quickstart does) and reads each step's timers from the job's metrics.jsonl:

  time/step_s        the learner's whole step (trainer loop: cancel check, sampling, the objective's Step)
  weights/sync_seconds  publishing the weights to the rollout worker (announcement + Gloo broadcast + verified swap)
  time/generate_s    generation on the rollout worker (gRPC round trip included)
  time/score_s       scoring on the reward server (gRPC round trip included)
  time/experience_s  the learner's no-grad forwards: old log-probs, values, reference log-probs
  time/update_s      the PPO epochs over minibatches (forward, backward, optimiser)
  other              step - (all of the above): prompt encoding, collation, advantages, the log-prob check,
                     metrics, control plane

The first --warmup steps are dropped; each later step is one sample. Writes the JSON of bench/bench_util.h
(component "ppo"). Needs no torch: any python3 runs it.

  ppo_breakdown.py --build BUILD_DIR [--threads N] [--reps N] [--warmup N] [--smoke] [--out FILE]
                   [--hidden_size 128 --layers 4]
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "reference"))
import bench_util  # noqa: E402  (its Report needs no torch)

PARTS = [("sync", "weights/sync_seconds"), ("generate", "time/generate_s"), ("score", "time/score_s"),
         ("experience", "time/experience_s"), ("update", "time/update_s")]


def run(cmd, **kw):
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)
    if r.returncode != 0:
        sys.exit(f"ppo_breakdown: {' '.join(cmd)} failed ({r.returncode}):\n{r.stdout[-3000:]}")
    return r.stdout


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--build", required=True, help="build folder with cli/alignd and cli/alignctl")
    p.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    p.add_argument("--reps", type=int, default=6)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--smoke", action="store_true")
    p.add_argument("--out", default="")
    p.add_argument("--hidden_size", type=int, default=128)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--batch_size", type=int, default=16)
    p.add_argument("--max_new_tokens", type=int, default=32)
    p.add_argument("--keep", action="store_true", help="keep the working folder")
    a = p.parse_args()
    if a.smoke:
        a.reps, a.warmup = 1, 0
    alignd, alignctl = os.path.join(a.build, "cli/alignd"), os.path.join(a.build, "cli/alignctl")
    work = tempfile.mkdtemp(prefix="alignd-ppo-bench-")
    local = None
    try:
        data = os.path.join(work, "data")
        run([alignctl, "data", "synth", "--out", data, "--seed", "1", "--pretrain", "10", "--sft_train", "10",
             "--sft_eval", "10", "--pref_train", "64", "--pref_eval", "10", "--prompts_train", "200",
             "--prompts_eval", "10"])
        policy = os.path.join(work, "policy")
        run([alignd, "init", "--out", policy, "--hidden_size", str(a.hidden_size), "--layers", str(a.layers),
             "--seed", "3", f"--threads={a.threads}"])
        # A reward model of the same shape: one RM step from the policy gives the score head and its folder.
        rm_spec = os.path.join(work, "rm.yaml")
        with open(rm_spec, "w") as f:
            f.write(f"""name: rm
algorithm: rm
output_dir: {work}/rm
model: {{path: {policy}}}
data: {{train: {data}/pref_train.jsonl, chat_template: chatml, max_length: 160, max_prompt_length: 96}}
train: {{steps: 1, batch_size: 4, lr: 1.0e-4}}
""")
        run([alignd, "train", "--spec", rm_spec, f"--threads={a.threads}"])

        log_path = os.path.join(work, "local.log")
        log = open(log_path, "w")
        local = subprocess.Popen([alignd, "local", "--dir", os.path.join(work, "cluster"), "--listen",
                                  "127.0.0.1:0", "--learners", "1", "--rollout", "1", "--reward", "1",
                                  f"--threads={a.threads}"], stdout=log, stderr=subprocess.STDOUT)
        address = None
        for _ in range(600):
            m = re.search(r"coordinator on (127\.0\.0\.1:\d+)", open(log_path).read())
            if m:
                address = m.group(1)
                break
            if local.poll() is not None:
                break
            time.sleep(0.1)
        if not address:
            sys.exit("ppo_breakdown: alignd local did not start:\n" + open(log_path).read()[-3000:])

        steps = a.warmup + a.reps
        spec = os.path.join(work, "ppo.yaml")
        with open(spec, "w") as f:
            f.write(f"""name: ppo-bench
algorithm: ppo
output_dir: {work}/ppo
seed: 4
model: {{path: {policy}}}
data: {{train: {data}/prompts_train.jsonl, chat_template: chatml, max_length: 160, max_prompt_length: 96}}
train: {{steps: {steps}, batch_size: {a.batch_size}, lr: 5.0e-5, schedule: constant, max_grad_norm: 1.0,
        log_every: 1}}
rewards:
  - {{type: reward_model, path: {work}/rm/final, weight: 0.2}}
  - {{type: toy.arithmetic}}
  - {{type: toy.refusal}}
ppo:
  max_new_tokens: {a.max_new_tokens}
  temperature: 1.0
  epochs: 2
  minibatches: 2
  kl_coef: 0.2
resources: {{learners: 1, rollout_workers: 1, reward_servers: 1}}
""")
        env = dict(os.environ, ALIGND_COORDINATOR=address)
        start = time.time()
        run([alignctl, "submit", spec, "--wait"], env=env)
        wall = time.time() - start

        rows = [json.loads(line) for line in open(os.path.join(work, "ppo/metrics.jsonl"))]
        rows = [r for r in rows if "time/step_s" in r and r.get("step", 0) > a.warmup]
        if len(rows) < a.reps:
            sys.exit(f"ppo_breakdown: expected {a.reps} measured steps, found {len(rows)}")
        report = bench_util.Report("ppo", a)
        add = report.add
        add("step_s", "s", [r["time/step_s"] for r in rows], False)
        other = []
        for r in rows:
            other.append(r["time/step_s"] - sum(r.get(key, 0.0) for _, key in PARTS))
        for name, key in PARTS:
            add(f"{name}_s", "s", [r.get(key, 0.0) for r in rows], False)
            add(f"{name}_fraction", "fraction", [r.get(key, 0.0) / r["time/step_s"] for r in rows], False)
        add("other_s", "s", other, False)
        add("ppo_overhead_fraction", "fraction", [o / r["time/step_s"] for o, r in zip(other, rows)], False,
            "step time not spent generating, scoring, in learner compute or in weight sync")
        add("sync_bytes", "bytes", [r.get("weights/sync_bytes", 0.0) for r in rows], False)
        add("rollout_tokens_per_s", "tokens/s", [r.get("rollout/tokens_per_s", 0.0) for r in rows], True)
        report.json["config"].update({
            "model": f"llama hidden {a.hidden_size}, {a.layers} layers (alignd init)",
            "batch_size": a.batch_size, "max_new_tokens": a.max_new_tokens, "epochs": 2, "minibatches": 2,
            "cluster": "alignd local: 1 learner, 1 rollout worker, 1 reward server (RM + rules)",
            "job_wall_s": wall, "steps": steps})
        report.write()
    finally:
        if local is not None:
            local.terminate()
            try:
                local.wait(timeout=20)
            except subprocess.TimeoutExpired:
                local.kill()
        if a.keep:
            print(f"ppo_breakdown: kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
