#!/usr/bin/env python3
"""Multi-host fault tests over Linux network namespaces (issue #15).

The test makes its own hosts: one network namespace per host (the coordinator and each worker), each with a veth
whose other end is a port of a bridge in a "switch" namespace it also makes. Addresses come from 10.213.7.0/24 and
exist only inside those namespaces; nothing is sent anywhere else. Every process runs in its host's namespace, so
gRPC, the learners' Gloo group and the weight broadcast all cross a real (non-loopback) interface. The coordinator
serves TLS with bearer tokens (required off loopback), and so do the workers' own servers, which also require the
peers' certificates; the CA and certificates are made by the test with openssl.

Scenarios, each on a PPO job (2 learners, 1 rollout worker, 1 reward server, checkpoints every 2 steps), with spare
workers so that a restarted gang can be placed:
  1. learner rank 0's switch port goes down mid-job: its lease lapses, the job restarts on the spare learner, resumes
     from a checkpoint and SUCCEEDS; the surviving learner leaves the old gang within the collective timeout.
  2. the rollout worker's port goes down while a weight version is on the wire to it (the port is rate-limited with
     tc tbf so the transfer takes seconds, and the fault fires once the shaper holds a backlog): learner rank 0's
     broadcast fails cleanly within the collective timeout, and the job restarts on the spare rollout worker and
     SUCCEEDS.
  3. the links come back: the partitioned workers register again, once the assignments they held have returned
     (the cancel ends the calls they were blocked in), two more jobs run at once on every worker (the
     healed ones among them), and the history shows every job SUCCEEDED exactly once, with the expected attempts
     and restart events, one completion event each, and an idempotent resubmit that returns the same job without
     running it again.

Usage: netns_fault_test.py BUILD_DIR   (needs root: it creates network namespaces; fails, never skips, without them)
Everything it makes is removed on exit (namespaces, processes); the run folder is kept only when a check fails.
Every wait is bounded.
"""

import atexit
import ctypes
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

SUBNET = "10.213.7"
COORD_IP = f"{SUBNET}.1"
LEASE_TTL_MS = 3000
COLLECTIVE_TIMEOUT_MS = 15000
STEPS = 24
# Bounds on the waits (seconds). The machine this runs on in CI has 2 cores shared with the rest of the suite.
JOB_TIMEOUT = 240
STEP_TIMEOUT = 120
REGISTER_TIMEOUT = 60
# How long after a fault a member of the old gang may take to leave it: the collective timeout, plus slack for a
# loaded machine.
LEAVE_BOUND = COLLECTIVE_TIMEOUT_MS / 1000 + 15

START = time.time()
PREFIX = f"adnt{os.getpid()}"
namespaces = []   # made by this run, in creation order
processes = []    # Popen objects this run started
run_dir = None
checks = []       # descriptions of the checks that passed
failed = False


def log(message):
    print(f"[{time.time() - START:6.1f}s] {message}", flush=True)


class CheckFailed(Exception):
    pass


def check(condition, description, detail=""):
    if not condition:
        raise CheckFailed(f"{description}{': ' + detail if detail else ''}")
    checks.append(description)
    log(f"ok: {description}")


def run(args, check_rc=True, timeout=60, **kwargs):
    result = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout,
                            **kwargs)
    if check_rc and result.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} exited {result.returncode}: {result.stdout.strip()}")
    return result


def ip(*args, check_rc=True):
    return run(["ip", *args], check_rc=check_rc)


# ---- cleanup -------------------------------------------------------------------------------------------------------

