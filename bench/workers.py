"""Call one method of every MediaWorker of a Ray cluster, from a subprocess: the bench and the tests stay
out of Ray themselves (and a cluster node's namespace runs the same command, see tests/cluster)."""

import json
import os
import subprocess
import sys
from typing import Any

from bench.result import ScenarioError

_SCRIPT = """
import json, sys, ray
ray.init(address=sys.argv[1], namespace="raysfu", log_to_driver=False)
names = sorted(a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
               if a["namespace"] == "raysfu" and a["name"].startswith("media:"))
out = {n: ray.get(getattr(ray.get_actor(n), sys.argv[2]).remote(), timeout=30) for n in names}
print("WORKERS " + json.dumps(out, default=lambda o: o.hex() if isinstance(o, bytes) else repr(o)))
"""


def workers_command(method: str, address: str = "auto") -> list[str]:
    """The command that prints {worker name: its `method()`} for the Ray cluster at `address`."""
    return [sys.executable, "-c", _SCRIPT, address, method]


def parse_workers(done: subprocess.CompletedProcess[str], method: str) -> dict[str, Any]:
    """What `workers_command` printed; ScenarioError when it printed nothing."""
    lines = [x for x in done.stdout.splitlines() if x.startswith("WORKERS ")]
    if done.returncode != 0 or not lines:
        raise ScenarioError(
            f"the media workers' {method}() could not be read (exit {done.returncode}): {done.stderr[-3000:]}"
        )
    result: dict[str, Any] = json.loads(lines[-1].removeprefix("WORKERS "))
    return result


def call_workers(method: str, address: str = "auto") -> dict[str, Any]:
    """{worker name: what its `method()` returned}, for a local (unauthenticated) Ray."""
    try:
        done = subprocess.run(
            workers_command(method, address), capture_output=True, text=True, timeout=90, check=False,
            env={**os.environ, "RAY_AUTH_MODE": "disabled"},
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError) as exc:
        raise ScenarioError(f"the media workers' {method}() could not be read: {exc}") from exc
    return parse_workers(done, method)
