#!/usr/bin/env python3
"""`make deploy-check`: renders every overlay under deploy/overlays with `kubectl kustomize`,
validates every object against the Kubernetes 1.31 schemas (kubernetes-validate, strict),
and checks the manifests against the code:

- every service in services/ has a Deployment in every overlay;
- every environment variable a service's containers set (env and envFrom ConfigMaps) is
  one its binary reads (`connectability serve <service> --help` lists them);
- every gRPC probe names a health entry the service serves (its proto services) or none;
- every service has a PodDisruptionBudget, and the sync services and notification a
  HorizontalPodAutoscaler (except in `dev`, which runs one replica of each);
- each service's NetworkPolicy lets in gRPC from exactly the services that call it, and
  its egress policy lets out gRPC to exactly the services it calls, as the Deployments'
  `*_URL` settings say (`DIRECTORY_URL: http://directory:50051`, …);
- every container, init containers too, of every workload in every overlay drops ALL
  capabilities, runs as non-root with a read-only root filesystem, no privilege escalation
  and `seccompProfile: RuntimeDefault`; no pod mounts the default ServiceAccount token; every
  service runs under its own ServiceAccount and (outside `dev`) presents its projected
  identity token (SERVICE_TOKEN_FILE), serves gRPC over TLS and calls its peers by https;
- deploy/nats/nats.conf has a user for every service, each publishing its own context only;
- deploy/observability: the Grafana dashboard parses and every panel has a query, every
  alert rule has a name, an expression and a summary, the alerts the runbook promises exist,
  and every metric either file queries is documented in docs/observability.md (the metrics
  suite checks that each is exported after a sync).

Needs kubectl, kubernetes-validate (pip install kubernetes-validate) and the
`connectability` binary (CONNECTABILITY_BIN, default the debug build in CARGO_TARGET_DIR).
"""

import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile

try:
    import yaml
except ImportError:
    sys.exit("deploy-check: needs PyYAML: pip install pyyaml")

from deploy_common import ROOT, binary, services
KUBERNETES_VERSION = "1.31.0"
# Read by libraries rather than by our flags: tracing's filter, object_store's S3
# credentials, OpenTelemetry's exporter settings.
LIBRARY_ENV = re.compile(r"^(RUST_LOG|AWS_[A-Z0-9_]+|OTEL_[A-Z0-9_]+)$")
# Scaled on CPU by an HPA: the services whose work grows with the copies to make.
AUTOSCALED = {"drawings-sync", "rfi-sync", "submittal-sync", "notification"}
# Overlays that run one replica of everything (no HPA).
SINGLE_REPLICA_OVERLAYS = {"dev"}
METRIC = re.compile(r"\b((?:connectability|grpc_server)_[a-z0-9_]*[a-z0-9])\b")


def env_read_by(service: str) -> set[str]:
    out = subprocess.run(
        [binary(), "serve", service, "--help"], capture_output=True, text=True, check=True
    ).stdout
    return set(re.findall(r"env: ([A-Z0-9_]+)", out))


def grpc_services() -> dict[str, set[str]]:
    """Proto services by context directory name (`drawings` -> {full names})."""
    found: dict[str, set[str]] = {}
    for proto in (ROOT / "proto" / "connectability").glob("*/v1/*.proto"):
        text = proto.read_text()
        package = re.search(r"^package ([\w.]+);", text, re.M)
        if not package:
            continue
        for name in re.findall(r"^service (\w+)", text, re.M):
            found.setdefault(proto.parent.parent.name, set()).add(f"{package.group(1)}.{name}")
    return found


# Which proto context each service serves.
CONTEXT = {
    "directory": "directory",
    "connection-manager": "connections",
    "drawings-sync": "drawings",
    "rfi-sync": "rfis",
    "submittal-sync": "submittals",
    "notification": "notifications",
}


def selects(selector: dict, labels: dict) -> bool:
    want = selector.get("matchLabels") or {}
    return bool(want) and all(labels.get(k) == v for k, v in want.items())


def pod_labels(deployment: dict) -> dict:
    return deployment["spec"]["template"]["metadata"].get("labels") or {}


