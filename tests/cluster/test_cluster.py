"""One room across three Ray nodes (each its own network namespace, address and /tmp, started as README says,
with Ray's token authentication), with the official Python SDK connected to each node's gateway."""

import asyncio
import time

from livekit import rtc

from bench.workers import parse_workers, workers_command
from tests.cluster.conftest import connect, identities, participants
from tests.cluster.nodes import Node
from tests.interop.media import (
    MediaSession,
    relay_packets,
    worker_of,
)
from tests.interop.sdk import Events, wait_for


async def _stats(node: Node) -> dict[str, dict[str, object]]:
    done = await asyncio.to_thread(node.run, workers_command("media_stats"))
    return parse_workers(done, "media_stats")


async def test_one_room_across_three_nodes(
    nodes: list[Node], clients: list[rtc.Room], media: MediaSession
) -> None:
    room = "spans-nodes"
    alice = await connect(clients, nodes[0], "alice", room)
    bob = await connect(clients, nodes[1], "bob", room)
    carol = await connect(clients, nodes[2], "carol", room)
    for client, others in ((alice, {"bob", "carol"}), (bob, {"alice", "carol"}), (carol, {"alice", "bob"})):
        await wait_for(lambda c=client, o=others: identities(c) == o, 20, "everyone sees everyone")

    at_bob, at_alice = Events(bob, "data_received"), Events(alice, "data_received")
    at_carol = Events(carol, "data_received")
    await alice.local_participant.publish_data(b"from alice", reliable=True, topic="t")
    await bob.local_participant.publish_data(b"from bob", reliable=True, topic="t")
    await at_bob.wait("data_received", lambda p: p.data == b"from alice")
    await at_carol.wait("data_received", lambda p: p.data == b"from alice")
    await at_alice.wait("data_received", lambda p: p.data == b"from bob")

    # Audio and video both ways: alice (node 1) and carol (node 3) publish, everyone else receives.
    receivers = {c: media.receive(c) for c in (alice, bob, carol)}
    await media.publish(alice)
    await media.publish(carol)
    await receivers[bob].wait_tone(30, identity="alice")
    await receivers[bob].wait_frames(10, 30, identity="alice")
    await receivers[carol].wait_tone(30, identity="alice")
    await receivers[alice].wait_tone(30, identity="carol")
    await receivers[alice].wait_frames(10, 30, identity="carol")

    # Exactly one relayed copy of each of alice's tracks per receiving worker (one worker per node here).
    stats = await _stats(nodes[0])
    home = worker_of(stats, alice.local_participant.sid)
    receiving = {worker_of(stats, p.local_participant.sid) for p in (bob, carol)}
    assert len({home, *receiving}) == 3, (home, receiving)  # one participant per worker, on three nodes
    for publication in alice.local_participant.track_publications.values():
        relays = stats[home]["tracks"][publication.sid].get("relay_out", {})  # type: ignore[index]
        assert set(relays) == receiving, relays
        for worker in receiving:
            assert relay_packets(stats, home, publication.sid, worker) > 0


async def test_a_lost_node_takes_its_participants_and_the_room_goes_on(
    nodes: list[Node], clients: list[rtc.Room], media: MediaSession
) -> None:
    """Every process of the third node is SIGKILLed: its participant leaves the others' view within 5 s, no
    ghost stays in ListParticipants after 10 s, audio and video from node 1 to node 2 go on with no gap over
    1 s, and the lost client rejoins through another node's gateway at once."""
    room = "node-loss"
    alice = await connect(clients, nodes[0], "alice", room)
    bob = await connect(clients, nodes[1], "bob", room)
    carol = await connect(clients, nodes[2], "carol", room)  # through node 3's gateway, placed on node 3
    await wait_for(lambda: identities(alice) == {"bob", "carol"}, 20, "alice sees both")
    carol_gone = Events(carol, "disconnected")
    receiver = media.receive(bob)
    await media.publish(alice)
    await receiver.wait_tone(30, identity="alice")
    await receiver.wait_frames(10, 30, identity="alice")
    alice_sees = Events(alice, "participant_disconnected")

    before = time.monotonic() - 1.0
    nodes[2].kill()
    killed = time.monotonic()
    (left,) = await alice_sees.wait("participant_disconnected", timeout=30)
    assert left.identity == "carol"
    assert time.monotonic() - killed < 5.0
    await carol_gone.wait("disconnected", timeout=30)
    assert await participants(nodes[0], room) == ["alice", "bob"]  # no ghost
    again = await connect(clients, nodes[0], "carol", room)  # at once, through a surviving node's gateway
    await wait_for(lambda: "carol" in identities(alice), 20, "carol back")
    await wait_for(lambda: time.monotonic() - killed > 10.0, 15, "10 s after the kill")
    assert await participants(nodes[1], room) == ["alice", "bob", "carol"]
    # From a second before the kill to now, alice's media (node 1) reached bob (node 2) without a gap.
    after = time.monotonic()
    tone_gap = receiver.audio("alice").max_tone_gap(before, after)
    video_gap = receiver.video("alice").max_gap(before, after)
    assert tone_gap < 1.0 and video_gap < 1.0, (tone_gap, video_gap, receiver.report())
    await again.disconnect()


async def test_a_lost_node_that_was_a_rooms_home_has_the_room_rebuilt(
    nodes: list[Node], clients: list[rtc.Room]
) -> None:
    """The room opens through node 2's gateway, so its home is on node 2; node 2 is SIGKILLed. The
    participant on node 1 is sent to reconnect and rejoins a room rebuilt on a surviving node."""
    room = "home-loss"
    bob = await connect(clients, nodes[1], "bob", room)  # the first join: the room's home is on node 2
    alice = await connect(clients, nodes[0], "alice", room)
    await wait_for(lambda: identities(alice) == {"bob"}, 20, "alice sees bob")
    bob_gone = Events(bob, "disconnected")
    alice_back = Events(alice, "reconnected")

    nodes[1].kill()
    await bob_gone.wait("disconnected", timeout=30)
    await alice_back.wait("reconnected", timeout=30)
    await wait_for(lambda: alice.connection_state == rtc.ConnectionState.CONN_CONNECTED, 20, "alice back")
    assert await participants(nodes[0], room) == ["alice"]
    again = await connect(clients, nodes[0], "bob", room)
    await wait_for(lambda: identities(alice) == {"bob"} and identities(again) == {"alice"}, 20, "both back")
