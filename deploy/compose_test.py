#!/usr/bin/env python3
"""deploy/test's compose part: runs deploy/compose.yaml (with compose.host.yaml: host networking, loopback only) from
a built image, and drives it from this machine with alignctl, as a user would:

  1. `up -d`; every service reaches `healthy` (the image's HEALTHCHECK: alignctl health).
  2. A tiny model and the toy data set are written into the shared volume (`exec` in the coordinator's container).
  3. SFT, then a reward model on it, then PPO on 2 learners with the reward model and the toy rules, then DPO: each
     submitted with `alignctl submit` and followed to SUCCEEDED.
  4. Faults: `docker kill` of a learner in the middle of PPO (the job restarts from its last checkpoint and
     succeeds); `docker restart` of the coordinator in the middle of DPO (every job is kept and DPO completes);
     `down` then `up` (the job history is still there).

Everything it starts, it removes (`down -v`), also when a check fails. Prints what it checked and the time each
part took.
"""
import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time

import yaml  # PyYAML: Debian's python3-yaml, which docker-compose depends on

PROJECT = "alignd-test"
SERVICES = ["coordinator", "learner-0", "learner-1", "rollout", "reward"]
PORTS = [7070, 7071, 7072, 7073, 7074, 8080, 8081, 8082, 8083, 8084, 8085, 9090, 9091, 9092, 9093, 9094]
SHARED = "/shared"


class Failure(Exception):
    pass


def log(message):
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


class Cluster:
    def __init__(self, args, work):
        self.args = args
        self.work = work
        self.secrets = os.path.join(work, "secrets")
        self.env = dict(os.environ,
                        ALIGND_IMAGE=args.image,
                        ALIGND_SECRETS=self.secrets,
                        ALIGND_BIND="127.0.0.1",
                        ALIGND_COORDINATOR="127.0.0.1:7070",
                        ALIGND_ADVERTISE_HOST="127.0.0.1",
                        ALIGND_PUBLISH="127.0.0.1",
                        ALIGND_THREADS="1",
                        ALIGND_LEASE_TTL_MS="3000")
        self.compose_cmd = [args.compose, "-p", PROJECT, "--project-directory", args.deploy,
                            "-f", without_ports(os.path.join(args.deploy, "compose.yaml"), work),
                            "-f", os.path.join(args.deploy, "compose.host.yaml")]

    def run(self, cmd, check=True, timeout=600, capture=True):
        r = subprocess.run(cmd, env=self.env, timeout=timeout, text=True,
                           stdout=subprocess.PIPE if capture else None, stderr=subprocess.STDOUT if capture else None)
        if check and r.returncode != 0:
            raise Failure(f"`{' '.join(cmd)}` exited {r.returncode}:\n{r.stdout}")
        return r

    def compose(self, *words, **kw):
        return self.run(self.compose_cmd + list(words), **kw)

    def docker(self, *words, **kw):
        return self.run([self.args.docker] + list(words), **kw)

    def alignctl(self, *words, check=True, timeout=120):
        return self.run([self.args.alignctl, "--coordinator=127.0.0.1:7070",
                         f"--tls-ca={self.secrets}/ca.crt", f"--token-file={self.secrets}/admin-token"]
                        + list(words), check=check, timeout=timeout)

    def container(self, service):
        cid = self.compose("ps", "-q", service).stdout.strip()
        if not cid:
            raise Failure(f"no container for {service}")
        return cid

    def health(self, service):
        r = self.docker("inspect", "-f", "{{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{end}}",
                        self.container(service), check=False)
        return r.stdout.strip()

    def wait_healthy(self, services=SERVICES, timeout=180):
        end = time.time() + timeout
        states = {}
        while time.time() < end:
            states = {s: self.health(s) for s in services}
            if all(v == "running healthy" for v in states.values()):
                return
            time.sleep(2)
        logs = self.compose("logs", "--no-color", "--tail=30", check=False).stdout
        raise Failure(f"not healthy within {timeout}s: {states}\n{logs}")

    def job(self, job_id):
        return json.loads(self.alignctl("status", job_id, "--output=json").stdout)

    def submit(self, name, spec):
        path = os.path.join(self.work, f"{name}.yaml")
        with open(path, "w") as f:
            f.write(spec)
        out = self.alignctl("submit", path, f"--request-id={name}-{os.getpid()}").stdout
        return out.splitlines()[0].strip()

    def wait(self, job_id, until, timeout=600, what="", tolerate_errors=False):
        """Polls the job until until(job) is true; returns it. While the coordinator restarts, calls may fail."""
        end = time.time() + timeout
        last = None
        while time.time() < end:
            try:
                last = self.job(job_id)
            except Failure:
                if not tolerate_errors:
                    raise
                time.sleep(1)
                continue
            if until(last):
                return last
            if last["state"] in ("FAILED", "CANCELLED"):
                raise Failure(f"job {job_id} {what}: {last['state']}: {last.get('message')}\n{self.logs(job_id)}")
            time.sleep(1)
        raise Failure(f"job {job_id} {what}: timed out after {timeout}s in {last}\n{self.logs(job_id)}")

    def wait_done(self, job_id, what, timeout=600, tolerate_errors=False):
        job = self.wait(job_id, lambda j: j["state"] in ("SUCCEEDED", "FAILED", "CANCELLED"), timeout, what,
                        tolerate_errors)
        if job["state"] != "SUCCEEDED":
            raise Failure(f"{what}: {job['state']}: {job.get('message')}\n{self.logs(job_id)}")
        return job

    def logs(self, job_id):
        return self.alignctl("logs", job_id, check=False).stdout