def check_availability(overlay: str, objects: list, deployments: dict, svcs: list) -> list[str]:
    failures = []
    pdbs = [o for o in objects if o["kind"] == "PodDisruptionBudget"]
    hpas = {
        o["spec"]["scaleTargetRef"]["name"]
        for o in objects
        if o["kind"] == "HorizontalPodAutoscaler"
        and o["spec"]["scaleTargetRef"]["kind"] == "Deployment"
    }
    for service in svcs:
        deployment = deployments.get(service)
        if deployment is None:
            continue
        if not any(selects(p["spec"].get("selector") or {}, pod_labels(deployment)) for p in pdbs):
            failures.append(f"{overlay}: no PodDisruptionBudget selects {service}")
        if overlay in SINGLE_REPLICA_OVERLAYS:
            if service in hpas:
                failures.append(f"{overlay}: runs one replica, yet {service} has an HPA")
        elif service in AUTOSCALED and service not in hpas:
            failures.append(f"{overlay}: no HorizontalPodAutoscaler for {service}")
    return failures


def check_network_policies(overlay: str, objects: list, deployments: dict, svcs: list) -> list[str]:
    """The gRPC callers each policy admits are exactly the services whose `*_URL` names it."""
    failures = []
    callers: dict[str, set[str]] = {s: set() for s in svcs}
    for caller in svcs:
        deployment = deployments.get(caller)
        if deployment is None:
            continue
        for c in deployment["spec"]["template"]["spec"].get("containers", []):
            for e in c.get("env", []):
                m = re.match(r"^https?://([a-z0-9-]+):50051/?$", str(e.get("value", "")))
                if e["name"].endswith("_URL") and m and m.group(1) in callers:
                    callers[m.group(1)].add(caller)
    policies = [o for o in objects if o["kind"] == "NetworkPolicy"]
    for service in svcs:
        deployment = deployments.get(service)
        if deployment is None:
            continue
        mine = [p for p in policies if selects(p["spec"].get("podSelector") or {}, pod_labels(deployment))]
        if not mine:
            failures.append(f"{overlay}: no NetworkPolicy selects {service}")
            continue
        admitted: set[str] = set()
        for p in mine:
            for rule in p["spec"].get("ingress", []):
                ports = {str(port.get("port")) for port in rule.get("ports", [])}
                if not ports & {"grpc", "50051"}:
                    continue
                for peer in rule.get("from", []):
                    app = ((peer.get("podSelector") or {}).get("matchLabels") or {}).get(
                        "app.kubernetes.io/name"
                    )
                    if app and "namespaceSelector" not in peer:
                        admitted.add(app)
        if admitted != callers[service]:
            failures.append(
                f"{overlay}: {service}'s NetworkPolicy admits gRPC from {sorted(admitted)}, "
                f"but the services that call it are {sorted(callers[service])}"
            )
        # Egress: gRPC to exactly the services it calls, and nothing unlisted.
        egress = [p for p in mine if "Egress" in (p["spec"].get("policyTypes") or [])]
        if not egress:
            failures.append(f"{overlay}: no egress NetworkPolicy selects {service}")
            continue
        reaches: set[str] = set()
        for p in egress:
            for rule in p["spec"].get("egress", []):
                ports = {str(port.get("port")) for port in rule.get("ports", [])}
                if not ports & {"grpc", "50051"}:
                    continue
                for peer in rule.get("to", []):
                    app = ((peer.get("podSelector") or {}).get("matchLabels") or {}).get(
                        "app.kubernetes.io/name"
                    )
                    if app:
                        reaches.add(app)
        calls = {callee for callee, by in callers.items() if service in by}
        if reaches != calls:
            failures.append(
                f"{overlay}: {service}'s egress admits gRPC to {sorted(reaches)}, "
                f"but it calls {sorted(calls)}"
            )
    return failures


WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "Job"}


