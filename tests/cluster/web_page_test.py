#!/usr/bin/env python3
"""The coordinator's page (--http-listen) in Debian's headless Chromium, during a running PPO job.

    web_page_test.py BUILD_DIR [SCREENSHOT.png]

Starts `alignd coordinator` with a tokens file and `--http-listen 127.0.0.1:0`, and three `alignd worker`s (learner,
rollout, reward) with a worker token; submits a PPO job as the user alice on generated toy data with a fresh tiny model
(toy rewards in two parts, an evaluation every few steps); and, once the job is RUNNING with several steps and an
evaluation reported, loads the page in Chromium signed in with alice's token (the URL's #token= fragment, which the
page trades for a session cookie), dumps the DOM and takes a screenshot. The DOM must show the job RUNNING, charts
for the loss, the reward, the KL, the reward's parts and the eval metrics with points in them, and the three workers.
The job is then cancelled and everything stopped. Chromium may reach only this coordinator: other hosts resolve to
nothing and go to a dead local proxy, and its background services are off. Every loop is bounded.
"""
import html.parser
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from proc_util import init_tiny_model, stop, synth_toy_data, toy_ppo_spec, wait_for_line  # noqa: E402

ALICE = "alice-token-0123456789"
WORKER = "worker-token-012345678"
STEPS = 400  # far more than the test waits for: the job must still be RUNNING when Chromium looks
EVAL_EVERY = 4

CHROMIUM_FLAGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars",
    "--no-first-run", "--no-default-browser-check", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--disable-default-apps", "--disable-extensions", "--disable-domain-reliability",
    "--disable-client-side-phishing-detection", "--no-pings", "--dns-prefetch-disable", "--metrics-recording-only",
    "--disable-features=Translate,OptimizationHints,MediaRouter,AutofillServerCommunication",
    # Only loopback: every other host resolves to nothing, and any request for one goes to a closed local port.
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1", "--proxy-server=http://127.0.0.1:9",
    "--window-size=1280,1500", "--virtual-time-budget=15000",
]


def api(base, path):
    req = urllib.request.Request(base + path, headers={"Authorization": "Bearer " + ALICE})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.load(r)


class Charts(html.parser.HTMLParser):
    """The page's charts (<svg data-metric data-points> with a polyline), job rows and worker rows."""

    def __init__(self):
        super().__init__()
        self.charts = {}       # metric -> (data-points, coordinate pairs in its polyline)
        self.current = None
        self.body_loaded = False
        self.tbody = None
        self.rows = {"job-rows": [], "worker-rows": []}
        self.cell = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "body" and a.get("data-loaded") == "true":
            self.body_loaded = True
        if tag == "svg" and "data-metric" in a:
            self.current = a["data-metric"]
            self.charts[self.current] = (int(a["data-points"]), 0)
        if tag == "polyline" and self.current is not None:
            self.charts[self.current] = (self.charts[self.current][0], len(a.get("points", "").split()))
        if tag == "tbody":
            self.tbody = a.get("id")
        if tag == "tr" and self.tbody in self.rows:
            self.rows[self.tbody].append([])
        if tag == "td" and self.tbody in self.rows:
            self.cell = []

    def handle_endtag(self, tag):
        if tag == "svg":
            self.current = None
        if tag == "tbody":
            self.tbody = None
        if tag == "td" and self.cell is not None and self.tbody in self.rows:
            self.rows[self.tbody][-1].append("".join(self.cell).strip())
            self.cell = None

    def handle_data(self, data):
        if self.cell is not None:
            self.cell.append(data)


def chromium(args, work, tag):
    profile = os.path.join(work, f"chromium-{tag}")
    cmd = ["chromium", *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args]
    out = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=180)
    assert out.returncode == 0, (out.returncode, out.stderr[-3000:])
    return out.stdout


