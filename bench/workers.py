"""A method of every MediaWorker of the local Ray (the bench's dev server), called from a subprocess: the
bench process itself stays out of Ray."""

import json
import os
import subprocess
import sys
from typing import Any

from bench.result import ScenarioError

_SCRIPT = """
import json, sys, ray
ray.init(address="auto", namespace="raysfu", log_to_driver=False)
names = sorted(a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
               if a["namespace"] == "raysfu" and a["name"].startswith("media:"))
out = {n: ray.get(getattr(ray.get_actor(n), sys.argv[1]).remote(), timeout=30) for n in names}
print("WORKERS " + json.dumps(out, default=repr))
"""


def call_workers(method: str) -> dict[str, Any]:
    """{worker name: what its `method()` returned}; ScenarioError when they cannot be asked."""
    try:
        done = subprocess.run(
            [sys.executable, "-c", _SCRIPT, method], capture_output=True, text=True, timeout=90, check=False,
            env={**os.environ, "RAY_AUTH_MODE": "disabled"},
        )  # fmt: skip
        lines = [x for x in done.stdout.splitlines() if x.startswith("WORKERS ")]
        if not lines:
            raise ScenarioError(f"the media workers' {method}() could not be read: {done.stderr[-500:]}")
        result: dict[str, Any] = json.loads(lines[-1].removeprefix("WORKERS "))
        return result
    except (OSError, subprocess.SubprocessError, ValueError) as exc:
        raise ScenarioError(f"the media workers' {method}() could not be read: {exc}") from exc
