#!/usr/bin/env python3
"""`make deploy-check`: renders every overlay under deploy/overlays with `kubectl kustomize`,
validates every object against the Kubernetes 1.31 schemas (kubernetes-validate, strict),
and checks the manifests against the code:

- every service in services/ has a Deployment in every overlay;
- every environment variable a service's containers set (env and envFrom ConfigMaps) is
  one its binary reads (`connectability serve <service> --help` lists them);
- every gRPC probe names a health entry the service serves (its proto services) or none.

Needs kubectl, kubernetes-validate (pip install kubernetes-validate) and the
`connectability` binary (CONNECTABILITY_BIN, default the debug build in CARGO_TARGET_DIR).
"""

import os
import pathlib
import re
import subprocess
import sys
import tempfile

import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent
KUBERNETES_VERSION = "1.31.0"
# Read by libraries rather than by our flags: tracing's filter, object_store's S3 credentials.
LIBRARY_ENV = re.compile(r"^(RUST_LOG|AWS_[A-Z0-9_]+)$")


def binary() -> str:
    if os.environ.get("CONNECTABILITY_BIN"):
        return os.environ["CONNECTABILITY_BIN"]
    target = os.environ.get("CARGO_TARGET_DIR", str(ROOT / "target"))
    return str(pathlib.Path(target) / "debug" / "connectability")


def services() -> list[str]:
    return sorted(
        d.name
        for d in (ROOT / "services").iterdir()
        if d.is_dir() and d.name != "connectability"
    )


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


def main() -> int:
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
    for f in failures:
        print(f"deploy-check: FAIL: {f}", file=sys.stderr)
    if failures:
        return 1
    print(f"deploy-check: ok: {len(overlays)} overlays, {len(svcs)} services")
    return 0


if __name__ == "__main__":
    sys.exit(main())