def check_hardening(overlay: str, objects: list, svcs: list) -> list[str]:
    """Least privilege for every container of every workload."""
    failures = []
    for o in objects:
        if o["kind"] not in WORKLOADS:
            continue
        name = o["metadata"]["name"]
        pod = o["spec"]["template"]["spec"]
        pod_sc = pod.get("securityContext") or {}
        if pod.get("automountServiceAccountToken") is not False:
            failures.append(f"{overlay}: {o['kind']} {name} mounts the default ServiceAccount token")
        if name in svcs and overlay not in SINGLE_REPLICA_OVERLAYS:
            # Outside dev, gRPC between services is TLS: each serves it, each peer URL is https.
            for c in pod.get("containers", []):
                env = {e["name"]: str(e.get("value", "")) for e in c.get("env", [])}
                if "GRPC_TLS_CERT_FILE" not in env:
                    failures.append(f"{overlay}: {name} serves gRPC without TLS (GRPC_TLS_CERT_FILE)")
                for var, value in env.items():
                    if var.endswith("_URL") and value.startswith("http://"):
                        failures.append(f"{overlay}: {name} calls {value} ({var}) without TLS")
        if name in svcs:
            if pod.get("serviceAccountName") != name:
                failures.append(f"{overlay}: {name} does not run under its own ServiceAccount")
            if overlay not in SINGLE_REPLICA_OVERLAYS:
                projected = [
                    src
                    for v in pod.get("volumes", [])
                    for src in (v.get("projected") or {}).get("sources", [])
                    if "serviceAccountToken" in src
                ]
                if not projected:
                    failures.append(f"{overlay}: {name} has no projected identity token")
        for c in pod.get("containers", []) + pod.get("initContainers", []):
            sc = c.get("securityContext") or {}
            where = f"{overlay}: {o['kind']} {name}/{c['name']}"
            if "ALL" not in ((sc.get("capabilities") or {}).get("drop") or []):
                failures.append(f"{where} does not drop ALL capabilities")
            seccomp = (sc.get("seccompProfile") or pod_sc.get("seccompProfile") or {}).get("type")
            if seccomp != "RuntimeDefault":
                failures.append(f"{where} has no seccompProfile RuntimeDefault")
            if not (sc.get("runAsNonRoot") or pod_sc.get("runAsNonRoot")):
                failures.append(f"{where} may run as root")
            if sc.get("readOnlyRootFilesystem") is not True:
                failures.append(f"{where} has a writable root filesystem")
            if sc.get("allowPrivilegeEscalation") is not False:
                failures.append(f"{where} allows privilege escalation")
    return failures


def check_nats_config(svcs: list) -> list[str]:
    """Every service has its own NATS user; each publishes only its own context."""
    text = (ROOT / "deploy" / "nats" / "nats.conf").read_text()
    failures = []
    users = dict(
        re.findall(r"user:\s*([a-z-]+)\s*\n\s*password:[^\n]*\n\s*permissions:\s*\{\s*publish:\s*\{\s*allow:\s*\[\s*\"?([^\",\s]*)", text)
    )
    for service in svcs:
        if service not in users:
            failures.append(f"deploy/nats/nats.conf: no user with permissions for {service}")
            continue
        context = CONTEXT.get(service, "")
        first = users[service]
        if service != "notification" and first != f"*.{context}.>":
            failures.append(
                f"deploy/nats/nats.conf: {service} should publish `*.{context}.>` first, not `{first}`"
            )
    return failures


def check_observability() -> list[str]:
    import json

    failures = []
    directory = ROOT / "deploy" / "observability"
    documented = set(METRIC.findall((ROOT / "docs" / "observability.md").read_text()))
    queried: dict[str, set[str]] = {}
    try:
        dashboard = json.loads((directory / "dashboard.json").read_text())
    except (OSError, ValueError) as e:
        return [f"deploy/observability/dashboard.json: {e}"]
    exprs = []
    for panel in dashboard.get("panels", []):
        targets = [t.get("expr", "") for t in panel.get("targets", []) if t.get("expr")]
        if not targets:
            failures.append(f"dashboard.json: panel {panel.get('title')!r} has no query")
        exprs += targets
    queried["dashboard.json"] = set(METRIC.findall("\n".join(exprs)))
    try:
        rules = yaml.safe_load((directory / "alerts.yaml").read_text())
    except (OSError, yaml.YAMLError) as e:
        return failures + [f"deploy/observability/alerts.yaml: {e}"]
    alerts = {}
    for group in rules.get("groups", []):
        for rule in group.get("rules", []):
            name = rule.get("alert")
            if not name or not rule.get("expr") or not (rule.get("annotations") or {}).get("summary"):
                failures.append(f"alerts.yaml: rule {rule!r} needs alert, expr and annotations.summary")
                continue
            alerts[name] = str(rule["expr"])
    queried["alerts.yaml"] = set(METRIC.findall("\n".join(alerts.values())))
    promised = {
        "ConnectabilityDeadLetters": ("connectability_dead_letters", "> 0"),
        "ConnectabilitySyncLagHigh": ("connectability_sync_lag_seconds", "> 300"),
        "ConnectabilityOutboxStuck": ("connectability_outbox_oldest_age_seconds", "> 60"),
    }
    for name, (metric, threshold) in promised.items():
        expr = alerts.get(name, "")
        if metric not in expr or threshold not in expr:
            failures.append(f"alerts.yaml: {name} should alert on {metric} {threshold}")
    for file, names in queried.items():
        families = {re.sub(r"_(bucket|sum|count)$", "", n) for n in names}
        for n in sorted(families - documented):
            failures.append(f"{file} queries {n}, which docs/observability.md does not list")
    print(
        f"deploy-check: observability: {len(dashboard.get('panels', []))} panels, "
        f"{len(alerts)} alerts, {len(set().union(*queried.values()))} metrics queried, all documented"
        if not failures
        else "deploy-check: observability: problems found"
    )
    return failures


