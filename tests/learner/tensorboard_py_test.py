#!/usr/bin/env python3
"""alignd train's tb/ event files hold what metrics.jsonl holds, as TensorBoard reads them.

    tensorboard_py_test.py BUILD_DIR

Run with the bootstrap prefix's Python (it has tensorboard). Trains a tiny GRPO job in-process (`alignd train`: a
2-layer model from `alignd init`, generated math problems, two reward parts, an eval split), then reads
runs/<name>/tb with TensorBoard's EventAccumulator and checks that every scalar tag of metrics.jsonl is there with
the same (step, value) pairs (values as float32), and wall times within the run. Then resumes the finished job from
its step-4 checkpoint (`--resume`, as after a crash at step 6), which rewrites steps 5 and 6: metrics.jsonl drops its lines
after step 4, and tb/ gains a second file whose START makes TensorBoard drop the first file's steps after 4; the
same check must hold, through the legacy EventAccumulator and through the one TensorBoard's server uses. Work goes
under $TEST_TMPDIR (else the system's temporary folder) and is removed when the test passes.
"""
import json
import math
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time

from tensorboard.backend.event_processing import plugin_event_accumulator
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.util import tensor_util

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from proc_util import init_tiny_model  # noqa: E402

STEPS = 6
CHECKPOINT = 4


def f32(value):
    return float("nan") if value is None else struct.unpack("f", struct.pack("f", value))[0]


def from_jsonl(path):
    """tag -> [(step, float32 value)] in file order."""
    series = {}
    for line in open(path):
        row = json.loads(line)
        step = row.pop("step")
        for tag, value in row.items():
            series.setdefault(tag, []).append((step, f32(value)))
    return series


def from_tb(tb, purge=True):
    """tag -> [(step, value)] and every wall time, as the legacy EventAccumulator reads the folder."""
    acc = EventAccumulator(tb, size_guidance={"scalars": 0}, purge_orphaned_data=purge)
    acc.Reload()
    series, wall_times = {}, []
    for tag in acc.Tags()["scalars"]:
        events = acc.Scalars(tag)
        series[tag] = [(e.step, e.value) for e in events]
        wall_times += [e.wall_time for e in events]
    return series, wall_times


def from_tb_server(tb):
    """tag -> [(step, value)] as TensorBoard's server reads the folder (scalars become tensors there)."""
    acc = plugin_event_accumulator.EventAccumulator(tb, tensor_size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, float(tensor_util.make_ndarray(e.tensor_proto))) for e in acc.Tensors(tag)]
            for tag in acc.Tags()["tensors"]}


def same(a, b):
    return a == b or (math.isnan(a) and math.isnan(b))


def check_equal(label, want, got):
    missing = sorted(set(want) - set(got))
    extra = sorted(set(got) - set(want))
    assert not missing and not extra, f"{label}: tags only in metrics.jsonl {missing}, only in tb/ {extra}"
    for tag, points in want.items():
        ok = len(points) == len(got[tag]) and all(
            s == t and same(v, w) for (s, v), (t, w) in zip(points, got[tag]))
        assert ok, f"{label}: {tag}: metrics.jsonl {points} but tb/ {got[tag]}"


def train(alignd, spec, *extra):
    done = subprocess.run([alignd, "train", "--spec", spec, *extra], capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        sys.exit(f"alignd train {' '.join(extra)} failed ({done.returncode}):\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main():
    build = sys.argv[1]
    alignd, alignctl = os.path.join(build, "cli", "alignd"), os.path.join(build, "cli", "alignctl")
    work = tempfile.mkdtemp(prefix="tensorboard_py_", dir=os.environ.get("TEST_TMPDIR") or None)
    subprocess.run([alignctl, "data", "synth", "--task", "math", "--out", f"{work}/data", "--math_sft", "4",
                    "--math_train", "16", "--math_eval", "4"], check=True, stdout=subprocess.DEVNULL)
    init_tiny_model(alignd, f"{work}/policy")
    out = f"{work}/runs/tb"
    spec = os.path.join(work, "grpo.yaml")
    with open(spec, "w") as f:
        f.write(f"""name: tb
algorithm: grpo
output_dir: {out}
seed: 2
threads: 1
model:
  path: {work}/policy
data:
  train: {work}/data/math_train.jsonl
  eval: {work}/data/math_eval.jsonl
  chat_template: chatml
  max_length: 160
  max_prompt_length: 128
train:
  steps: {STEPS}
  batch_size: 2
  lr: 1.0e-3
  warmup_steps: 0
  schedule: constant
  log_every: 1
  eval_every: 3
  checkpoint_every: {CHECKPOINT}
rewards:
  - name: format
    type: format
    pattern: "####"
  - name: brevity
    type: length
    target_chars: 8
    weight: 0.5
ppo:
  samples_per_prompt: 2
  max_new_tokens: 6
  epochs: 1
  minibatches: 1
""")
    tb = os.path.join(out, "tb")

    started = time.time()
    train(alignd, spec)
    finished = time.time()
    want = from_jsonl(os.path.join(out, "metrics.jsonl"))
    for tag in ("train/loss", "reward/mean", "reward/parts/format", "reward/parts/brevity"):
        assert [s for s, _ in want.get(tag, [])] == list(range(1, STEPS + 1)), f"metrics.jsonl: {tag}: {want.get(tag)}"
    assert any(tag.startswith("eval/") for tag in want), f"no eval/ keys in metrics.jsonl: {sorted(want)}"
    got, wall_times = from_tb(tb)
    check_equal("fresh run", want, got)
    assert all(started - 1 <= t <= finished + 1 for t in wall_times), (started, finished, wall_times)
    check_equal("fresh run, server loader", want, from_tb_server(tb))

    # Resume from the step-4 checkpoint: steps 5 and 6 (and the final evaluation) are written again.
    first_run = want
    summary = train(alignd, spec, "--resume")
    assert summary["resumed_from"] == CHECKPOINT, summary
    files = sorted(os.listdir(tb))
    assert len(files) == 2 and all(n.startswith("events.out.tfevents.") for n in files), files
    want = from_jsonl(os.path.join(out, "metrics.jsonl"))
    assert [s for s, _ in want["train/loss"]] == list(range(1, STEPS + 1)), want["train/loss"]
    assert want["time/step_s"] != first_run["time/step_s"], "the resumed steps were not written again"
    got, _ = from_tb(tb)
    check_equal("resumed run", want, got)
    check_equal("resumed run, server loader", want, from_tb_server(tb))
    # Without TensorBoard's purge the first file's steps 5 and 6 show too: the START event is what hides them.
    unpurged, _ = from_tb(tb, purge=False)
    assert [s for s, _ in unpurged["train/loss"]] == [1, 2, 3, 4, 5, 6, 5, 6], unpurged["train/loss"]

    shutil.rmtree(work)
    print(f"tensorboard_py_test: OK ({len(want)} tags, {STEPS} steps, resumed from {CHECKPOINT})")


if __name__ == "__main__":
    main()
