"""ICE configuration for the SFU's peer connections.

Three aiortc/aioice defaults are wrong for a server: aiortc falls back to a public STUN server when no ICE
servers are given, aioice gathers host candidates on every interface except 127.0.0.1, and aioice's
consent checks cut off any peer whose answers take more than 0.5 s.
"""

import asyncio
import ipaddress
import json
import logging
import random
from collections.abc import Iterable
from typing import Protocol

import aioice.ice
import aioice.stun
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


CONSENT_INTERVAL = 5.0  # seconds between consent checks, randomised 0.8-1.2x (RFC 7675)
CONSENT_EXPIRY = 30.0  # seconds without an answer after which consent expires (RFC 7675)
CONSENT_RETRANSMISSIONS = 3  # per check (STUN RTO 0.5 s, doubling): an answer up to 7.5 s late still counts


async def query_consent(connection: aioice.ice.Connection) -> None:
    """RFC 7675 consent freshness, in place of aioice's `Connection.query_consent`.

    aioice gives each check one try of 0.5 s and expires consent after six missed checks in a row, so a
    peer that answers every check but takes longer than 0.5 s (a client behind a bloated uplink, a phone
    or a generator under load) was disconnected after ~30 s. Here each check is a STUN transaction with
    its retransmissions, and consent expires once no check has been answered for CONSENT_EXPIRY, as the
    RFC words it. Reaches into aioice 0.13's `_nominated` and `_query_consent_task` (tests/unit/test_ice.py).
    """
    assert connection.remote_password is not None  # checks start once connect() has it, as aioice's
    key = connection.remote_password.encode("utf8")
    loop = asyncio.get_running_loop()
    answered = loop.time()
    while True:
        await asyncio.sleep(CONSENT_INTERVAL * (0.8 + 0.4 * random.random()))
        for pair in list(connection._nominated.values()):
            request = connection.build_request(pair, nominate=False)
            try:
                await pair.protocol.request(
                    request, pair.remote_addr, integrity_key=key, retransmissions=CONSENT_RETRANSMISSIONS
                )
                answered = loop.time()
            except aioice.stun.TransactionError:
                pass
        silent = loop.time() - answered
        if silent >= CONSENT_EXPIRY:
            log.info("%r: consent to send expired (consent checks unanswered for %.1f s)", connection, silent)
            connection._query_consent_task = None  # close() would cancel this very task otherwise
            await connection.close()
            return


def use_rfc_consent_freshness() -> None:
    """Every aioice connection of this process checks consent with `query_consent` (process-wide, as
    `restrict_host_addresses`: a media worker hosts nothing but SFU connections)."""
    aioice.ice.Connection.query_consent = query_consent  # type: ignore[method-assign,assignment]


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
