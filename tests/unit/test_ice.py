"""ICE set-up: the aioice host-address patch, the RTC configuration, trickled candidate parsing."""

import json

import aioice.ice
import pytest

from actors.errors import CandidateError
from actors.media.ice import (
    fixed_host_addresses,
    parse_candidate_init,
    restrict_host_addresses,
    rtc_configuration,
)


@pytest.fixture
def restore_aioice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(aioice.ice, "get_host_addresses", aioice.ice.get_host_addresses)


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
    assert aioice.ice.get_host_addresses.__module__ == "actors.media.ice"
    restrict_host_addresses([])
    assert aioice.ice.get_host_addresses.__module__ == "aioice.ice"
    assert "127.0.0.1" not in aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=False)


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
