"""Process helpers shared by the Python tests that start alignd (or a server of their own) and read its log."""
import re
import signal
import subprocess
import sys
import time


def wait_for_line(log, pattern, proc, seconds):
    """The first match of `pattern` in the file `log`, waiting up to `seconds`; exits if `proc` ends first."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        text = open(log).read()
        m = re.search(pattern, text)
        if m:
            return m
        if proc.poll() is not None:
            sys.exit(f"exited early ({proc.returncode}):\n{text[-3000:]}")
        time.sleep(0.1)
    sys.exit(f"no line matching {pattern!r} within {seconds}s:\n{open(log).read()[-3000:]}")


def stop(proc, seconds=30):
    """SIGTERM, then SIGKILL after `seconds`; nothing for a process that is gone (or None)."""
    if proc is not None and proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def init_tiny_model(alignd, out):
    """A fresh 2-layer, 32-wide Llama-style model with alignd's byte tokenizer in `out` (`alignd init`)."""
    subprocess.run([alignd, "init", "--out", out, "--hidden-size", "32", "--layers", "2", "--heads", "2",
                    "--kv-heads", "1", "--max-positions", "256", "--seed", "3"], check=True, stdout=subprocess.DEVNULL)


def synth_toy_data(alignctl, out, prompts_train=40):
    """A small toy-assistant data set in `out` (`alignctl data synth`): prompts_train.jsonl, prompts_eval.jsonl, ..."""
    subprocess.run([alignctl, "data", "synth", "--out", out, "--pretrain", "10", "--sft-train", "10", "--sft-eval", "2",
                    "--pref-train", "10", "--pref-eval", "2", "--prompts-train", str(prompts_train),
                    "--prompts-eval", "4"], check=True, stdout=subprocess.DEVNULL)


def toy_ppo_spec(work, name, steps, eval_every=0):
    """A short PPO job spec on `work`'s policy/ and data/ (init_tiny_model, synth_toy_data), rewarded by the toy
    world's arithmetic and brevity rules, on 1 learner, 1 rollout worker and 1 reward server; evaluated on the eval
    prompts every `eval_every` steps when that is not 0."""
    evaluation = f"  eval: {work}/data/prompts_eval.jsonl\n" if eval_every else ""
    every = f"  eval_every: {eval_every}\n" if eval_every else ""
    return f"""name: {name}
algorithm: ppo
output_dir: {work}/runs/{name}
seed: 2
threads: 1
model:
  path: {work}/policy
data:
  train: {work}/data/prompts_train.jsonl
{evaluation}  max_length: 160
  max_prompt_length: 96
train:
  steps: {steps}
  batch_size: 4
  lr: 1.0e-3
  warmup_steps: 0
  schedule: constant
  log_every: 1
{every}rewards:
  - type: toy.arithmetic
  - type: toy.brevity
ppo:
  max_new_tokens: 16
  epochs: 1
  minibatches: 1
resources:
  learners: 1
  rollout_workers: 1
  reward_servers: 1
"""