def require_tools() -> None:
    """Say what to install rather than fail with a traceback."""
    missing = []
    if not shutil.which("kubectl"):
        missing.append("kubectl (for `kubectl kustomize`): https://kubernetes.io/docs/tasks/tools/")
    if not shutil.which("kubernetes-validate"):
        missing.append("kubernetes-validate: pip install kubernetes-validate")
    if not pathlib.Path(binary()).exists():
        missing.append(f"the connectability binary at {binary()}: cargo build -p connectability")
    if missing:
        sys.exit("deploy-check: missing tools:\n  " + "\n  ".join(missing))


def main() -> int:
    require_tools()
    failures: list[str] = []
    svcs = services()
    missing_context = [s for s in svcs if s not in CONTEXT]
    if missing_context:
        failures.append(f"scripts/deploy-check.py does not know the proto context of {missing_context}")
    env = {s: env_read_by(s) for s in svcs}
    protos = grpc_services()
    overlays = sorted(p for p in (ROOT / "deploy" / "overlays").iterdir() if p.is_dir())
    for overlay in overlays:
        name = overlay.name
        rendered = subprocess.run(
            ["kubectl", "kustomize", str(overlay)], capture_output=True, text=True
        )
        if rendered.returncode != 0:
            failures.append(f"{name}: kubectl kustomize failed: {rendered.stderr.strip()}")
            continue
        with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
            f.write(rendered.stdout)
            path = f.name
        valid = subprocess.run(
            ["kubernetes-validate", "--strict", "--quiet", "-k", KUBERNETES_VERSION, path],
            capture_output=True,
            text=True,
        )
        os.unlink(path)
        if valid.returncode != 0:
            failures.append(
                f"{name}: not valid Kubernetes {KUBERNETES_VERSION}:\n{valid.stdout}{valid.stderr}"
            )
        objects = [o for o in yaml.safe_load_all(rendered.stdout) if o]
        config_maps = {
            o["metadata"]["name"]: set((o.get("data") or {}).keys())
            for o in objects
            if o["kind"] == "ConfigMap"
        }
        deployments = {
            o["metadata"]["name"]: o for o in objects if o["kind"] == "Deployment"
        }
        failures += check_availability(name, objects, deployments, svcs)
        failures += check_hardening(name, objects, svcs)
        failures += check_network_policies(name, objects, deployments, svcs)
        for service in svcs:
            deployment = deployments.get(service)
            if deployment is None:
                failures.append(f"{name}: no Deployment for {service}")
                continue
            pod = deployment["spec"]["template"]["spec"]
            own = protos.get(CONTEXT.get(service, ""), set())
            for c in pod.get("containers", []) + pod.get("initContainers", []):
                names = {e["name"] for e in c.get("env", [])}
                for source in c.get("envFrom", []):
                    ref = source.get("configMapRef", {}).get("name")
                    if ref:
                        names |= config_maps.get(ref, set())
                for var in sorted(names):
                    if var not in env[service] and not LIBRARY_ENV.match(var):
                        failures.append(
                            f"{name}: {service}/{c['name']} sets {var}, which `serve {service}` does not read"
                        )
                for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
                    grpc = (c.get(probe) or {}).get("grpc")
                    if grpc and grpc.get("service") and grpc["service"] not in own:
                        failures.append(
                            f"{name}: {service}/{c['name']} {probe} asks health of {grpc['service']}, which {service} does not serve ({sorted(own)})"
                        )
        print(f"deploy-check: {name}: {len(objects)} objects rendered and checked")
    failures += check_nats_config(svcs)
    failures += check_observability()
    for f in failures:
        print(f"deploy-check: FAIL: {f}", file=sys.stderr)
    if failures:
        return 1
    print(f"deploy-check: ok: {len(overlays)} overlays, {len(svcs)} services")
    return 0


if __name__ == "__main__":
    sys.exit(main())
