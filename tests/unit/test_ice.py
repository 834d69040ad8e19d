"""ICE set-up: the aioice host-address patch, consent freshness, RTC configuration, trickled candidates."""

import asyncio
import json
import logging
import time
from typing import Any

import aioice.ice
import aioice.stun
import pytest

from actors.errors import CandidateError
from actors.media.hooks import aioice as ice
from actors.media.hooks import (
    fixed_host_addresses,
    restrict_host_addresses,
    restrict_host_ports,
    use_rfc_consent_freshness,
)
from actors.media.ice import parse_candidate_init, rtc_configuration
from tests.unit.media_peers import connected_ice_pair


@pytest.fixture
def restore_aioice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(aioice.ice, "get_host_addresses", aioice.ice.get_host_addresses)
    monkeypatch.setattr(
        aioice.ice.Connection, "get_component_candidates", aioice.ice.Connection.get_component_candidates
    )


def test_fixed_host_addresses_by_family() -> None:
    get = fixed_host_addresses(["127.0.0.1", "::1"])
    assert get(use_ipv4=True, use_ipv6=False) == ["127.0.0.1"]
    assert get(use_ipv4=False, use_ipv6=True) == ["::1"]
    assert get(use_ipv4=True, use_ipv6=True) == ["127.0.0.1", "::1"]


def test_fixed_host_addresses_rejects_non_addresses() -> None:
    with pytest.raises(ValueError):
        fixed_host_addresses(["localhost"])


async def test_aioice_gathers_only_the_configured_address(restore_aioice: None) -> None:
    restrict_host_addresses(["127.0.0.1"])
    connection = aioice.Connection(ice_controlling=True, use_ipv6=False)
    try:
        await connection.gather_candidates()
        assert [(c.host, c.type) for c in connection.local_candidates] == [("127.0.0.1", "host")]
    finally:
        await connection.close()


def test_empty_restriction_restores_aioice_default(restore_aioice: None) -> None:
    restrict_host_addresses(["127.0.0.1"])
    assert aioice.ice.get_host_addresses.__module__ == "actors.media.hooks.aioice"
    restrict_host_addresses([])
    assert aioice.ice.get_host_addresses.__module__ == "aioice.ice"
    assert "127.0.0.1" not in aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=False)


PORTS = (47100, 47103)  # rtc.port_range_start / port_range_end for the tests below: four ports


async def test_host_candidates_take_ports_of_the_configured_range(restore_aioice: None) -> None:
    restrict_host_addresses(["127.0.0.1"])
    restrict_host_ports(PORTS)
    connections = [aioice.Connection(ice_controlling=True, use_ipv6=False) for _ in range(5)]
    try:
        await asyncio.gather(*(c.gather_candidates() for c in connections))
        ports = [c.port for conn in connections[:4] for c in conn.local_candidates]
        assert sorted(ports) == list(range(PORTS[0], PORTS[1] + 1))
        candidates = [c for conn in connections for c in conn.local_candidates]
        assert all(c.host == "127.0.0.1" and c.type == "host" for c in candidates)
        # the range is full: no candidate rather than one on another port
        assert connections[4].local_candidates == []
    finally:
        await asyncio.gather(*(c.close() for c in connections))


async def test_connections_on_ranged_ports_connect_and_carry_data(restore_aioice: None) -> None:
    restrict_host_addresses(["127.0.0.1"])
    restrict_host_ports(PORTS)
    a, b = await connected_ice_pair()
    try:
        ports = {c.port for c in (*a.local_candidates, *b.local_candidates)}
        assert ports <= set(range(PORTS[0], PORTS[1] + 1))
        await a.send(b"over the ranged ports")
        assert await asyncio.wait_for(b.recv(), 5) == b"over the ranged ports"
    finally:
        await asyncio.gather(a.close(), b.close())


