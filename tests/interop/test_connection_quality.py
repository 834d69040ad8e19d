"""Connection quality with the Python SDK: the server scores every participant from the loss on what it
publishes and what it receives and sends ConnectionQualityUpdate every 5 s when a quality changes (LiveKit's
scale); each participant hears its own and those of the publishers it subscribes to."""

import asyncio

import pytest
from livekit import rtc

from tests.interop.loss import dropping
from tests.interop.media import MediaSession
from tests.interop.sdk import Connect, Events
from tests.polling import wait_for

pytestmark = pytest.mark.timeout(90)

EXCELLENT = rtc.ConnectionQuality.QUALITY_EXCELLENT
POOR = rtc.ConnectionQuality.QUALITY_POOR
WINDOW = 5.0  # seconds between two quality updates
FIRST_UPDATE = 15.0  # the first update comes within one 5 s window of the media starting
DEGRADED = 25.0  # loss -> POOR: the first window with loss already scores POOR; two more for margin


async def publisher_ports(room: rtc.Room) -> list[int]:
    """The local UDP ports of the SDK's publisher peer connection."""
    stats = await room.get_rtc_stats()
    return sorted(
        {
            s.local_candidate.candidate.port
            for s in stats.publisher_stats
            if s.WhichOneof("stats") == "local_candidate" and s.local_candidate.candidate.protocol == "udp"
        }
    )


async def test_excellent_on_a_clean_network_poor_with_loss(
    connect: Connect, room_name: str, media: MediaSession
) -> None:
    alice = await connect("alice", room_name)
    bob = await connect("bob", room_name)
    await media.publish(alice, video=False)
    await wait_for(lambda: "alice" in bob.remote_participants, 10.0, "bob to see alice")
    seen_by_bob = bob.remote_participants["alice"]

    def qualities() -> dict[str, rtc.ConnectionQuality]:
        return {
            "alice": alice.local_participant.connection_quality,
            "alice for bob": seen_by_bob.connection_quality,
            "bob": bob.local_participant.connection_quality,
        }

    await wait_for(
        lambda: set(qualities().values()) == {EXCELLENT}, FIRST_UPDATE, f"EXCELLENT everywhere: {qualities()}"
    )
    bob_events = Events(bob, "connection_quality_changed")
    ports = await publisher_ports(alice)
    assert ports, "no UDP candidate on alice's publisher connection"
    with dropping(ports, 0.15):
        await wait_for(
            lambda: qualities()["alice"] == POOR and qualities()["alice for bob"] == POOR,
            DEGRADED,
            f"alice POOR with 15 % of her packets lost: {qualities()}",
        )
        await asyncio.sleep(2 * WINDOW)  # what alice lost is not bob's connection's fault: bob stays well
    bob_heard = [q for p, q in bob_events.args("connection_quality_changed") if p.identity == "bob"]
    assert POOR not in bob_heard, bob_heard
    await wait_for(
        lambda: qualities()["alice"] != POOR, DEGRADED, f"alice better once the loss ends: {qualities()}"
    )