def without_ports(path, work):
    """compose.yaml with its `ports:` removed, in `work`: Docker refuses published ports under host networking, and
    an override file can add keys but not remove them. Everything else is the file as users get it."""
    with open(path) as f:
        doc = yaml.safe_load(f)
    for service in doc["services"].values():
        service.pop("ports", None)
    out = os.path.join(work, "compose.yaml")
    with open(out, "w") as f:
        yaml.safe_dump(doc, f, sort_keys=False)
    return out


def ports_free():
    busy = []
    for port in PORTS:
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                busy.append(port)
    return busy


def spec(name, algorithm, model, data, steps, lr, train="", extra="", max_length=128, learners=1, rollout=0,
         reward=0):
    """A job spec on the shared volume: `model` and `data` are paths under /shared, `train` more train: lines,
    `extra` more sections."""
    return f"""name: {name}
algorithm: {algorithm}
output_dir: {SHARED}/runs/{name}
seed: 5
threads: 1
model:
  path: {SHARED}/{model}
data:
  train: {SHARED}/data/{data}
  chat_template: chatml
  max_length: {max_length}
  max_prompt_length: 64
train:
  steps: {steps}
  batch_size: 8
  lr: {lr}
  warmup_steps: 0
  schedule: constant
{train}{extra}resources:
  learners: {learners}
  rollout_workers: {rollout}
  reward_servers: {reward}
  max_restarts: 3
"""