class _StunServer(asyncio.DatagramProtocol):
    """Answers binding requests with the sender's address as seen (a server-reflexive candidate)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.DatagramTransport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        request = aioice.stun.parse_message(data)
        response = aioice.stun.Message(
            message_method=request.message_method,
            message_class=aioice.stun.Class.RESPONSE,
            transaction_id=request.transaction_id,
        )
        response.attributes["XOR-MAPPED-ADDRESS"] = addr
        self.transport.sendto(bytes(response), addr)


async def test_ranged_gathering_still_asks_stun_for_a_reflexive_candidate(restore_aioice: None) -> None:
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(_StunServer, local_addr=("127.0.0.1", 0))
    restrict_host_addresses(["127.0.0.1"])
    restrict_host_ports(PORTS)
    connection = aioice.Connection(
        ice_controlling=True, use_ipv6=False, stun_server=transport.get_extra_info("sockname")
    )
    try:
        await connection.gather_candidates()
        host, srflx = connection.local_candidates
        assert (host.type, srflx.type) == ("host", "srflx")
        assert PORTS[0] <= host.port <= PORTS[1]
        assert (srflx.host, srflx.port, srflx.related_port) == ("127.0.0.1", host.port, host.port)
    finally:
        await connection.close()
        transport.close()


def test_no_range_restores_aioice_gathering(restore_aioice: None) -> None:
    original = aioice.ice.Connection.get_component_candidates
    restrict_host_ports(PORTS)
    assert aioice.ice.Connection.get_component_candidates is not original
    restrict_host_ports(None)
    assert aioice.ice.Connection.get_component_candidates is original


def test_rtc_configuration_never_falls_back_to_public_stun() -> None:
    config = rtc_configuration(())
    assert config.iceServers == []
    assert config.bundlePolicy.value == "max-bundle"
    stun = rtc_configuration(["stun:127.0.0.1:3478"])
    assert stun.iceServers is not None and stun.iceServers[0].urls == ["stun:127.0.0.1:3478"]


def test_parse_candidate_init() -> None:
    init = {
        "candidate": "candidate:1 1 udp 2130706431 127.0.0.1 50000 typ host generation 0",
        "sdpMid": "0",
        "sdpMLineIndex": 0,
        "usernameFragment": "abcd",
    }
    candidate = parse_candidate_init(json.dumps(init))
    assert candidate is not None
    assert (candidate.ip, candidate.port, candidate.type, candidate.sdpMid) == (
        "127.0.0.1",
        50000,
        "host",
        "0",
    )


def test_end_of_candidates_is_none() -> None:
    assert parse_candidate_init('{"candidate": "", "sdpMid": "0"}') is None


@pytest.mark.parametrize(
    "bad",
    [
        "not json",
        "[]",
        '{"candidate": "candidate:bogus", "sdpMid": "0"}',
        '{"candidate": "candidate:1 1 udp x 127.0.0.1 1 typ host", "sdpMid": "0"}',
        '{"candidate": "candidate:1 1 udp 1 127.0.0.1 1 typ host"}',
        '{"candidate": 5, "sdpMid": "0"}',
    ],
)
def test_bad_candidates(bad: str) -> None:
    with pytest.raises(CandidateError):
        parse_candidate_init(bad)


# ----- consent freshness ---------------------------------------------------------------------------------

LATE = 0.8  # seconds: later than aioice's single 0.5 s try


def _answer(connection: aioice.Connection, delay: float | None) -> None:
    """Make `connection` answer STUN requests `delay` seconds late (None: never)."""
    loop = asyncio.get_running_loop()
    for protocol in connection._protocols:
        send = protocol.send_stun

        def send_stun(message: aioice.stun.Message, addr: tuple[str, int], send: Any = send) -> None:
            if message.message_class != aioice.stun.Class.RESPONSE:
                send(message, addr)
            elif delay is not None:
                loop.call_later(delay, send, message, addr)

        protocol.send_stun = send_stun  # type: ignore[method-assign]


async def _closes_within(connection: aioice.Connection, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if connection._closing:
            return True
        await asyncio.sleep(0.05)
    return False


@pytest.fixture
def fast_consent(monkeypatch: pytest.MonkeyPatch, restore_aioice: None) -> None:
    """Loopback only; checks every ~0.2 s (aioice's and ours), aioice expiring after 3 misses."""
    restrict_host_addresses(["127.0.0.1"])
    monkeypatch.setattr(aioice.ice, "CONSENT_INTERVAL", 0.2)
    monkeypatch.setattr(aioice.ice, "CONSENT_FAILURES", 3)
    monkeypatch.setattr(ice, "CONSENT_INTERVAL", 0.2)
    monkeypatch.setattr(aioice.ice.Connection, "query_consent", aioice.ice.Connection.query_consent)


async def test_consent_holds_after_an_ice_restart(
    fast_consent: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Consent checks after a restart (a resumed session) go with the remote's new password: answered."""
    monkeypatch.setattr(ice, "CONSENT_EXPIRY", 1.5)
    monkeypatch.setattr(ice, "CONSENT_RETRANSMISSIONS", 1)  # a check gives up after 1.5 s
    use_rfc_consent_freshness()
    a, b = await connected_ice_pair()
    try:
        await asyncio.sleep(0.5)  # consent checks under way with the first credentials
        ice.restart_local_credentials(a)
        ice.restart_local_credentials(b)
        ice.restart_checks(a, b.local_username, b.local_password)
        ice.restart_checks(b, a.local_username, a.local_password)
        assert not await _closes_within(a, 5.0)
        assert not await _closes_within(b, 0.1)
    finally:
        await asyncio.gather(a.close(), b.close())


async def test_aioice_consent_cuts_off_a_peer_that_answers_late(fast_consent: None) -> None:
    """Why raysfu replaces it: every check answered, 0.8 s late, and aioice closes the connection."""
    a, b = await connected_ice_pair()
    try:
        _answer(b, LATE)
        assert await _closes_within(a, 5.0)
    finally:
        await asyncio.gather(a.close(), b.close())


async def test_consent_holds_while_a_peer_answers_late(
    fast_consent: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ice, "CONSENT_EXPIRY", 1.5)
    use_rfc_consent_freshness()
    a, b = await connected_ice_pair()
    try:
        _answer(b, LATE)
        assert not await _closes_within(a, 4.0)
        assert a._query_consent_task is not None and not a._query_consent_task.done()
    finally:
        await asyncio.gather(a.close(), b.close())


async def test_consent_expires_when_a_peer_stops_answering(
    fast_consent: None, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(ice, "CONSENT_EXPIRY", 1.0)
    monkeypatch.setattr(ice, "CONSENT_RETRANSMISSIONS", 1)  # a check gives up after 1.5 s
    use_rfc_consent_freshness()
    a, b = await connected_ice_pair()
    try:
        _answer(b, None)
        with caplog.at_level(logging.INFO, logger="actors.media.ice"):
            assert await _closes_within(a, 6.0)
        assert "consent to send expired" in caplog.text
        assert a._query_consent_task is None
    finally:
        await asyncio.gather(a.close(), b.close())
