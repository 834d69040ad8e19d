"""raysfu under test: `raysfu serve --dev` as a subprocess inside the bench's network namespace."""

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from livekit import api as lkapi

from bench.proc import descendants, read_stats
from bench.result import ScenarioError

API_KEY, API_SECRET = "devkey", "secret"  # what `raysfu serve --dev` accepts
ICE_ADDRESS = "10.213.0.1"  # rsfu0 inside scripts/netns-run
READY_TIMEOUT = 90.0
STOP_TIMEOUT = 30.0


@dataclass(frozen=True)
class Server:
    url: str
    http_url: str
    pid: int
    log_path: Path

    def token(self, identity: str, room: str) -> str:
        return (
            lkapi.AccessToken(API_KEY, API_SECRET)
            .with_identity(identity)
            .with_grants(lkapi.VideoGrants(room_join=True, room=room))
            .to_jwt()
        )

    def log_tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(line[:300] for line in text.splitlines()[-lines:])


def can_bind(address: str, port: int, kind: socket.SocketKind = socket.SOCK_STREAM) -> bool:
    with socket.socket(socket.AF_INET, kind) as sock:
        try:
            sock.bind((address, port))
        except OSError:
            return False
        return True


def healthy(http_url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{http_url}/healthz", timeout=2) as response:
            return bool(response.status == 200 and response.read().strip() == b"ok")
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


def start_dev_server(
    port: int, dashboard_port: int, ice_address: str, log_path: Path, extra_args: Sequence[str] = ()
) -> "subprocess.Popen[bytes]":
    """This venv's `raysfu serve --dev` in a session of its own (Ctrl-C reaches only its caller), its output
    to `log_path`. Shared by the bench and the interop tests' fixtures."""
    raysfu = Path(sys.executable).with_name("raysfu")
    if not raysfu.exists():
        raise FileNotFoundError(f"{raysfu} not found: install the project with `pip install -e '.[test]'`")
    command = [
        str(raysfu), "serve", "--dev", "--ice-address", ice_address,
        "--port", str(port), "--dashboard-port", str(dashboard_port), *extra_args,
    ]  # fmt: skip
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log:
        return subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1", "RAY_AUTH_MODE": "disabled"},
            start_new_session=True,
        )  # fmt: skip


def wait_healthy(process: "subprocess.Popen[bytes]", http_url: str, timeout: float) -> str:
    """'' once GET /healthz answers 200 "ok"; otherwise why the server is not ready."""
    deadline = time.monotonic() + timeout
    while not healthy(http_url):
        if process.poll() is not None:
            return f"`raysfu serve` exited with code {process.returncode} before it was ready"
        if time.monotonic() > deadline:
            return f"{http_url}/healthz did not answer 200 'ok' within {timeout:.0f} s"
        time.sleep(0.2)
    return ""


@contextlib.contextmanager
def running_raysfu(
    log_dir: Path, port: int = 7880, dashboard_port: int = 8265, extra_args: Sequence[str] = ()
) -> Iterator[Server]:
    if not can_bind(ICE_ADDRESS, 0, socket.SOCK_DGRAM):
        raise ScenarioError(
            f"{ICE_ADDRESS} is not an address here: run the bench inside scripts/netns-run (as root, "
            "`python -m bench` re-executes itself there)"
        )
    if not can_bind("127.0.0.1", port):
        raise ScenarioError(f"port {port} is taken: is another raysfu server running?")
    log_path = log_dir / "raysfu.log"
    process = start_dev_server(port, dashboard_port, ICE_ADDRESS, log_path, extra_args)
    server = Server(f"ws://127.0.0.1:{port}", f"http://127.0.0.1:{port}", process.pid, log_path)
    try:
        failure = wait_healthy(process, server.http_url, READY_TIMEOUT)
        if failure:
            raise ScenarioError(f"{failure}:\n{server.log_tail()}")
        yield server
    finally:
        tree = descendants(read_stats(), process.pid) - {process.pid}
        stop_dev_server(process, STOP_TIMEOUT)
        _reap(tree, port)


def stop_dev_server(process: "subprocess.Popen[bytes]", timeout: float) -> str:
    """SIGTERM, then SIGKILL after `timeout`; '' when the server exited with code 0, else what happened."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            return f"the server did not exit within {timeout:.0f} s of SIGTERM (killed)"
    if process.returncode != 0:
        return f"the server exited with code {process.returncode} after SIGTERM"
    return ""


def _reap(pids: set[int], port: int) -> None:
    """Kill what the server left behind (Ray processes it started, by pid) and wait for its port."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + STOP_TIMEOUT
    while not can_bind("127.0.0.1", port) and time.monotonic() < deadline:
        time.sleep(0.2)