def main():
    build = sys.argv[1]
    screenshot = sys.argv[2] if len(sys.argv) > 2 else None
    if shutil.which("chromium") is None:
        sys.exit("chromium is not installed: scripts/bootstrap installs Debian's chromium")
    alignd, alignctl = os.path.join(build, "cli", "alignd"), os.path.join(build, "cli", "alignctl")
    work = tempfile.mkdtemp(prefix="web_page_")
    coordinator = None
    workers = []
    try:
        synth_toy_data(alignctl, f"{work}/data", prompts_train=64)
        init_tiny_model(alignd, f"{work}/policy")
        with open(f"{work}/tokens", "w") as f:
            f.write(f"{ALICE} alice user\n{WORKER} workers worker\n")
        log = os.path.join(work, "coordinator.log")
        coordinator = subprocess.Popen([alignd, "coordinator", "--listen", "127.0.0.1:0", "--db", f"{work}/jobs.db",
                                        "--auth-tokens", f"{work}/tokens", "--http-listen", "127.0.0.1:0"],
                                       stdout=open(log, "w"), stderr=subprocess.STDOUT)
        base = wait_for_line(log, r"page on (http://127\.0\.0\.1:\d+)/", coordinator, 60).group(1)
        address = "127.0.0.1:" + wait_for_line(log, r"coordinator listening on port (\d+)", coordinator, 60).group(1)
        for role in ["learner", "rollout", "reward"]:
            wlog = os.path.join(work, f"{role}.log")
            workers.append(subprocess.Popen([alignd, "worker", "--coordinator", address, "--roles", role,
                                             "--threads", "1"],
                                            env=dict(os.environ, ALIGND_TOKEN=WORKER),
                                            stdout=open(wlog, "w"), stderr=subprocess.STDOUT))

        # Without a token the API refuses; the page itself loads (and shows its sign-in form).
        try:
            urllib.request.urlopen(base + "/api/jobs", timeout=10)
            raise AssertionError("the API answered without a token")
        except urllib.error.HTTPError as e:
            assert e.code == 401, e.code

        spec = os.path.join(work, "ppo.yaml")
        with open(spec, "w") as f:
            f.write(toy_ppo_spec(work, "page-demo", STEPS, eval_every=EVAL_EVERY))
        env = dict(os.environ, ALIGND_COORDINATOR=address, ALIGND_TOKEN=ALICE)
        submitted = subprocess.run([alignctl, "submit", spec], env=env, check=True, stdout=subprocess.PIPE,
                                   text=True).stdout
        job = submitted.split()[0]

        # Wait (bounded) until the job runs with a few steps and two evaluations reported.
        deadline = time.time() + 300
        while True:
            detail = api(base, f"/api/job?id={job}")
            state, series = detail["job"]["state"], detail["series"]
            evals = [k for k in series if k.startswith("eval/")]
            if state == "JOB_STATE_RUNNING" and len(series.get("train/loss", [])) >= 2 * EVAL_EVERY + 1 and evals \
                    and len(series[evals[0]]) >= 2:
                break
            assert state in ("JOB_STATE_PENDING", "JOB_STATE_SCHEDULED", "JOB_STATE_RUNNING"), detail["job"]
            assert time.time() < deadline, f"the job did not get going: {detail['job']}"
            time.sleep(0.2)

        url = f"{base}/?job={job}#token={ALICE}"
        dom = chromium(["--dump-dom", url], work, "dom")
        shot = screenshot or os.path.join(work, "page.png")
        chromium([f"--screenshot={shot}", url], work, "shot")
        with open(shot, "rb") as f:
            png = f.read()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20000, len(png)
        width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
        assert (width, height) == (1280, 1500), (width, height)

        page = Charts()
        page.feed(dom)
        assert page.body_loaded, "the page never finished loading its data:\n" + dom[-3000:]
        assert "That token was not accepted" not in dom
        jobs = page.rows["job-rows"]
        assert len(jobs) == 1 and jobs[0][0] == job and jobs[0][2] == "alice" and jobs[0][3] == "RUNNING", jobs
        workers_seen = page.rows["worker-rows"]
        assert len(workers_seen) == 3, workers_seen
        assert sorted(w[1] for w in workers_seen) == ["learner", "reward", "rollout"], workers_seen
        assert sum(1 for w in workers_seen if w[5] == job) == 3, workers_seen

        def points(metric, least):
            assert metric in page.charts, f"no chart for {metric}: {sorted(page.charts)}"
            declared, drawn = page.charts[metric]
            assert declared >= least and drawn == declared, (metric, declared, drawn)
            return declared

        loss = points("train/loss", 2 * EVAL_EVERY + 1)
        points("reward/mean", 2 * EVAL_EVERY + 1)
        points("objective/kl", 2 * EVAL_EVERY + 1)
        parts = [m for m in page.charts if m.startswith("reward/parts/")]
        assert len(parts) == 2, sorted(page.charts)
        for m in parts:
            points(m, 2 * EVAL_EVERY + 1)
        evals = [m for m in page.charts if m.startswith("eval/")]
        assert evals, sorted(page.charts)
        for m in evals:
            points(m, 2)
        print(f"web_page_test: OK (job {job}: {len(page.charts)} charts, train/loss with {loss} points; "
              f"parts {parts}; eval {evals}; screenshot {shot}, {len(png)} bytes)")

        subprocess.run([alignctl, "cancel", job], env=env, check=True, stdout=subprocess.DEVNULL)
    finally:
        for w in workers:
            stop(w)
        stop(coordinator)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
