"""aioice, patched process-wide (a media worker hosts nothing but SFU connections): media datagrams skip the
STUN parse, ICE receive queues are bounded and short-cut to the tap transport, host candidates only on
the configured addresses and ports, and RFC 7675 consent freshness in place of aioice's 0.5 s single-try
checks."""

import asyncio
import ipaddress
import logging
import random
import socket
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Protocol

import aioice.candidate
import aioice.ice
import aioice.stun
import aioice.turn
import aioice.utils

from actors.media.hooks.common import counters, ratelog
from actors.tasks import spawn

if TYPE_CHECKING:
    from actors.media.hooks.rtcdtlstransport import TapDtlsTransport

log = logging.getLogger(__name__)

MAX_ICE_QUEUE = 2048  # datagrams waiting in one aioice connection before we drop (aioice's is unbounded)


_stun_datagram_received = aioice.ice.StunProtocol.datagram_received


def demuxed_datagram_received(self: Any, data: bytes, addr: tuple[Any, ...]) -> None:
    """aioice tries to parse every datagram as STUN and takes the ValueError as "not STUN": RFC 7983 tells
    them apart by the first byte (STUN 0-3, DTLS 20-63, RTP/RTCP 128-191), so media skips the attempt."""
    if data and data[0] > 3:
        self.receiver.data_received(data, self.local_candidate.component)
    else:
        _stun_datagram_received(self, data, addr)


def bounded_data_received(self: Any, data: bytes, component: int) -> None:
    queue: asyncio.Queue[Any] = self._queue
    tap: TapDtlsTransport | None = self.sfu_tap
    if (
        tap is not None
        and len(data) > 12
        and 127 < data[0] < 192  # SRTP or SRTCP
        and not 191 < data[1] < 224  # not SRTCP (RFC 5761)
        and not queue.qsize()  # nothing queued before it: the order stays
        and tap._receive_srtp(data)
    ):
        return
    if queue.qsize() >= MAX_ICE_QUEUE:
        counters["dropped_ice_queue_full"] += 1
        ratelog.warning("ice_queue", "ICE receive queue full (%d): dropping datagrams", MAX_ICE_QUEUE)
        return
    queue.put_nowait((data, component))


class HostAddresses(Protocol):
    """The signature of `aioice.ice.get_host_addresses` (aioice calls it with keywords)."""

    def __call__(self, use_ipv4: bool, use_ipv6: bool) -> list[str]: ...


_aioice_default: HostAddresses = aioice.ice.get_host_addresses


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


_aioice_component_candidates = aioice.ice.Connection.get_component_candidates


def bind_in_range(address: str, first: int, last: int) -> socket.socket | None:
    """A UDP socket on `address` at a free port from `first` to `last` (tried from a random one on, so that
    the workers of a node sharing the range rarely race for a port); None when every port is taken."""
    family = socket.AF_INET6 if ipaddress.ip_address(address).version == 6 else socket.AF_INET
    count = last - first + 1
    offset = random.randrange(count)
    for i in range(count):
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.bind((address, first + (offset + i) % count))
        except OSError:
            sock.close()
            continue
        return sock
    return None


def ranged_component_candidates(first: int, last: int) -> Any:
    """A replacement for `aioice.ice.Connection.get_component_candidates` whose host candidates take ports
    from `first` to `last` (aioice binds port 0, and has no setting for it); the server-reflexive
    candidates are asked of STUN as aioice does, a TURN relay is left to aioice's own."""

    async def get_component_candidates(
        self: aioice.ice.Connection,
        component: int,
        addresses: list[str],
        timeout: int = 5,  # noqa: ASYNC109 (aioice's signature)
    ) -> list[aioice.Candidate]:
        loop = asyncio.get_running_loop()
        hosts = []
        for address in addresses:
            sock = bind_in_range(address, first, last)
            if sock is None:
                ratelog.warning(
                    "ice_ports", "no free UDP port in %d-%d on %s: no candidate", first, last, address
                )
                continue
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, aioice.turn.UDP_SOCKET_BUFFER_SIZE)
            _, protocol = await loop.create_datagram_endpoint(
                lambda: aioice.ice.StunProtocol(self), sock=sock
            )
            host, port = protocol.transport.get_extra_info("sockname")[:2]
            protocol.local_candidate = aioice.Candidate(
                foundation=aioice.candidate.candidate_foundation("host", "udp", host),
                component=component,
                transport="udp",
                priority=aioice.candidate.candidate_priority(component, "host"),
                host=host,
                port=port,
                type="host",
            )
            hosts.append(protocol)
        self._protocols += hosts
        candidates = [p.local_candidate for p in hosts]
        if self.stun_server:
            queries = [
                asyncio.create_task(aioice.ice.server_reflexive_candidate(p, self.stun_server))
                for p in hosts
                if ipaddress.ip_address(p.local_candidate.host).version == 4
            ]
            if queries:
                done, pending = await asyncio.wait(queries, timeout=timeout)
                candidates += [t.result()[0] for t in done if t.exception() is None]
                for task in pending:
                    task.cancel()
        if self.turn_server:
            candidates += await _aioice_component_candidates(self, component, [], timeout)
        return candidates

    return get_component_candidates


