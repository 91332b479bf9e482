#!/usr/bin/env python3
"""examples/reward_server.py, a reward server written from proto/alignd.proto alone, scores a GRPO job.

    reward_server_py_test.py BUILD_DIR PYTHON

Starts the example server (with PYTHON, the bootstrap prefix's interpreter, which has grpcio) on 127.0.0.1 with a
token, and an embedded cluster (`alignd local`: coordinator, learner, rollout worker, reward server, all on
loopback). Submits a short GRPO job on generated math problems whose `rewards` name the outside server, with the
token, beside a format part of alignd's own, and follows it to SUCCEEDED. Then checks that the server's parts reached
the job's metrics, and that the server counted the calls. Everything it starts is stopped, and every loop is bounded.
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from proc_util import init_tiny_model, stop, wait_for_line  # noqa: E402

STEPS = 3


def main():
    build, python = sys.argv[1], sys.argv[2]
    source = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    alignd, alignctl = os.path.join(build, "cli", "alignd"), os.path.join(build, "cli", "alignctl")
    work = tempfile.mkdtemp(prefix="reward_server_py_")
    server = local = None
    try:
        token = os.path.join(work, "reward.token")
        with open(token, "w") as f:
            f.write("py-s3cret\n")
        server_log = os.path.join(work, "server.log")
        server = subprocess.Popen([python, os.path.join(source, "examples", "reward_server.py"),
                                   "--listen", "127.0.0.1:0", "--token-file", token],
                                  stdout=open(server_log, "w"), stderr=subprocess.STDOUT)
        server_address = wait_for_line(server_log, r"reward server on (127\.0\.0\.1:\d+)", server, 60).group(1)

        subprocess.run([alignctl, "data", "synth", "--task", "math", "--out", f"{work}/data", "--math_sft", "10",
                        "--math_train", "32", "--math_eval", "4"], check=True, stdout=subprocess.DEVNULL)
        init_tiny_model(alignd, f"{work}/policy")

        local_log = os.path.join(work, "local.log")
        local = subprocess.Popen([alignd, "local", "--dir", f"{work}/cluster", "--listen", "127.0.0.1:0",
                                  "--learners", "1", "--rollout", "1", "--reward", "1", "--threads", "1"],
                                 stdout=open(local_log, "w"), stderr=subprocess.STDOUT, cwd=work)
        coordinator = wait_for_line(local_log, r"coordinator on (127\.0\.0\.1:\d+)", local, 120).group(1)

        spec = os.path.join(work, "grpo.yaml")
        with open(spec, "w") as f:
            f.write(f"""name: outside-reward
algorithm: grpo
output_dir: {work}/runs/outside-reward
seed: 2
threads: 1
model:
  path: {work}/policy
data:
  train: {work}/data/math_train.jsonl
  max_length: 200
  max_prompt_length: 128
train:
  steps: {STEPS}
  batch_size: 4
  lr: 1.0e-3
  warmup_steps: 0
  schedule: constant
  log_every: 1
rewards:
  - name: outside
    type: server
    address: "{server_address}"
    token_file: {token}
    deadline_ms: 20000
    retries: 2
  - name: format
    type: format
    pattern: "####"
    weight: 0.5
ppo:
  samples_per_prompt: 2
  max_new_tokens: 8
  epochs: 1
  minibatches: 1
resources:
  learners: 1
  rollout_workers: 1
  reward_servers: 1
""")
        env = dict(os.environ, ALIGND_COORDINATOR=coordinator)
        done = subprocess.run([alignctl, "submit", spec, "--wait"], env=env, capture_output=True, text=True,
                              timeout=600)
        print(done.stdout[-2000:])
        if done.returncode != 0 or "SUCCEEDED" not in done.stdout:
            sys.exit(f"the job did not succeed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}\n"
                     f"{open(local_log).read()[-5000:]}\n{open(server_log).read()[-2000:]}")

        rows = [json.loads(line) for line in open(f"{work}/runs/outside-reward/metrics.jsonl")]
        steps = [r for r in rows if "reward/mean" in r]
        assert len(steps) == STEPS, f"{len(steps)} steps logged, expected {STEPS}"
        for r in steps:
            # The server's total is the part "outside"; concise is <= 0 and final_number in {0, 1}, so it is <= 1.
            assert "reward/parts/outside" in r, r
            assert "reward/parts/format" in r, r
            assert r["reward/parts/outside"] <= 1.0, r
            expected = r["reward/parts/outside"] + 0.5 * r["reward/parts/format"]
            assert abs(r["reward/mean"] - expected) < 1e-6, (r, expected)

        stop(server)
        calls = re.search(r"answered (\d+) Score calls", open(server_log).read())
        assert calls and int(calls.group(1)) >= STEPS, open(server_log).read()[-2000:]
        print(f"reward_server_py_test: OK ({calls.group(1)} Score calls, {STEPS} steps)")
    finally:
        stop(server)
        stop(local)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
