#!/usr/bin/env python3
"""Prometheus metrics of a running cluster, scraped during a PPO job and parsed with PyPI's prometheus_client.

    metrics_scrape_test.py BUILD_DIR

Starts `alignd local --metrics-listen 127.0.0.1:0` (coordinator, learner, rollout worker and reward server in one
process, one registry), submits a short PPO job on generated toy data with a fresh tiny model, and scrapes /metrics
while the job runs until a learner step has been counted. The scrape must parse, and carry the issue's metrics: jobs
by state, steps per second, tokens per second (learner and rollout), weight-sync seconds and bytes, the queue depth
of rollout and reward requests, RPC latency histograms by method, and worker leases. Everything it starts is stopped;
every loop is bounded.
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from proc_util import init_tiny_model, stop, synth_toy_data, toy_ppo_spec, wait_for_line  # noqa: E402

STEPS = 6


def scrape(url):
    with urllib.request.urlopen(url, timeout=10) as r:
        assert r.status == 200, r.status
        assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4"), r.headers["Content-Type"]
        text = r.read().decode()
    return text, {f.name: f for f in text_string_to_metric_families(text)}


def samples(families, family, sample_name=None, **labels):
    f = families.get(family)
    if f is None:
        return []
    return [s for s in f.samples if (sample_name is None or s.name == sample_name)
            and all(s.labels.get(k) == v for k, v in labels.items())]


def main():
    build = sys.argv[1]
    alignd, alignctl = os.path.join(build, "cli", "alignd"), os.path.join(build, "cli", "alignctl")
    work = tempfile.mkdtemp(prefix="metrics_scrape_")
    local = job = None
    try:
        synth_toy_data(alignctl, f"{work}/data", prompts_train=40)
        init_tiny_model(alignd, f"{work}/policy")
        log = os.path.join(work, "local.log")
        local = subprocess.Popen([alignd, "local", "--dir", f"{work}/cluster", "--listen", "127.0.0.1:0",
                                  "--metrics-listen", "127.0.0.1:0", "--threads", "1"],
                                 stdout=open(log, "w"), stderr=subprocess.STDOUT)
        url = wait_for_line(log, r"metrics on (http://127\.0\.0\.1:\d+/metrics)", local, 120).group(1)
        coordinator = wait_for_line(log, r"coordinator on (127\.0\.0\.1:\d+)", local, 120).group(1)

        # Before any job: the scrape parses and, once the workers have registered (they do so on their own, a moment
        # after the coordinator is up), their three leases are there.
        deadline = time.time() + 60
        while True:
            _, fams = scrape(url)
            leases = samples(fams, "alignd_worker_lease_remaining_seconds")
            if len(leases) == 3 or time.time() > deadline:
                break
            time.sleep(0.05)
        assert len(leases) == 3, leases
        assert all(0 < s.value <= 10 for s in leases), leases

        spec = os.path.join(work, "ppo.yaml")
        with open(spec, "w") as f:
            f.write(toy_ppo_spec(work, "scraped", STEPS))
        env = dict(os.environ, ALIGND_COORDINATOR=coordinator)
        job = subprocess.Popen([alignctl, "submit", spec, "--wait"], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)

        # Scrape while the job runs, until a step has been counted with the job still RUNNING.
        running_scrape = None
        deadline = time.time() + 300
        while time.time() < deadline and job.poll() is None:
            text, fams = scrape(url)
            steps = samples(fams, "alignd_learner_steps", "alignd_learner_steps_total")
            running = samples(fams, "alignd_jobs", state="JOB_STATE_RUNNING")
            if steps and steps[0].value >= 1 and running and running[0].value == 1:
                running_scrape = fams
                break
            time.sleep(0.05)
        out, _ = job.communicate(timeout=600)
        assert job.returncode == 0 and "SUCCEEDED" in out, out[-3000:]
        assert running_scrape is not None, "never scraped a running job with a finished step"
        fams = running_scrape

        def one(family, sample_name=None, **labels):
            found = samples(fams, family, sample_name, **labels)
            assert found, f"no {sample_name or family} {labels} in the scrape: {sorted(fams)}"
            return found

        # Jobs by state, with the running job's progress.
        assert {s.labels["state"] for s in one("alignd_jobs")} >= {"JOB_STATE_PENDING", "JOB_STATE_RUNNING",
                                                                   "JOB_STATE_SUCCEEDED"}
        assert one("alignd_job_total_steps")[0].value == STEPS
        # Steps per second and tokens per second (learner, and rollout as the learner saw it).
        assert one("alignd_learner_steps_per_second")[0].value > 0
        assert one("alignd_learner_tokens_per_second")[0].value > 0
        assert one("alignd_learner_tokens", "alignd_learner_tokens_total")[0].value > 0
        assert one("alignd_rollout_tokens_per_second")[0].value > 0
        assert one("alignd_rollout_generated_tokens", "alignd_rollout_generated_tokens_total")[0].value > 0
        # Weight sync: a histogram of seconds and a counter of bytes.
        assert one("alignd_weight_sync_seconds", "alignd_weight_sync_seconds_count")[0].value >= 1
        assert one("alignd_weight_sync_bytes", "alignd_weight_sync_bytes_total")[0].value > 0
        # Queue depths of rollout and reward requests (gauges; between calls they are 0 or 1).
        assert one("alignd_rollout_requests_in_flight")[0].value >= 0
        assert one("alignd_reward_queue_depth")[0].value >= 0
        # RPC latency histograms by method.
        methods = {s.labels["method"] for s in one("alignd_rpc_server_handling_seconds",
                                                   "alignd_rpc_server_handling_seconds_count")}
        for m in ["/alignd.v1.JobService/SubmitJob", "/alignd.v1.Rollout/Generate", "/alignd.v1.Reward/Score"]:
            assert any(x == m for x in methods), (m, methods)
        buckets = one("alignd_rpc_server_handling_seconds", "alignd_rpc_server_handling_seconds_bucket",
                      method="/alignd.v1.Rollout/Generate")
        inf = [s for s in buckets if s.labels["le"] == "+Inf"]
        assert inf and inf[0].value >= 1, buckets
        # Worker leases, and which job each worker holds.
        leases = one("alignd_worker_lease_remaining_seconds")
        assert len(leases) == 3 and any(s.labels["job"] for s in leases), leases
        print(f"metrics_scrape_test: OK ({len(fams)} families; methods: {sorted(methods)})")
    finally:
        if job is not None and job.poll() is None:
            job.kill()
        stop(local)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
