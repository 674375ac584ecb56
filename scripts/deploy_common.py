"""What `make deploy-check` (scripts/deploy-check.py) and `make deploy-run`
(scripts/deploy-run.py) both need: where the repository and the binary are, and which
services there are."""

import os
import pathlib

ROOT = pathlib.Path(__file__).resolve().parent.parent


def binary() -> str:
    """The `connectability` binary: CONNECTABILITY_BIN, else the debug build."""
    if os.environ.get("CONNECTABILITY_BIN"):
        return os.environ["CONNECTABILITY_BIN"]
    target = os.environ.get("CARGO_TARGET_DIR", str(ROOT / "target"))
    return str(pathlib.Path(target) / "debug" / "connectability")


def services() -> list[str]:
    """Every service crate under services/ (the umbrella binary excluded)."""
    return sorted(
        d.name
        for d in (ROOT / "services").iterdir()
        if d.is_dir() and d.name != "connectability"
    )
