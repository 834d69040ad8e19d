"""Servers under test as subprocesses: started in a session of their own, waited for, stopped.

`dev_server` is the one way to run raysfu's `raysfu serve --dev`: the bench (`running_raysfu`) and the interop
tests' fixtures (tests/interop/conftest.py, which turn `ServerError` into pytest.fail) both use it. The
process helpers (`spawn`, `wait_ready`, `terminate`, `log_tail`) also run Janus (bench/janus.py).
"""

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from livekit import api as lkapi

from bench.proc import descendants, read_stats
from bench.result import ScenarioError

API_KEY, API_SECRET = "devkey", "secret"  # what `raysfu serve --dev` accepts
ICE_ADDRESS = "10.213.0.1"  # rsfu0 inside scripts/netns-run
READY_TIMEOUT = 90.0
STOP_TIMEOUT = 30.0


class ServerError(ScenarioError):
    """`raysfu serve` did not start, or did not stop cleanly; the message says why (with its log's end)."""


@dataclass(frozen=True)
class Server:
    """A running `raysfu serve --dev` (the bench's server, and the interop tests' `server` fixture)."""

    url: str  # signalling, for rtc.Room.connect and livekit-client
    http_url: str  # Twirp RoomService, /healthz, for livekit.api.LiveKitAPI
    pid: int  # the serve process: the server is the process tree below it
    log_path: Path  # the server's stdout and stderr
    api_key: str = API_KEY
    api_secret: str = API_SECRET

    def token(self, identity: str, room: str) -> str:
        """A join token for `identity` in `room`, signed with the server's key."""
        return (
            lkapi.AccessToken(self.api_key, self.api_secret)
            .with_identity(identity)
            .with_grants(lkapi.VideoGrants(room_join=True, room=room))
            .to_jwt()
        )

    def log_tail(self, lines: int = 80, width: int = 400) -> str:
        return log_tail(self.log_path, lines, width)


def log_tail(path: Path, lines: int, width: int) -> str:
    """The last `lines` lines of a log file, each cut to `width` characters (tokens are long)."""
    text = path.read_text(errors="replace") if path.exists() else ""
    return "\n".join(line[:width] for line in text.splitlines()[-lines:])


def can_bind(address: str, port: int, kind: socket.SocketKind = socket.SOCK_STREAM) -> bool:
    """Whether a server could bind `address`:`port`. With SO_REUSEADDR, as servers bind (uvicorn, Janus): a
    stopped server's connections in TIME_WAIT (the /healthz ones, for 60 s) do not count, a listener does."""
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
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


# ----- any server process ------------------------------------------------------------------------------


def spawn(
    command: Sequence[str], log_path: Path, env: Mapping[str, str] | None = None
) -> "subprocess.Popen[bytes]":
    """`command` in a session of its own (Ctrl-C reaches only its caller), its output to `log_path`."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log:
        return subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )


def wait_ready(
    process: "subprocess.Popen[bytes]", ready: Callable[[], bool], timeout: float, name: str, not_ready: str
) -> str:
    """'' once `ready()`; otherwise why not: the process (`name`) exited, or "`not_ready` within timeout"."""
    deadline = time.monotonic() + timeout
    while not ready():
        if process.poll() is not None:
            return f"`{name}` exited with code {process.returncode} before it was ready"
        if time.monotonic() > deadline:
            return f"{not_ready} within {timeout:.0f} s"
        time.sleep(0.2)
    return ""


def terminate(process: "subprocess.Popen[bytes]", timeout: float) -> str:
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


# ----- raysfu ------------------------------------------------------------------------------------------


@contextlib.contextmanager
def dev_server(
    port: int,
    dashboard_port: int,
    ice_address: str,
    log_dir: Path,
    extra_args: Sequence[str] = (),
    *,
    ready_timeout: float,
    stop_timeout: float,
    check_exit: bool,
) -> Iterator[tuple[Server, "subprocess.Popen[bytes]"]]:
    """This venv's `raysfu serve --dev` as a subprocess, ready (GET /healthz == 200 "ok"), its output in
    log_dir/raysfu.log. At exit: SIGTERM (SIGKILL after `stop_timeout`), then SIGKILL for whatever Ray
    processes it left behind, and a wait for its port. ServerError when the port is taken, raysfu is not
    installed, it is not ready within `ready_timeout`, or (`check_exit`) it does not exit with 0."""
    if not can_bind("127.0.0.1", port):
        raise ServerError(f"port {port} is taken: is another raysfu server running?")
    raysfu = Path(sys.executable).with_name("raysfu")
    if not raysfu.exists():
        raise ServerError(f"{raysfu} not found: install the project with `pip install -e '.[test]'`")
    command = [
        str(raysfu), "serve", "--dev", "--ice-address", ice_address,
        "--port", str(port), "--dashboard-port", str(dashboard_port), *extra_args,
    ]  # fmt: skip
    log_path = log_dir / "raysfu.log"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "RAY_AUTH_MODE": "disabled"}
    process = spawn(command, log_path, env)
    server = Server(f"ws://127.0.0.1:{port}", f"http://127.0.0.1:{port}", process.pid, log_path)
    try:
        failure = wait_ready(
            process, lambda: healthy(server.http_url), ready_timeout,
            "raysfu serve", f"{server.http_url}/healthz did not answer 200 'ok'",
        )  # fmt: skip
        if failure:
            raise ServerError(f"{failure}; its log ({log_path}) ends:\n{server.log_tail()}")
        yield server, process
    finally:
        tree = descendants(read_stats(), process.pid) - {process.pid}
        try:
            if check_exit:
                stop(process, server, stop_timeout)
            else:
                terminate(process, stop_timeout)
        finally:
            _reap(tree, port, stop_timeout)


def stop(process: "subprocess.Popen[bytes]", server: Server, timeout: float) -> None:
    """SIGTERM (SIGKILL after `timeout`); ServerError unless the server exited with code 0."""
    failure = terminate(process, timeout)
    if failure:
        raise ServerError(f"{failure}; its log ends:\n{server.log_tail()}")


def _reap(pids: set[int], port: int, timeout: float) -> None:
    """Kill what the server left behind (Ray processes it started, by pid) and wait for its port."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    while not can_bind("127.0.0.1", port) and time.monotonic() < deadline:
        time.sleep(0.2)


@contextlib.contextmanager
def running_raysfu(
    log_dir: Path, port: int = 7880, dashboard_port: int = 8265, extra_args: Sequence[str] = ()
) -> Iterator[Server]:
    """The bench's server: on ICE_ADDRESS, inside scripts/netns-run; its exit code is not checked."""
    if not can_bind(ICE_ADDRESS, 0, socket.SOCK_DGRAM):
        raise ScenarioError(
            f"{ICE_ADDRESS} is not an address here: run the bench inside scripts/netns-run (as root, "
            "`python -m bench` re-executes itself there)"
        )
    with dev_server(
        port, dashboard_port, ICE_ADDRESS, log_dir, extra_args,
        ready_timeout=READY_TIMEOUT, stop_timeout=STOP_TIMEOUT, check_exit=False,
    ) as (server, _):  # fmt: skip
        yield server
