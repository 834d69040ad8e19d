"""ICE configuration for the SFU's peer connections.

Two aiortc/aioice defaults are wrong for a server: aiortc falls back to a public STUN server when no ICE
servers are given, and aioice gathers host candidates on every interface except 127.0.0.1.
"""

import ipaddress
import json
import logging
from collections.abc import Iterable
from typing import Protocol

import aioice.ice
from aiortc import RTCBundlePolicy, RTCConfiguration, RTCIceCandidate, RTCIceServer
from aiortc.sdp import candidate_from_sdp

from actors.errors import CandidateError

log = logging.getLogger(__name__)


class HostAddresses(Protocol):
    """The signature of `aioice.ice.get_host_addresses` (aioice calls it with keywords)."""

    def __call__(self, use_ipv4: bool, use_ipv6: bool) -> list[str]: ...


_aioice_default: HostAddresses = aioice.ice.get_host_addresses


def rtc_configuration(stun_servers: Iterable[str]) -> RTCConfiguration:
    """Max-bundle and only the configured STUN servers ([] keeps aiortc off its public default)."""
    urls = list(stun_servers)
    servers = [RTCIceServer(urls=urls)] if urls else []
    return RTCConfiguration(iceServers=servers, bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)


def fixed_host_addresses(addresses: Iterable[str]) -> HostAddresses:
    """A replacement for `aioice.ice.get_host_addresses` that returns exactly `addresses`, by family."""
    parsed = [ipaddress.ip_address(a) for a in addresses]

    def get_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return [str(a) for a in parsed if (a.version == 4 and use_ipv4) or (a.version == 6 and use_ipv6)]

    return get_host_addresses


def restrict_host_addresses(addresses: Iterable[str]) -> None:
    """Gather host candidates only on `addresses` (all interfaces but loopback again when empty).

    Process-wide: aioice looks the function up in its module at every gathering, and a media worker
    process hosts nothing but SFU connections.
    """
    wanted = tuple(addresses)
    aioice.ice.get_host_addresses = fixed_host_addresses(wanted) if wanted else _aioice_default
    log.info("ICE host candidates on %s", ", ".join(wanted) if wanted else "every non-loopback interface")


def parse_candidate_init(candidate_init: str) -> RTCIceCandidate | None:
    """The client's trickled `RTCIceCandidateInit` JSON as an aiortc candidate; None for end-of-candidates."""
    try:
        init = json.loads(candidate_init)
    except ValueError as e:
        raise CandidateError(f"candidate is not JSON: {e}") from None
    if not isinstance(init, dict):
        raise CandidateError("candidate is not a JSON object")
    line = init.get("candidate")
    if not line:
        return None
    mid = init.get("sdpMid")
    index = init.get("sdpMLineIndex")
    if not isinstance(line, str) or not isinstance(mid, str | None) or not isinstance(index, int | None):
        raise CandidateError("candidate fields have the wrong types")
    if mid is None and index is None:
        raise CandidateError("candidate has neither sdpMid nor sdpMLineIndex")
    try:
        candidate = candidate_from_sdp(line.removeprefix("candidate:"))
    except (AssertionError, ValueError, IndexError):
        raise CandidateError(f"unparseable candidate {line[:200]!r}") from None
    candidate.sdpMid = mid
    candidate.sdpMLineIndex = index
    return candidate
