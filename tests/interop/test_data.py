"""Data packets between SDK clients: broadcast, targeted, lossy, and canPublishData enforced."""

import asyncio
from pathlib import Path

from livekit import rtc

from tests.interop.conftest import running_server
from tests.interop.sdk import Connect, Events, MintToken


async def test_broadcast_reaches_everyone_but_sender(connect: Connect, room_name: str) -> None:
    alice = await connect("alice", room_name)
    bob = await connect("bob", room_name)
    carol = await connect("carol", room_name)
    inbox = {c.local_participant.identity: Events(c, "data_received") for c in (alice, bob, carol)}

    await alice.local_participant.publish_data(b"hello all", reliable=True, topic="chat")

    for who in ("bob", "carol"):
        (packet,) = await inbox[who].wait("data_received")
        assert packet.data == b"hello all"
        assert packet.topic == "chat"
        assert packet.participant is not None and packet.participant.identity == "alice"
        assert packet.kind == rtc.DataPacketKind.KIND_RELIABLE
    await asyncio.sleep(0.3)
    assert inbox["alice"].args("data_received") == []


async def test_targeted_packet_reaches_only_destination(connect: Connect, room_name: str) -> None:
    alice = await connect("alice", room_name)
    bob = await connect("bob", room_name)
    carol = await connect("carol", room_name)
    bob_in, carol_in = Events(bob, "data_received"), Events(carol, "data_received")

    await alice.local_participant.publish_data(b"for carol", topic="dm", destination_identities=["carol"])

    (packet,) = await carol_in.wait("data_received")
    assert (packet.data, packet.topic, packet.participant.identity) == (b"for carol", "dm", "alice")
    await asyncio.sleep(0.3)
    assert bob_in.args("data_received") == []


async def test_lossy_packets_arrive_as_lossy(connect: Connect, room_name: str) -> None:
    alice = await connect("alice", room_name)
    bob = await connect("bob", room_name)
    inbox = Events(bob, "data_received")
    # Lossy is dropped, not queued, until bob's subscriber channel is open: a joiner's
    # first packets may be lost on a busy machine, so alice sends until one arrives.
    for i in range(100):
        await alice.local_participant.publish_data(f"lossy {i}".encode(), reliable=False, topic="pos")
        if inbox.args("data_received"):
            break
        await asyncio.sleep(0.1)
    (packet,) = await inbox.wait("data_received")
    assert packet.kind == rtc.DataPacketKind.KIND_LOSSY
    assert packet.topic == "pos"
    assert packet.data.startswith(b"lossy ")


async def test_reliable_order_is_kept(connect: Connect, room_name: str) -> None:
    alice = await connect("alice", room_name)
    bob = await connect("bob", room_name)
    inbox = Events(bob, "data_received")
    for i in range(50):
        await alice.local_participant.publish_data(str(i).encode(), topic="seq")
    await inbox.wait("data_received", lambda p: p.data == b"49")
    assert [int(p.data) for (p,) in inbox.args("data_received")] == list(range(50))


async def test_publish_data_refused_without_grant(connect: Connect, room_name: str) -> None:
    mallory = await connect("mallory", room_name, can_publish_data=False)
    bob = await connect("bob", room_name)
    inbox = Events(bob, "data_received")
    await mallory.local_participant.publish_data(b"should not arrive", topic="spam")
    await asyncio.sleep(1.0)
    assert inbox.args("data_received") == []
    # mallory may still receive
    mallory_in = Events(mallory, "data_received")
    await bob.local_participant.publish_data(b"to mallory", topic="ok")
    (packet,) = await mallory_in.wait("data_received")
    assert packet.data == b"to mallory"


async def test_data_crosses_media_workers_in_order(tmp_path: Path, token: MintToken) -> None:
    """One participant per worker: every packet crosses a worker boundary, still in order, once."""
    with running_server(7893, 8268, tmp_path, ["--participants-per-worker", "1"]) as (srv, _):
        clients = []
        for identity in ("alice", "bob", "carol"):
            client = rtc.Room()
            await client.connect(srv.url, token(identity, "spread"))
            clients.append(client)
        alice, bob, carol = clients
        inboxes = [Events(bob, "data_received"), Events(carol, "data_received")]
        for i in range(30):
            await alice.local_participant.publish_data(str(i).encode(), topic="seq")
        for inbox in inboxes:
            await inbox.wait("data_received", lambda p: p.data == b"29")
            assert [int(p.data) for (p,) in inbox.args("data_received")] == list(range(30))
        placed = [line for line in srv.log_path.read_text().splitlines() if " joined as PA_" in line]
        assert len({line.rsplit(" on ", 1)[1] for line in placed}) == 2, placed  # both workers were used
        for client in clients:
            await client.disconnect()