def cleanup():
    for p in processes:
        if p.poll() is None:
            try:
                p.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass
    deadline = time.time() + 5
    for p in processes:
        try:
            p.wait(timeout=max(0.1, deadline - time.time()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=5)
    for ns in reversed(namespaces):
        subprocess.run(["ip", "netns", "del", ns], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    namespaces.clear()
    if run_dir and not failed:
        shutil.rmtree(run_dir, ignore_errors=True)


def die_with_parent():
    """In the child, before exec: SIGKILL when this test dies, even by SIGKILL (a ctest timeout), when no cleanup
    runs. `ip netns exec` execs the command itself, so this reaches alignd."""
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def on_signal(signum, frame):
    raise SystemExit(128 + signum)


def remove_leftovers():
    """Namespaces of earlier runs of this test whose process is gone (a run killed before its cleanup)."""
    listing = run(["ip", "netns", "list"], check_rc=False).stdout
    for line in listing.splitlines():
        m = re.match(r"(adnt(\d+)-\S+)", line)
        if m and not os.path.exists(f"/proc/{m.group(2)}"):
            subprocess.run(["ip", "netns", "del", m.group(1)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


# ---- hosts ---------------------------------------------------------------------------------------------------------

class Network:
    """A bridge in a switch namespace and one namespace per host, each with eth0 cabled to a switch port."""

    def __init__(self):
        self.switch = f"{PREFIX}-sw"
        self.hosts = {}  # name -> (namespace, address)
        self.add_namespace(self.switch)
        ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
        ip("-n", self.switch, "link", "set", "br0", "up")
        ip("-n", self.switch, "link", "set", "lo", "up")

    @staticmethod
    def add_namespace(ns):
        ip("netns", "add", ns)
        namespaces.append(ns)

    def add_host(self, name, address):
        ns = f"{PREFIX}-{name}"
        self.add_namespace(ns)
        port = self.port(name)
        ip("link", "add", "eth0", "netns", ns, "type", "veth", "peer", "name", port, "netns", self.switch)
        ip("-n", self.switch, "link", "set", port, "master", "br0")
        ip("-n", self.switch, "link", "set", port, "up")
        ip("-n", ns, "addr", "add", f"{address}/24", "dev", "eth0")
        ip("-n", ns, "link", "set", "eth0", "up")
        ip("-n", ns, "link", "set", "lo", "up")
        self.hosts[name] = (ns, address)
        return ns

    @staticmethod
    def port(name):
        return f"p-{name}"  # the host's port on the switch (at most 15 characters)

    def ns(self, name):
        return self.hosts[name][0]

    def addr(self, name):
        return self.hosts[name][1]

    def link(self, name, up):
        ip("-n", self.switch, "link", "set", self.port(name), "up" if up else "down")

    def shape(self, name, rate):
        """Rate-limits what the switch sends to `name` (tc tbf), so that a transfer to it takes a while."""
        run(["ip", "netns", "exec", self.switch, "tc", "qdisc", "replace", "dev", self.port(name), "root", "tbf",
             "rate", rate, "burst", "4kb", "limit", "1mb"])

    def unshape(self, name):
        run(["ip", "netns", "exec", self.switch, "tc", "qdisc", "del", "dev", self.port(name), "root"],
            check_rc=False)

    def backlog(self, name):
        """Bytes queued in the shaper toward `name`."""
        out = run(["ip", "netns", "exec", self.switch, "tc", "-s", "qdisc", "show", "dev", self.port(name)]).stdout
        m = re.search(r"backlog (\d+)([KM]?)b", out)
        if not m:
            return 0
        return int(m.group(1)) * {"": 1, "K": 1000, "M": 1000000}[m.group(2)]

    def reachable(self, from_name, address, port, timeout=10.0):
        """Whether a TCP connection from `from_name`'s namespace to address:port succeeds within `timeout` (a port
        just brought up may take a moment: the neighbour entry is resolved again)."""
        code = ("import socket,sys,time\nend=time.time()+%r\nwhile True:\n"
                " try:\n  socket.create_connection((%r,%d),timeout=1).close();sys.exit(0)\n"
                " except OSError:\n  if time.time()>end: sys.exit(1)\n  time.sleep(0.2)") % (timeout, address, port)
        return run(["ip", "netns", "exec", self.ns(from_name), sys.executable, "-c", code], check_rc=False,
                   timeout=timeout + 10).returncode == 0


class Cluster:
    def __init__(self, build, net):
        self.alignd = os.path.join(build, "cli", "alignd")
        self.alignctl = os.path.join(build, "cli", "alignctl")
        self.net = net
        self.port = None
        self.workers = {}  # host name -> (Popen, log path, role)
        self.admin_token = "netns-admin-token-0123456789"
        self.worker_token = "netns-worker-token-0123456789"

    def spawn(self, host, args, log_name):
        path = os.path.join(run_dir, log_name)
        out = open(path, "ab")
        p = subprocess.Popen(["ip", "netns", "exec", self.net.ns(host), *args], stdout=out, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL, preexec_fn=die_with_parent)
        out.close()
        processes.append(p)
        return p, path

    def start_coordinator(self):
        with open(os.path.join(run_dir, "tokens"), "w") as f:
            f.write(f"{self.admin_token} netns-admin admin\n{self.worker_token} netns-workers worker\n")
        self.coordinator, self.coordinator_log = self.spawn(
            "coord", [self.alignd, "coordinator", f"--listen={COORD_IP}:0", f"--db={run_dir}/jobs.db",
                      f"--auth-tokens={run_dir}/tokens", f"--tls-cert={run_dir}/server.pem",
                      f"--tls-key={run_dir}/server.key", f"--lease-ttl-ms={LEASE_TTL_MS}"], "coordinator.log")
        m = wait_for_log(self.coordinator_log, r"coordinator listening on port (\d+)", 60, self.coordinator)
        check(m is not None, f"the coordinator serves TLS on {COORD_IP} inside its own namespace",
              tail(self.coordinator_log))
        self.port = int(m.group(1))

    def start_worker(self, host, role):
        address = self.net.addr(host)
        p, path = self.spawn(host, [self.alignd, "worker", f"--coordinator={COORD_IP}:{self.port}",
                                    f"--token={self.worker_token}", f"--tls-ca={run_dir}/ca.pem",
                                    f"--tls-cert={run_dir}/node.pem", f"--tls-key={run_dir}/node.key", f"--roles={role}",
                                    f"--listen={address}:0", f"--advertise-host={address}", "--threads=1",
                                    f"--collective-timeout-ms={COLLECTIVE_TIMEOUT_MS}"], f"worker-{host}.log")
        self.workers[host] = (p, path, role)

    def ctl(self, *args, timeout=30):
        return run(["ip", "netns", "exec", self.net.ns("coord"), self.alignctl, *args,
                    f"--coordinator={COORD_IP}:{self.port}", f"--token={self.admin_token}",
                    f"--tls-ca={run_dir}/ca.pem", "--timeout=10"], check_rc=False, timeout=timeout)

    def registered(self):
        """address -> worker id of every registered worker."""
        r = self.ctl("workers", "--output=json")
        if r.returncode != 0:
            return {}
        return {w["address"].rsplit(":", 1)[0]: w for w in json.loads(r.stdout)["workers"]}

    def wait_registered(self, hosts, timeout=REGISTER_TIMEOUT):
        deadline = time.time() + timeout
        while time.time() < deadline:
            have = self.registered()
            if all(self.net.addr(h) in have for h in hosts):
                return have
            time.sleep(0.3)
        return None

    def submit(self, name, spec):
        path = os.path.join(run_dir, f"{name}.yaml")
        with open(path, "w") as f:
            f.write(spec)
        r = self.ctl("submit", path, f"--request_id={name}")
        if r.returncode != 0:
            raise RuntimeError(f"submit {name}: {r.stdout}")
        return r.stdout.split()[0]

    def status(self, job):
        r = self.ctl("status", job, "--output=json")
        return json.loads(r.stdout) if r.returncode == 0 else None

    def events(self, job):
        r = self.ctl("logs", job, "--output=json")
        if r.returncode != 0:
            return []
        return [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]

    def jobs(self):
        r = self.ctl("list", "--output=json")
        if r.returncode != 0:
            raise RuntimeError(f"alignctl list: {r.stdout}")
        return json.loads(r.stdout)["jobs"]

    def wait_step(self, job, step, timeout=STEP_TIMEOUT):
        """Waits until the job's current attempt reports `step` or later; returns the events then."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            events = self.events(job)
            attempt = max((e["attempt"] for e in events), default=0)
            if any(e.get("step", 0) >= step and e["attempt"] == attempt and e["state"] == "RUNNING" for e in events):
                return events
            if any(e["state"] in ("SUCCEEDED", "FAILED", "CANCELLED") for e in events):
                return None
            time.sleep(0.2)
        return None

    def wait_done(self, job, timeout=JOB_TIMEOUT):
        deadline = time.time() + timeout
        while time.time() < deadline:
            s = self.status(job)
            if s and s["state"] in ("SUCCEEDED", "FAILED", "CANCELLED"):
                return s
            time.sleep(0.5)
        return self.status(job)

    def worker_of(self, job, role):
        """Hosts whose worker the coordinator lists as busy with `job` in `role` (roles are one per worker here)."""
        by_address = {a: h for h, (ns, a) in self.net.hosts.items()}
        return [by_address[a] for a, w in self.registered().items() if w["job"] == job and w["roles"] == role]


def wait_for_log(path, pattern, timeout, process=None):
    deadline = time.time() + timeout
    regex = re.compile(pattern, re.M)
    while time.time() < deadline:
        try:
            with open(path, errors="replace") as f:
                m = regex.search(f.read())
            if m:
                return m
        except FileNotFoundError:
            pass
        if process is not None and process.poll() is not None:
            return None
        time.sleep(0.2)
    return None


def tail(path, lines=30):
    try:
        with open(path, errors="replace") as f:
            return "\n" + "".join(f.readlines()[-lines:])
    except FileNotFoundError:
        return ""


def glog_time(line):
    """The wall time of a glog line (I1204 20:45:01.123456 or I20261204 ...), in the local time zone."""
    m = re.match(r"[IWEF](\d{4})?(\d\d)(\d\d) (\d\d):(\d\d):(\d\d)\.(\d+)", line)
    if not m:
        return None
    year = int(m.group(1)) if m.group(1) else time.localtime().tm_year
    t = time.mktime((year, int(m.group(2)), int(m.group(3)), int(m.group(4)), int(m.group(5)), int(m.group(6)), 0,
                     0, -1))
    return t + float("0." + m.group(7))


def left_gang(log_path, job, attempt, timeout):
    """Waits for the worker's line saying that its assignment `job` attempt `attempt` ended after the coordinator
    cancelled it; returns (time it ended, the status it ended with) or None."""
    pattern = rf"^.*: {re.escape(job)} attempt {attempt} ended after its cancel(.*)$"
    m = wait_for_log(log_path, pattern, timeout)
    if not m:
        return None
    return glog_time(m.group(0)), m.group(1)


# ---- the job -------------------------------------------------------------------------------------------------------

def spec(name):
    return f"""name: {name}
algorithm: ppo
output_dir: {run_dir}/runs/{name}
seed: 7
threads: 1
model:
  path: {run_dir}/policy
data:
  train: {run_dir}/data/prompts_train.jsonl
  chat_template: chatml
  max_length: 96
  max_prompt_length: 64
train:
  steps: {STEPS}
  batch_size: 8
  lr: 1.0e-3
  warmup_steps: 0
  schedule: constant
  checkpoint_every: 2
  log_every: 1
rewards:
  - type: toy.arithmetic
  - type: toy.refusal
  - type: toy.brevity
ppo:
  max_new_tokens: 8
  epochs: 1
  minibatches: 2
resources:
  learners: 2
  rollout_workers: 1
  reward_servers: 1
  max_restarts: 3
"""


def restarts(events):
    return [e for e in events if e["state"] == "RESTARTING"]


def check_resumed(events, name):
    """The last attempt started from a checkpoint, not from step 1: from the last one reported before the fault, or
    a later one that rank 0 wrote (the hosts share the run folder) but could not report once its link was down."""
    last = max(e["attempt"] for e in events)
    reported = 0
    for e in events:
        if e["attempt"] < last and e.get("metrics", {}).get("checkpoint/step", 0) > reported:
            reported = int(e["metrics"]["checkpoint/step"])
    first = min((e["step"] for e in events if e["attempt"] == last and e.get("step", 0) > 0), default=0)
    resumed = first - 1
    on_disk = os.path.isdir(os.path.join(run_dir, "runs", name, "checkpoints", f"step-{resumed:06d}"))
    check(reported >= 2 and resumed >= reported and resumed % 2 == 0 and on_disk,
          f"{name}: attempt {last} resumed from the checkpoint of step {resumed} (last reported before the fault: "
          f"{reported})")


def check_metrics(name):
    """metrics.jsonl has each step once, 1..STEPS (a resumed run drops the lines past its checkpoint)."""
    steps = []
    with open(os.path.join(run_dir, "runs", name, "metrics.jsonl")) as f:
        for line in f:
            j = json.loads(line)
            if "train/loss" in j:
                steps.append(j["step"])
    check(steps == list(range(1, STEPS + 1)), f"{name}: metrics.jsonl has steps 1..{STEPS} once each",
          str(steps))


# ---- scenarios -----------------------------------------------------------------------------------------------------

def scenario_learner_link_down(c, net):
    log("== scenario 1: learner rank 0's link goes down mid-job")
    job = c.submit("learner_link", spec("learner_link"))
    check(c.wait_step(job, 3) is not None, "learner_link: running past the checkpoint of step 2")
    learners = c.worker_of(job, "learner")
    check(len(learners) == 2, "learner_link: two learners hold the job", str(learners))
    ids = {h: c.registered()[net.addr(h)]["id"] for h in learners}
    leader = min(learners, key=lambda h: ids[h])  # rank 0: the gang's lowest worker id
    survivor = [h for h in learners if h != leader][0]
    events = c.events(job)
    attempt = max(e["attempt"] for e in events)
    net.link(leader, up=False)
    fault = time.time()
    log(f"link of {leader} ({net.addr(leader)}, learner rank 0) is down at step "
        f"{max(e.get('step', 0) for e in events)}")
    s = c.wait_done(job)
    elapsed = time.time() - fault
    events = c.events(job)
    check(s is not None and s["state"] == "SUCCEEDED", f"learner_link: SUCCEEDED {elapsed:.0f}s after the fault",
          json.dumps(s))
    check(any(f"worker {ids[leader]} lease lapsed" in e["message"] for e in restarts(events)),
          f"learner_link: the restart names {leader}'s lapsed lease ({ids[leader]})", json.dumps(restarts(events)))
    check(net.addr(leader) not in c.registered(), f"learner_link: {leader} is no longer registered while cut off")
    check(s["attempt"] == attempt + 1, f"learner_link: exactly one restart (attempt {s['attempt']})",
          json.dumps(restarts(events)))
    check_resumed(events, "learner_link")
    check_metrics("learner_link")
    left = left_gang(c.workers[survivor][1], job, attempt, LEAVE_BOUND)
    took = (left[0] - fault) if left else -1
    check(left is not None and took <= LEAVE_BOUND,
          f"learner_link: the surviving learner {survivor} left the old gang {took:.1f}s after the fault "
          f"(bound {LEAVE_BOUND:.0f}s){left[1] if left else ''}", tail(c.workers[survivor][1]))
    return job, leader


def scenario_rollout_partitioned_in_sync(c, net):
    log("== scenario 2: the rollout worker is partitioned while a weight version is on the wire to it")
    job = c.submit("rollout_sync", spec("rollout_sync"))
    check(c.wait_step(job, 3) is not None, "rollout_sync: running past the checkpoint of step 2")
    rollout = c.worker_of(job, "rollout")
    learners = c.worker_of(job, "learner")
    check(len(rollout) == 1 and len(learners) == 2, "rollout_sync: the gang holds one rollout worker and two learners")
    rollout = rollout[0]
    ids = {h: c.registered()[net.addr(h)]["id"] for h in learners + [rollout]}
    leader = min(learners, key=lambda h: ids[h])
    attempt = max(e["attempt"] for e in c.events(job))
    # Slow what reaches the rollout worker so that a weight version takes seconds on the wire, then fault once the
    # shaper holds part of one: the learner is then inside the broadcast.
    net.shape(rollout, "400kbit")
    deadline = time.time() + 60
    fired = False
    while time.time() < deadline:
        if net.backlog(rollout) >= 8000:
            time.sleep(0.3)
            backlog = net.backlog(rollout)
            if backlog >= 4000:
                net.link(rollout, up=False)
                fired = True
                break
        time.sleep(0.05)
    fault = time.time()
    check(fired, f"rollout_sync: link of {rollout} went down with {backlog if fired else 0} bytes of a weight "
                 f"version queued toward it")
    net.unshape(rollout)
    s = c.wait_done(job)
    elapsed = time.time() - fault
    events = c.events(job)
    check(s is not None and s["state"] == "SUCCEEDED", f"rollout_sync: SUCCEEDED {elapsed:.0f}s after the fault",
          json.dumps(s))
    check(s["attempt"] == attempt + 1, f"rollout_sync: exactly one restart (attempt {s['attempt']})",
          json.dumps(restarts(events)))
    check(any(f"worker {ids[rollout]} lease lapsed" in e["message"] for e in restarts(events)),
          f"rollout_sync: the restart names {rollout}'s lapsed lease ({ids[rollout]})", json.dumps(restarts(events)))
    left = left_gang(c.workers[leader][1], job, attempt, LEAVE_BOUND)
    check(left is not None and left[0] - fault <= LEAVE_BOUND,
          f"rollout_sync: learner rank 0 ({leader}) left the old gang {(left[0] - fault) if left else -1:.1f}s after "
          f"the fault (bound {LEAVE_BOUND:.0f}s){left[1] if left else ''}", tail(c.workers[leader][1]))
    check(left is not None and re.search(r"UpdateWeights|weight broadcast|bucket|manifest", left[1]) is not None,
          "rollout_sync: what failed was the weight broadcast", left[1] if left else "")
    check_resumed(events, "rollout_sync")
    check_metrics("rollout_sync")
    return job, rollout


def scenario_heal(c, net, jobs, partitioned):
    log("== scenario 3: the links come back; no job ran twice and none was lost")
    for host in partitioned:
        net.link(host, up=True)
    check(all(net.reachable(h, COORD_IP, c.port) for h in partitioned),
          f"healed: {', '.join(partitioned)} reach the coordinator again (within 10s of their ports coming up)")
    have = c.wait_registered(partitioned, timeout=REGISTER_TIMEOUT)
    check(have is not None, f"healed: {', '.join(partitioned)} registered again within {REGISTER_TIMEOUT}s")
    # A healed worker registers only once the assignment it held when cut off has returned (its cancel ends the calls
    # it was blocked in): registered while still inside it, it would stall the new gang it is placed in.
    for host in partitioned:
        with open(c.workers[host][1], errors="replace") as f:
            text = f.read()
        # Cut off inside a collective, it fails at the collective timeout; inside a call to a peer, at the cancel.
        ended = [m.end() for m in re.finditer(r": job-\d+ (attempt \d+ ended after its cancel|failed: )", text)]
        registered = [m.start() for m in re.finditer(r" registered as w-", text)]
        check(ended and len(registered) >= 2 and ended[0] < registered[-1],
              f"healed: {host}'s cut-off assignment returned before it registered again", tail(c.workers[host][1]))
    # Two jobs at once take every worker, the healed ones too.
    new = {name: c.submit(name, spec(name)) for name in ("after_heal_a", "after_heal_b")}
    for name, job in new.items():
        s = c.wait_done(job)
        check(s is not None and s["state"] == "SUCCEEDED" and s["attempt"] == 1,
              f"{name}: SUCCEEDED on its first attempt", json.dumps(s))
        jobs[name] = (job, 1)
    for host in partitioned:
        with open(c.workers[host][1], errors="replace") as f:
            text = f.read()
        took = [j for j in new.values() if re.search(rf": assignment {j} attempt 1 as", text)]
        check(len(took) == 1, f"healed: {host} took part in {took[0] if took else 'none'} after the heal")
    listed = c.jobs()
    check(sorted(j["name"] for j in listed) == sorted(jobs), "history: alignctl list shows each submitted job once",
          str([j["name"] for j in listed]))
    for name, (job, attempts) in jobs.items():
        row = [j for j in listed if j["id"] == job]
        check(len(row) == 1 and row[0]["state"] == "SUCCEEDED" and row[0]["attempt"] == attempts,
              f"history: {name} SUCCEEDED once, on attempt {attempts}", json.dumps(row))
        watched = c.ctl("watch", job, "--output=json", "--wait_timeout=20", timeout=40)
        events = [json.loads(line) for line in watched.stdout.splitlines() if line.startswith("{")]
        done = [e for e in events if e["state"] == "SUCCEEDED"]
        check(watched.returncode == 0 and len(done) == 1 and events[-1]["state"] == "SUCCEEDED",
              f"history: alignctl watch {name} ends SUCCEEDED with one completion event, nothing after it",
              json.dumps(done))
        check(len(restarts(events)) == row[0]["attempt"] - 1,
              f"history: {name} has {row[0]['attempt'] - 1} restart event(s) for its attempts")
        # The same request id again returns the same job and does not run it again.
        again = c.submit(name, spec(name))
        check(again == job and c.status(job)["state"] == "SUCCEEDED",
              f"history: resubmitting {name}'s request id returns {job} again, still SUCCEEDED")
    listed = c.jobs()
    check(len(listed) == len(jobs), f"history: still {len(jobs)} jobs after the resubmits")


# ---- main ----------------------------------------------------------------------------------------------------------

def main():
    global run_dir, failed
    if len(sys.argv) != 2:
        print(__doc__)
        return 2
    build = os.path.abspath(sys.argv[1])
    for binary in ("cli/alignd", "cli/alignctl"):
        if not os.access(os.path.join(build, binary), os.X_OK):
            print(f"netns_fault_test: {build}/{binary} is missing (build first)")
            return 1
    # gRPC honours proxy variables; every connection here stays between the test's own namespaces.
    for var in ("http_proxy", "https_proxy", "grpc_proxy", "HTTP_PROXY", "HTTPS_PROXY", "GRPC_PROXY", "all_proxy",
                "ALL_PROXY"):
        os.environ.pop(var, None)
    os.environ["no_proxy"] = os.environ["NO_PROXY"] = "*"
    atexit.register(cleanup)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if shutil.which("ip") is None or shutil.which("tc") is None:
        print("netns_fault_test: FAILED: needs iproute2 (ip, tc): apt-get install iproute2")
        return 1
    if shutil.which("openssl") is None:
        print("netns_fault_test: FAILED: needs openssl to make the coordinator's TLS certificate")
        return 1
    probe = f"{PREFIX}-probe"
    r = run(["ip", "netns", "add", probe], check_rc=False)
    if r.returncode != 0:
        print(f"netns_fault_test: FAILED: cannot create a network namespace (`ip netns add` says: {r.stdout.strip()}); "
              "this test needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN) and is not skipped without it")
        return 1
    # Scenario 2 slows a switch port with tc's token bucket filter (sch_tbf); try it on a veth in the probe namespace.
    shaped = run(["ip", "-n", probe, "link", "add", "name", "va", "type", "veth", "peer", "name", "vb"], check_rc=False)
    if shaped.returncode == 0:
        shaped = run(["ip", "netns", "exec", probe, "tc", "qdisc", "add", "dev", "va", "root", "tbf", "rate", "1mbit",
                      "burst", "4kb", "limit", "64kb"], check_rc=False)
    subprocess.run(["ip", "netns", "del", probe])
    if shaped.returncode != 0:
        print(f"netns_fault_test: FAILED: cannot shape a veth with tc tbf ({shaped.stdout.strip()}); scenario 2 needs "
              "the kernel's veth and sch_tbf")
        return 1
    remove_leftovers()
    run_dir = tempfile.mkdtemp(prefix="alignd-netns-", dir=os.environ.get("TMPDIR", "/tmp"))
    log(f"run folder {run_dir}")
    try:
        # Certificates: a CA, and the coordinator's certificate for its address.
        run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{run_dir}/ca.key", "-out",
             f"{run_dir}/ca.pem", "-days", "2", "-subj", "/CN=alignd-netns-ca"])
        run(["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{run_dir}/server.key", "-out",
             f"{run_dir}/server.csr", "-subj", "/CN=alignd-netns-coordinator"])
        with open(f"{run_dir}/server.ext", "w") as f:
            f.write(f"subjectAltName=IP:{COORD_IP}\nextendedKeyUsage=serverAuth\n")
        run(["openssl", "x509", "-req", "-in", f"{run_dir}/server.csr", "-CA", f"{run_dir}/ca.pem", "-CAkey",
             f"{run_dir}/ca.key", "-CAcreateserial", "-out", f"{run_dir}/server.pem", "-days", "2", "-extfile",
             f"{run_dir}/server.ext"])
        # The workers' certificate (one for all: it names every address of the subnet): their own servers serve TLS
        # and require the peers' certificates, as alignd worker does whenever the cluster runs TLS off loopback.
        run(["openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{run_dir}/node.key", "-out",
             f"{run_dir}/node.csr", "-subj", "/CN=alignd-netns-worker"])
        with open(f"{run_dir}/node.ext", "w") as f:
            sans = ",".join(f"IP:{SUBNET}.{i}" for i in range(1, 64))
            f.write(f"subjectAltName={sans}\nextendedKeyUsage=serverAuth,clientAuth\n")
        run(["openssl", "x509", "-req", "-in", f"{run_dir}/node.csr", "-CA", f"{run_dir}/ca.pem", "-CAkey",
             f"{run_dir}/ca.key", "-CAcreateserial", "-out", f"{run_dir}/node.pem", "-days", "2", "-extfile",
             f"{run_dir}/node.ext"])
        # A tiny model and data that alignd makes itself.
        alignd, alignctl = os.path.join(build, "cli/alignd"), os.path.join(build, "cli/alignctl")
        run([alignd, "init", "--out", f"{run_dir}/policy", "--hidden_size", "32", "--layers", "2", "--heads", "4",
             "--kv_heads", "2", "--max_positions", "256", "--seed", "5", "--threads", "1"], timeout=120)
        run([alignctl, "data", "synth", "--out", f"{run_dir}/data", "--pretrain", "10", "--sft_train", "10",
             "--sft_eval", "10", "--pref_train", "10", "--pref_eval", "10", "--prompts_train", "64",
             "--prompts_eval", "8"], timeout=120)

        net = Network()
        # Workers in the order they register (the scheduler fills a gang from the lowest ids): the first job's gang,
        # then the spares that a restarted gang is placed on.
        roles = [("l1", "learner"), ("l2", "learner"), ("r1", "rollout"), ("w1", "reward"),
                 ("l3", "learner"), ("l4", "learner"), ("r2", "rollout"), ("w2", "reward")]
        net.add_host("coord", COORD_IP)
        for i, (host, _) in enumerate(roles):
            net.add_host(host, f"{SUBNET}.{11 + i}")
        log(f"{len(roles) + 1} hosts in their own namespaces on {SUBNET}.0/24 behind a bridge in {net.switch}")
        c = Cluster(build, net)
        c.start_coordinator()
        check(net.reachable("l1", COORD_IP, c.port), f"l1 reaches the coordinator at {COORD_IP}:{c.port} "
                                                    "across the bridge")
        for host, role in roles:
            c.start_worker(host, role)
            check(c.wait_registered([host]) is not None,
                  f"{host} ({role}) registered from {net.addr(host)}", tail(c.workers[host][1]))

        job1, leader = scenario_learner_link_down(c, net)
        job2, rollout = scenario_rollout_partitioned_in_sync(c, net)
        scenario_heal(c, net, {"learner_link": (job1, 2), "rollout_sync": (job2, 2)}, [leader, rollout])
    except (CheckFailed, RuntimeError, subprocess.TimeoutExpired) as e:
        failed = True
        log(f"FAILED: {e}")
        for name in sorted(os.listdir(run_dir)):
            if name.endswith(".log"):
                print(f"---- {name} (last lines){tail(os.path.join(run_dir, name), 25)}")
        log(f"logs kept in {run_dir}")
        return 1
    log(f"PASSED: {len(checks)} checks in {time.time() - START:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
