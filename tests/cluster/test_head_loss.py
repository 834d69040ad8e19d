"""Losing the head node of a cluster whose GCS keeps its state in Redis (Ray's GCS fault tolerance).

Without it, the head is a single point of failure (README, "Running on a Ray cluster"); with it, the other
nodes wait for the GCS to come back, and a head that is started again takes over where the old one stopped.
"""

import asyncio
import time
from collections.abc import Iterator

import pytest
from livekit import rtc

from tests.cluster.conftest import connect, identities, participants
from tests.cluster.nodes import ClusterError, Node, cluster, config_path
from tests.interop.media import MediaSession
from tests.interop.sdk import wait_for


@pytest.fixture(scope="module")
def ft_nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Node]]:
    try:
        with cluster(tmp_path_factory.mktemp("cluster-ft"), gcs_redis=True) as started:
            yield started
    except ClusterError as exc:
        pytest.fail(str(exc), pytrace=False)


async def test_a_room_on_other_nodes_survives_the_head_and_a_new_head_takes_over(
    ft_nodes: list[Node], clients: list[rtc.Room], media: MediaSession
) -> None:
    """bob (node 2) and carol (node 3) share a room; every process of the head (node 1) is SIGKILLed. Media
    between them goes on with no gap over 1 s while the head is down; started again, the head's gateway
    takes new participants into the same room, and ListParticipants answers on every node."""
    head, second, third = ft_nodes
    room = "head-loss"
    bob = await connect(clients, second, "bob", room)  # the room's home: node 2
    carol = await connect(clients, third, "carol", room)
    await wait_for(lambda: identities(bob) == {"carol"}, 20, "bob sees carol")
    receiver = media.receive(bob)
    await media.publish(carol)
    await receiver.wait_tone(30, identity="carol")
    await receiver.wait_frames(10, 30, identity="carol")

    before = time.monotonic() - 1.0
    head.kill()
    down = time.monotonic()
    await wait_for(lambda: time.monotonic() - down > 10.0, 15, "10 s without the head")
    await asyncio.to_thread(head.revive, head, config_path(head))  # the loop keeps receiving meanwhile
    revived = time.monotonic()

    alice = await connect(clients, head, "alice", room)
    await wait_for(lambda: identities(alice) == {"bob", "carol"}, 30, "alice sees bob and carol")
    await wait_for(lambda: "alice" in identities(bob), 30, "bob sees alice")
    for node in ft_nodes:
        assert await participants(node, room) == ["alice", "bob", "carol"]
    after = time.monotonic()
    audio, video = receiver.audio("carol"), receiver.video("carol")
    tone_gap, video_gap = audio.max_tone_gap(before, after), video.max_gap(before, after)
    phases = {
        "head down": (before, down + 10.0),
        "head booting": (down + 10.0, revived),
        "head back": (revived, after),
    }
    where = {p: (audio.max_tone_gap(*span), video.max_gap(*span)) for p, span in phases.items()}
    assert tone_gap < 1.0 and video_gap < 1.0, (tone_gap, video_gap, revived - down, where, receiver.report())
    assert bob.connection_state == rtc.ConnectionState.CONN_CONNECTED