def restrict_host_ports(port_range: tuple[int, int] | None) -> None:
    """Host candidates on ports `port_range` (first, last); None: any port, as aioice does (process-wide,
    as `restrict_host_addresses`)."""
    aioice.ice.Connection.get_component_candidates = (  # type: ignore[method-assign]
        ranged_component_candidates(*port_range) if port_range else _aioice_component_candidates
    )
    log.info(
        "ICE host candidates on %s",
        f"UDP ports {port_range[0]}-{port_range[1]}" if port_range else "any UDP port",
    )


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
    loop = asyncio.get_running_loop()
    answered = loop.time()
    while True:
        await asyncio.sleep(CONSENT_INTERVAL * (0.8 + 0.4 * random.random()))
        # Read each time: an ICE restart (restart_checks) changes the remote password.
        assert connection.remote_password is not None  # checks start once connect() has it, as aioice's
        key = connection.remote_password.encode("utf8")
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


RESTART_CHECKS = 30.0  # seconds an ICE restart's checks run for a new pair before they give up


def restart_local_credentials(connection: aioice.ice.Connection) -> None:
    """The first half of an ICE restart (RFC 8445 section 9): new local ufrag and password, which the next
    offer or answer carries (aiortc reads them from the connection each time). aioice has no restart.
    The sockets, candidates and nominated pair stay: media keeps flowing on that pair until the restart's
    checks nominate a new one (restart_checks)."""
    connection._local_username = aioice.utils.random_string(4)
    connection._local_password = aioice.utils.random_string(22)


def restart_checks(connection: aioice.ice.Connection, username: str, password: str) -> None:
    """The second half: the remote side's new credentials, and a fresh check list over the candidates both
    sides have (the remote's re-offered ones were added to it). The nominated pair keeps carrying media
    until a check of the new list is nominated (by the controlling side: the client on the publisher PC,
    this connection's aggressive nomination on the subscriber PC); the hot path (Egress) follows
    `_nominated` by itself. Uses aioice 0.13's `_check_list`, `_check_list_done`, `_check_list_state`,
    `_nominating`, `_remote_candidates`, `_pair_remote_candidate`, `_unfreeze_initial`, `_check_periodic`
    and CandidatePair.task (tests/unit/test_hooks.py)."""
    for pair in connection._check_list:
        if pair.task is not None:
            pair.task.cancel()
    connection.remote_username = username
    connection.remote_password = password
    connection._check_list = []
    connection._check_list_done = False
    connection._check_list_state = asyncio.Queue()
    connection._nominating = set()
    for candidate in connection._remote_candidates:
        connection._pair_remote_candidate(candidate)
    connection.sort_check_list()
    connection._unfreeze_initial()
    old = connection._nominated.get(1)
    spawn(_run_restart_checks(connection, old), f"{connection!r}: ICE restart checks")


async def _run_restart_checks(connection: aioice.ice.Connection, old: object) -> None:
    """What aioice's connect() does for its first check list, paced the same (20 ms), until a new pair is
    nominated, the connection closes, or RESTART_CHECKS pass."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + RESTART_CHECKS
    while not connection._closing and loop.time() < deadline:
        pair = connection._nominated.get(1)
        if pair is not None and pair is not old:
            log.info("%r: ICE restarted on %r", connection, pair)
            return
        if not connection._check_list_done:
            connection._check_periodic()
        await asyncio.sleep(0.02)
    if not connection._closing:
        log.warning("%r: ICE restart nominated no pair in %.0f s", connection, RESTART_CHECKS)
