"""A Ray cluster of three "machines" on this one: each node its own network namespace, address and /tmp/ray.

Started as README tells users: `ray start --head` on the first node, `ray start --address HEAD:6379` on the
others, then `raysfu serve --address auto --config FILE` on every node, with Ray's token authentication
on. The nodes hang off a bridge in the test run's own namespace (scripts/netns-run), which has the address
BRIDGE_ADDRESS and no route anywhere else: everything stays inside namespaces the test run made.

A node's processes are found by their network namespace (`ip netns pids`), so ending a node, or killing it
(`kill`), ends every process of it, Ray's detached daemons included.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

BRIDGE = "rsfubr0"
SUBNET = "10.214.0"
BRIDGE_ADDRESS = f"{SUBNET}.1"
RAY_PORT = 6379
REDIS_PORT = 6380  # GCS fault tolerance
GATEWAY_PORT = 7880
DASHBOARD_PORT = 8265
API_KEY, API_SECRET = "clusterkey", "cluster-secret-" + "x" * 24
START_TIMEOUT = 120.0


class ClusterError(Exception):
    """The cluster did not start (or stop) as it should; the message says why, with the logs' ends."""


def _run(*args: str) -> None:
    done = subprocess.run(args, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise ClusterError(f"{' '.join(args)}: {done.stderr.strip()}")


REVIVED_NICE = 10


@dataclass
class Node:
    index: int
    log_dir: Path
    token: str
    holder: subprocess.Popen[bytes] | None = None  # holds the node's mount namespace (its own /tmp)
    serve: subprocess.Popen[bytes] | None = None
    extra_env: dict[str, str] = field(default_factory=dict)
    nice: int = 0  # the CPU niceness of what is started in the node (see revive)

    @property
    def name(self) -> str:
        return f"rsfu-node{self.index}"

    @property
    def address(self) -> str:
        return f"{SUBNET}.{10 + self.index}"

    @property
    def url(self) -> str:
        return f"ws://{self.address}:{GATEWAY_PORT}"

    @property
    def http_url(self) -> str:
        return f"http://{self.address}:{GATEWAY_PORT}"

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
        env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=self.token, RAYSFU_NETNS="1", **self.extra_env)
        return env

    def create(self) -> None:
        """The namespace, its veth on the bridge, its address, a default route into the (dead-end) bridge so
        that Ray finds the node's own address, and a process holding a mount namespace with its own
        /tmp/ray (where Ray keeps the node's address and session; the rest of /tmp stays shared)."""
        _run("ip", "netns", "add", self.name)
        _run(
            "ip", "link", "add", f"{self.name}-br", "type", "veth", "peer", "name", "eth0", "netns", self.name
        )
        _run("ip", "link", "set", f"{self.name}-br", "master", BRIDGE, "up")
        _run("ip", "-n", self.name, "addr", "add", f"{self.address}/24", "dev", "eth0")
        _run("ip", "-n", self.name, "link", "set", "eth0", "up")
        _run("ip", "-n", self.name, "link", "set", "lo", "up")
        _run("ip", "-n", self.name, "route", "add", "default", "via", BRIDGE_ADDRESS)
        self._hold_tmp()

    def _hold_tmp(self) -> None:
        self.holder = subprocess.Popen(
            ["ip", "netns", "exec", self.name, "unshare", "--mount", "--propagation", "private", "sh", "-c",
             "mkdir -p /tmp/ray && mount -t tmpfs tmpfs /tmp/ray && exec sleep infinity"],
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while not self._tmp_is_private():
            if time.monotonic() > deadline:
                raise ClusterError(f"{self.name}: its /tmp was not mounted")
            time.sleep(0.05)

    def _tmp_is_private(self) -> bool:
        """ip netns exec, unshare and sh each exec the next: the holder's pid ends up running `sleep`, in
        the mount namespace with the node's own /tmp/ray."""
        assert self.holder is not None
        proc = Path(f"/proc/{self.holder.pid}")
        with contextlib.suppress(OSError):
            mounts = (proc / "mountinfo").read_text().splitlines()
            mounted = any(line.split()[4] == "/tmp/ray" for line in mounts)
            return mounted and (proc / "comm").read_text().strip() == "sleep"
        return False

    def command(self, args: Sequence[str]) -> list[str]:
        """`args` run inside this node: its network and mount namespaces."""
        assert self.holder is not None
        niced = ["nice", "-n", str(self.nice)] if self.nice else []
        return ["nsenter", "-t", str(self.holder.pid), "-n", "-m", "--", *niced, *args]

    def run(self, args: Sequence[str], timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.command(args), env=self.env, capture_output=True, text=True, timeout=timeout, check=False
        )

    def start_ray(self, head: Node) -> None:
        ray = str(Path(sys.executable).with_name("ray"))
        common = ["--node-ip-address", self.address, "--disable-usage-stats", "--num-cpus", "2"]
        if self is head:
            args = [ray, "start", "--head", "--port", str(RAY_PORT), "--dashboard-host", self.address,
                    "--dashboard-port", str(DASHBOARD_PORT), *common]  # fmt: skip
        else:
            args = [ray, "start", "--address", f"{head.address}:{RAY_PORT}", *common]
        done = self.run(args)
        if done.returncode != 0:
            raise ClusterError(f"{self.name}: {' '.join(args[1:3])} failed: {done.stderr[-3000:]}")

    def start_raysfu(self, config: Path) -> None:
        raysfu = str(Path(sys.executable).with_name("raysfu"))
        log = (self.log_dir / f"{self.name}.log").open("wb")
        self.serve = subprocess.Popen(
            self.command([raysfu, "serve", "--address", "auto", "--config", str(config)]),
            env=self.env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip

    def wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.serve is not None and self.serve.poll() is not None:
                raise ClusterError(
                    f"{self.name}: raysfu serve exited ({self.serve.returncode}):\n{self.log_tail()}"
                )
            try:
                with urllib.request.urlopen(f"{self.http_url}/healthz", timeout=2) as reply:
                    if reply.read() == b"ok":
                        return
            except (OSError, urllib.error.URLError):
                pass
            if time.monotonic() > deadline:
                raise ClusterError(f"{self.name}: not ready after {START_TIMEOUT:.0f} s:\n{self.log_tail()}")
            time.sleep(0.3)

    def log_tail(self, lines: int = 60) -> str:
        path = self.log_dir / f"{self.name}.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def pids(self) -> list[int]:
        done = subprocess.run(["ip", "netns", "pids", self.name], capture_output=True, text=True, check=False)
        return [int(p) for p in done.stdout.split()]

    def kill(self) -> None:
        """SIGKILL every process of the node at once, as a machine that loses power."""
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def revive(self, head: Node, config: Path) -> None:
        """Start a killed node again, as a machine that reboots: a fresh /tmp/ray, Ray, raysfu.

        Its processes run at a lower CPU priority: a node booting (a head: GCS, dashboard, raysfu) takes
        both cores of a 2-core test machine for ~15 s, which a machine of its own would not take from the
        nodes that carry on."""
        self._wait_gone()
        self.nice = REVIVED_NICE
        self._hold_tmp()
        self.start_ray(head)
        self.start_raysfu(config)
        self.wait_ready()

    def _wait_gone(self) -> None:
        deadline = time.monotonic() + 10
        while self.pids() and time.monotonic() < deadline:
            time.sleep(0.1)
        for process in (self.serve, self.holder):
            if process is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(5)

    def destroy(self) -> None:
        self.kill()
        self._wait_gone()
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True, check=False)


# The tests' media settings: one worker per node, one participant per worker, payload digests kept.
TEST_MEDIA: Mapping[str, int] = {"workers_per_node": 1, "participants_per_worker": 1, "payload_digests": 5000}


def config_path(node: Node) -> Path:
    """Where the node's raysfu configuration is (written by `cluster`)."""
    return node.log_dir / f"{node.name}.yaml"


def _start_redis(log_dir: Path) -> subprocess.Popen[bytes]:
    """Debian's redis-server on the bridge (not inside a node: it outlives them all), in memory only."""
    if shutil.which("redis-server") is None:
        raise ClusterError(
            "redis-server is not installed (Debian package redis-server; scripts/test installs it)"
        )
    log = (log_dir / "redis.log").open("wb")
    # No password, so protected mode (which refuses other hosts then) is off: the bridge is the test's own.
    args = ["redis-server", "--bind", BRIDGE_ADDRESS, "--port", str(REDIS_PORT), "--protected-mode", "no"]
    args += ["--save", "", "--appendonly", "no"]
    process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 10
    while True:
        with contextlib.suppress(OSError), socket.create_connection((BRIDGE_ADDRESS, REDIS_PORT), timeout=1):
            return process
        if process.poll() is not None or time.monotonic() > deadline:
            raise ClusterError(f"redis-server did not start: {(log_dir / 'redis.log').read_text()[-2000:]}")
        time.sleep(0.1)


def config_for(node: Node, media: Mapping[str, int]) -> str:
    lines = [
        "keys:",
        f"  {API_KEY}: {API_SECRET}",
        f"bind_addresses: [{node.address}]",
        f"port: {GATEWAY_PORT}",
    ]
    lines += ["media:", f"  ice_addresses: [{node.address}]", *(f"  {k}: {v}" for k, v in media.items())]
    return "\n".join([*lines, ""])


@contextlib.contextmanager
def cluster(
    log_dir: Path, size: int = 3, media: Mapping[str, int] = TEST_MEDIA, gcs_redis: bool = False
) -> Iterator[list[Node]]:
    """`size` nodes, Ray and raysfu started on each (with these `media` settings), all ready; everything
    ended afterwards. With `gcs_redis`, Ray's GCS keeps its state in a redis-server outside the nodes (GCS
    fault tolerance: `RAY_REDIS_ADDRESS` on the head), so that the head can be killed and started again."""
    if os.environ.get("RAYSFU_NETNS") != "1":
        raise ClusterError("the cluster tests run inside scripts/netns-run (as root)")
    token = secrets.token_hex(32)
    nodes = [Node(i + 1, log_dir, token) for i in range(size)]
    redis: subprocess.Popen[bytes] | None = None
    _run("ip", "link", "add", BRIDGE, "type", "bridge")
    try:
        _run("ip", "addr", "add", f"{BRIDGE_ADDRESS}/24", "dev", BRIDGE)
        _run("ip", "link", "set", BRIDGE, "up")
        if gcs_redis:
            redis = _start_redis(log_dir)
            nodes[0].extra_env.update(
                RAY_REDIS_ADDRESS=f"{BRIDGE_ADDRESS}:{REDIS_PORT}", RAY_external_storage_namespace=token[:16]
            )
        for node in nodes:
            node.create()
        for node in nodes:
            node.start_ray(nodes[0])
        for node in nodes:
            config_path(node).write_text(config_for(node, media))
            node.start_raysfu(config_path(node))
        for node in nodes:
            node.wait_ready()
        yield nodes
    finally:
        for node in nodes:
            node.destroy()
        if redis is not None:
            redis.kill()
            redis.wait(5)
        subprocess.run(["ip", "link", "del", BRIDGE], capture_output=True, check=False)
