"""`make import-graph`: nothing under libs/ depends on a crate under services/ (the layers
only import downward; the composition root and the harnesses sit above the services)."""

import json
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent


def main() -> int:
    meta = json.loads(
        subprocess.run(
            ["cargo", "metadata", "--no-deps", "--format-version", "1"],
            cwd=ROOT, capture_output=True, text=True, check=True,
        ).stdout
    )
    where = {p["name"]: pathlib.Path(p["manifest_path"]).parent.relative_to(ROOT) for p in meta["packages"]}
    services = {n for n, d in where.items() if d.parts[0] == "services"}
    bad = [
        f"{p['name']} ({where[p['name']]}) depends on the service {d['name']}"
        for p in meta["packages"]
        if where[p["name"]].parts[0] == "libs"
        for d in p["dependencies"]
        if d["name"] in services
    ]
    for line in bad:
        print(f"import-graph: {line}", file=sys.stderr)
    if bad:
        return 1
    libs = sum(1 for d in where.values() if d.parts[0] == "libs")
    print(f"import-graph: {libs} crates under libs/ import no service")
    return 0


if __name__ == "__main__":
    sys.exit(main())
