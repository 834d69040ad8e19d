"""MediaWorker in-process (no Ray): real aiortc clients on 127.0.0.1 exchange data packets through it."""

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from livekit.protocol import models

from actors.directory import Directory, Member
from actors.errors import CandidateError, NotFoundError, SdpError
from actors.media.peer import PUBLISHER, SUBSCRIBER
from actors.settings import MediaSettings
from actors.worker import MediaWorker
from tests.unit.worker_clients import Publisher, Subscriber, chat, publish, subscribe

NAME = "media:test/0"


@dataclass
class Room:
    worker: MediaWorker
    alice: Publisher
    dave: Publisher  # may not publish data
    bob: Subscriber
    carol: Subscriber


def member(identity: str, can_publish_data: bool = True) -> Member:
    return Member(f"PA_{identity}", identity, NAME, can_publish_data)


@pytest.fixture(scope="module")
async def room() -> AsyncIterator[Room]:
    worker = MediaWorker(NAME, MediaSettings(ice_addresses=("127.0.0.1",)), relay_key=bytes(32))
    members = (member("alice"), member("bob"), member("carol"), member("dave", can_publish_data=False))
    for m in members:
        await worker.add_participant("r", m.sid, m.identity)
    await worker.update_directory(Directory("r", 2, members))
    await worker.update_directory(Directory("r", 1, ()))  # older: ignored
    bob, carol = await asyncio.gather(
        subscribe(worker.subscriber_offer, worker.subscriber_answer, "PA_bob"),
        subscribe(worker.subscriber_offer, worker.subscriber_answer, "PA_carol"),
    )
    alice, dave = await asyncio.gather(
        publish(worker.publisher_offer, worker.add_ice_candidate, "PA_alice"),
        publish(worker.publisher_offer, worker.add_ice_candidate, "PA_dave"),
    )
    yield Room(worker, alice, dave, bob, carol)
    for m in members:
        await worker.remove_participant(m.sid)
    for pc in (alice.pc, dave.pc, bob.pc, carol.pc):
        await pc.close()


async def test_broadcast_overwrites_sender_and_keeps_fields(room: Room) -> None:
    room.alice.send(chat("hello", sequence=7))
    for receiver in (room.bob, room.carol):
        packet = await receiver.next()
        assert (packet.participant_identity, packet.participant_sid) == ("alice", "PA_alice")
        assert (packet.user.participant_identity, packet.user.participant_sid) == ("alice", "PA_alice")
        assert (packet.sequence, packet.user.topic, packet.user.payload) == (7, "chat", b"hello")
        assert packet.kind == models.DataPacket.RELIABLE


async def test_targeted_delivery(room: Room) -> None:
    room.alice.send(chat("for carol", destination_identities=["carol", "nobody"]))
    room.alice.send(chat("marker"))
    assert (await room.carol.next()).user.payload == b"for carol"
    assert (await room.carol.next()).user.payload == b"marker"
    assert (await room.bob.next()).user.payload == b"marker"  # bob never saw "for carol"


async def test_lossy_goes_on_the_lossy_channel(room: Room) -> None:
    room.alice.send(chat("fast"), label="_lossy")  # kind says RELIABLE (as the Rust SDK sends it): label wins
    for receiver in (room.bob, room.carol):
        packet = await receiver.next("_lossy")
        assert (packet.user.payload, packet.kind) == (b"fast", models.DataPacket.LOSSY)


async def test_no_permission_and_garbage_are_dropped(room: Room) -> None:
    before = await room.worker.stats()
    for _ in range(3):
        room.dave.send(chat("not allowed"))
    room.alice.channels["_reliable"].send(b"\xff\xff\xff")
    room.alice.send(chat("marker"))
    assert (await room.bob.next()).user.payload == b"marker"
    assert (await room.carol.next()).user.payload == b"marker"
    after = await room.worker.stats()
    assert after.get("dropped_no_permission", 0) - before.get("dropped_no_permission", 0) == 3
    assert after.get("dropped_unparseable", 0) - before.get("dropped_unparseable", 0) == 1


async def test_server_send_data(room: Room) -> None:
    raw = chat("from server").SerializeToString()
    assert await room.worker.send_data("r", raw, True, ["PA_carol"]) == 1
    assert (await room.carol.next()).user.payload == b"from server"
    assert await room.worker.send_data("other", raw, True, []) == 0


async def test_bad_input_raises_and_leaves_others_alone(room: Room) -> None:
    worker = room.worker
    await worker.add_participant("r", "PA_eve", "eve")
    with pytest.raises(SdpError):
        await worker.publisher_offer("PA_eve", "garbage")
    with pytest.raises(SdpError):
        await worker.publisher_offer("PA_eve", "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n")
    with pytest.raises(SdpError):
        await worker.subscriber_answer("PA_eve", "v=0\r\n")  # no offer yet
    await worker.subscriber_offer("PA_eve")
    with pytest.raises(SdpError):
        await worker.subscriber_answer("PA_eve", "not sdp")
    with pytest.raises(CandidateError):
        await worker.add_ice_candidate("PA_eve", SUBSCRIBER, "{not json")
    with pytest.raises(CandidateError):
        await worker.add_ice_candidate(
            "PA_eve", PUBLISHER, json.dumps({"candidate": "candidate:x", "sdpMid": "0"})
        )
    with pytest.raises(NotFoundError):
        await worker.subscriber_offer("PA_nobody")
    await worker.remove_participant("PA_eve")
    await worker.remove_participant("PA_eve")  # idempotent
    room.alice.send(chat("still fine"))
    for receiver in (room.bob, room.carol):
        assert (await receiver.next()).user.payload == b"still fine"


async def test_remove_during_negotiation(room: Room) -> None:
    worker = room.worker
    await worker.add_participant("r", "PA_frank", "frank")
    offer = asyncio.ensure_future(worker.subscriber_offer("PA_frank"))
    await asyncio.sleep(0)
    await worker.remove_participant("PA_frank")
    try:
        await offer
    except NotFoundError:
        pass
    assert "PA_frank" not in worker._peers
    assert (await worker.load()).load == 4
