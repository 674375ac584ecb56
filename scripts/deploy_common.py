"""What `make deploy-check` (scripts/deploy-check.py) and `make deploy-run`
(scripts/deploy-run.py) both need: where the repository and the binary are, and which
services there are."""

import os
import pathlib
import subprocess

ROOT = pathlib.Path(__file__).resolve().parent.parent


def binary() -> str:
    """The `connectability` binary: CONNECTABILITY_BIN, else the debug build."""
    if os.environ.get("CONNECTABILITY_BIN"):
        return os.environ["CONNECTABILITY_BIN"]
    target = os.environ.get("CARGO_TARGET_DIR", str(ROOT / "target"))
    return str(pathlib.Path(target) / "debug" / "connectability")


def services() -> list[str]:
    """Every service, as the composition root lists them (`connectability services`)."""
    out = subprocess.run([binary(), "services"], capture_output=True, text=True, check=True)
    return sorted(line.split("\t", 1)[0] for line in out.stdout.splitlines() if line.strip())
