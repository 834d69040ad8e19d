"""Packet loss for the interop tests: drop a share of the UDP packets sent from given ports, inside the test
namespace (scripts/netns-run), where the SDKs and the server talk over `lo`.

The test machines' kernels have neither netem nor tc's drop action, and neither iptables nor nft is
installed; what they have is tc's `clsact` qdisc with a classic BPF classifier in direct-action mode, which
iproute2 loads from bytecode. The program drops a packet when it is UDP from one of the ports and the
kernel's per-packet random number falls under the share.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator

import pytest

DEVICE = "lo"
_SKF_NET_OFF = -0x100000  # classic BPF: offsets from the network header
_SKF_AD_RANDOM = -0x1000 + 56  # classic BPF: the kernel's random number
_TC_ACT_OK, _TC_ACT_SHOT = 0, 2


def _program(port: int, share: float) -> str:
    """tc's bytecode (count, then "code jt jf k" per instruction) dropping `share` of UDP from `port`."""
    threshold = int(share * 0xFFFFFFFF)
    instructions = [
        (0x30, 0, 0, (_SKF_NET_OFF + 9) & 0xFFFFFFFF),  # ldb [ip protocol]
        (0x15, 0, 4, 17),  # jeq #17 (UDP), else accept
        (0x28, 0, 0, (_SKF_NET_OFF + 20) & 0xFFFFFFFF),  # ldh [udp source port] (IP header without options)
        (0x15, 0, 2, port),  # jeq #port, else accept
        (0x20, 0, 0, _SKF_AD_RANDOM & 0xFFFFFFFF),  # ld rand
        (0x25, 0, 1, threshold),  # jgt #threshold -> accept, else drop
        (0x06, 0, 0, _TC_ACT_OK),
        (0x06, 0, 0, _TC_ACT_SHOT),
    ]
    return ",".join([str(len(instructions)), *(f"{c} {t} {f} {k}" for c, t, f, k in instructions)])


def _tc(*args: str, check: bool = True) -> None:
    subprocess.run(["tc", *args], check=check, capture_output=True)


@contextlib.contextmanager
def dropping(ports: list[int], share: float) -> Iterator[None]:
    """Drop `share` of the UDP packets sent from `ports` until the block ends; skips the test outside the
    test namespace (it would change the machine's own loopback)."""
    if os.environ.get("RAYSFU_NETNS") != "1":
        pytest.skip("packet loss is made only inside the test namespace (scripts/netns-run)")
    _tc("qdisc", "add", "dev", DEVICE, "clsact")
    try:
        for port in ports:
            _tc("filter", "add", "dev", DEVICE, "ingress", "bpf", "da", "bytecode", _program(port, share))
        yield
    finally:
        _tc("qdisc", "del", "dev", DEVICE, "clsact", check=False)  # takes its filters with it