SFT = spec("sft", "sft", "policy", "sft_train.jsonl", 20, 2.0e-3, train="  log_every: 5\n")
RM = spec("rm", "rm", "runs/sft/final", "pref_train.jsonl", 20, 1.0e-3, train="  log_every: 5\n")
# 160 steps: the learner is killed once the job is seen past step 5, and the kill must land before the job ends. At
# 40 steps (about 4 s on an AMD EPYC with 2 cores) the job once finished first while the test suite ran beside it.
PPO = spec("ppo", "ppo", "runs/sft/final", "prompts_train.jsonl", 160, 1.0e-4, max_length=96,
           train="  checkpoint_every: 4\n  log_every: 1\n",
           extra=f"""rewards:
  - type: reward_model
    path: {SHARED}/runs/rm/final
    weight: 0.2
  - type: toy.arithmetic
  - type: toy.refusal
ppo:
  max_new_tokens: 8
  epochs: 1
  minibatches: 2
""", learners=2, rollout=1, reward=1)
DPO = spec("dpo", "dpo", "runs/sft/final", "pref_train.jsonl", 400, 5.0e-4,
           train="  checkpoint_every: 20\n  log_every: 5\n", extra="dpo:\n  beta: 0.5\n")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--image", required=True)
    p.add_argument("--alignctl", required=True, help="this machine's alignctl (the user's client)")
    p.add_argument("--deploy", required=True, help="the deploy/ folder")
    p.add_argument("--docker", default="docker")
    p.add_argument("--compose", default="docker-compose")
    args = p.parse_args()

    busy = ports_free()
    if busy:
        print(f"compose_test: ports {busy} on 127.0.0.1 are in use; the host-network cluster needs them", flush=True)
        return 1
    work = tempfile.mkdtemp(prefix="alignd-compose-")
    c = Cluster(args, work)
    started = time.time()
    try:
        subprocess.run([os.path.join(args.deploy, "k8s", "make-secrets")]
                       + [a for san in ["DNS:coordinator", "DNS:learner-0", "DNS:learner-1", "DNS:rollout",
                                        "DNS:reward", "DNS:localhost", "IP:127.0.0.1"] for a in ("--extra-san", san)]
                       + [c.secrets], check=True, stdout=subprocess.DEVNULL)
        subprocess.run(["chown", "-R", "10001:10001", c.secrets], check=True)

        t = time.time()
        c.compose("up", "-d")
        c.wait_healthy()
        log(f"up: all {len(SERVICES)} services healthy in {time.time() - t:.0f}s")

        t = time.time()
        c.compose("exec", "-T", "coordinator", "sh", "-c",
                  f"alignd init --out {SHARED}/policy --hidden-size 32 --layers 2 --heads 2 --kv-heads 1 "
                  f"--max-positions 256 --seed 3 >/dev/null && "
                  f"alignctl data synth --out {SHARED}/data --pretrain 10 --sft-train 64 --sft-eval 8 "
                  f"--pref-train 64 --pref-eval 16 --prompts-train 64 --prompts-eval 8 >/dev/null")
        log(f"data: a tiny model and the toy data set in the shared volume ({time.time() - t:.0f}s)")

        jobs = {}
        for name, text in [("sft", SFT), ("rm", RM)]:
            t = time.time()
            jobs[name] = c.submit(name, text)
            job = c.wait_done(jobs[name], name)
            log(f"{name}: {jobs[name]} SUCCEEDED at step {job['step']} in {time.time() - t:.0f}s")

        # PPO on 2 learners; a learner killed once a checkpoint exists.
        t = time.time()
        jobs["ppo"] = c.submit("ppo", PPO)
        job = c.wait(jobs["ppo"], lambda j: j["state"] == "RUNNING" and j["step"] >= 5, what="ppo reaching step 5")
        killed_at = job["step"]
        victim = c.container("learner-1")
        c.docker("kill", victim)
        log(f"ppo: docker kill learner-1 at step {killed_at}")
        # The restart policy brings it back; `up -d` would too, should the engine have counted the kill as a stop.
        time.sleep(2)
        if c.health("learner-1").split()[0] != "running":
            c.compose("up", "-d", "learner-1")
        job = c.wait_done(jobs["ppo"], "ppo after the learner was killed")
        if job["attempt"] < 2:
            raise Failure(f"ppo: attempt {job['attempt']} after a learner was killed; expected a restart")
        resumed = resumed_from(c, jobs["ppo"], job["attempt"])
        # The kill lands a little after the step polled above; the gang stops at the next collective, so the resume
        # is from the last checkpoint (a multiple of 4) at or after that step, and before the end.
        if resumed is None or resumed < killed_at - 4 or resumed % 4 != 0 or resumed >= job["step"]:
            raise Failure(f"ppo: attempt {job['attempt']} did not resume from a checkpoint after the kill at step "
                          f"{killed_at} (its first step was {None if resumed is None else resumed + 1})")
        log(f"ppo: {jobs['ppo']} SUCCEEDED at step {job['step']}, attempt {job['attempt']}, resumed from the "
            f"step-{resumed} checkpoint, in {time.time() - t:.0f}s")

        # DPO; the coordinator restarted in the middle.
        t = time.time()
        jobs["dpo"] = c.submit("dpo", DPO)
        job = c.wait(jobs["dpo"], lambda j: j["state"] == "RUNNING" and j["step"] >= 5, what="dpo reaching step 5")
        before = c.docker("inspect", "-f", "{{.State.StartedAt}}", c.container("coordinator")).stdout.strip()
        # The coordinator drains for up to 5 s (its streams to the workers stay open), so DPO runs long enough (400
        # steps) to still be running when the new one answers.
        c.docker("restart", c.container("coordinator"))
        after = c.docker("inspect", "-f", "{{.State.StartedAt}}", c.container("coordinator")).stdout.strip()
        if after == before:
            raise Failure("the coordinator's container did not restart")
        seen = c.wait(jobs["dpo"], lambda j: True, what="dpo seen by the restarted coordinator", tolerate_errors=True)
        if seen["state"] in ("SUCCEEDED", "FAILED", "CANCELLED"):
            raise Failure(f"dpo: the restarted coordinator first saw it {seen['state']}: the restart did not land "
                          "in the middle of the job")
        log(f"dpo: docker restart coordinator at step {job['step']}; the new coordinator sees it {seen['state']} "
            f"at step {seen['step']}")
        job = c.wait_done(jobs["dpo"], "dpo after the coordinator restarted", tolerate_errors=True)
        log(f"dpo: {jobs['dpo']} SUCCEEDED at step {job['step']}, attempt {job['attempt']}, "
            f"in {time.time() - t:.0f}s")
        check_history(c, jobs, "after the coordinator restart")

        # down, then up: the database is on the `state` volume.
        t = time.time()
        c.compose("down")
        c.compose("up", "-d")
        c.wait_healthy()
        check_history(c, jobs, "after down and up")
        log(f"down + up: every job kept ({time.time() - t:.0f}s)")
        log(f"compose test passed in {time.time() - started:.0f}s")
        return 0
    except (Failure, subprocess.CalledProcessError, subprocess.TimeoutExpired) as e:
        print(f"compose_test: FAILED: {e}", flush=True)
        print(c.compose("logs", "--no-color", "--tail=60", check=False).stdout, flush=True)
        return 1
    finally:
        c.compose("down", "-v", "--remove-orphans", check=False)
        subprocess.run(["rm", "-rf", work])


def resumed_from(c, job_id, attempt):
    """The step that attempt `attempt` of the job started from: its first progress event's step less one (the job
    logs every step), so 0 for a fresh start and N for a resume from the step-N checkpoint; None without progress."""
    first = None
    for line in c.alignctl("logs", job_id, "--output=json").stdout.splitlines():
        e = json.loads(line)
        if e.get("attempt") == attempt and e.get("step", 0) > 0 and e.get("message", "").startswith("step "):
            first = e["step"] if first is None else min(first, e["step"])
    return None if first is None else first - 1


def check_history(c, jobs, when):
    listed = {j["id"]: j for j in json.loads(c.alignctl("list", "--output=json").stdout)["jobs"]}
    for name, job_id in jobs.items():
        if job_id not in listed:
            raise Failure(f"{when}: job {name} ({job_id}) is gone; the list has {sorted(listed)}")
        if listed[job_id]["state"] != "SUCCEEDED":
            raise Failure(f"{when}: job {name} is {listed[job_id]['state']}")
    log(f"{when}: all {len(jobs)} jobs listed, SUCCEEDED")


if __name__ == "__main__":
    sys.exit(main())
