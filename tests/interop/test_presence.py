"""Joining, presence, metadata and leaving, with the real `livekit` SDK against a running raysfu."""

import asyncio
from collections.abc import AsyncIterator

import pytest
from livekit import api as lkapi
from livekit import rtc
from livekit.rtc._ffi_client import FfiClient
from livekit.rtc._proto import ffi_pb2
from ray.util.state import list_actors, list_tasks

from tests.interop.sdk import Connect, Events, Server, wait_for


async def test_two_clients_see_each_other(connect: Connect, room_name: str) -> None:
    alice = await connect("alice", room_name, name="Alice", metadata="a-meta")
    events = Events(alice, "participant_connected")
    bob = await connect("bob", room_name, name="Bob", metadata="b-meta", attributes={"role": "guest"})

    # bob learns about alice from the JoinResponse, alice about bob from a ParticipantUpdate
    assert set(bob.remote_participants) == {"alice"}
    seen_alice = bob.remote_participants["alice"]
    assert (seen_alice.name, seen_alice.metadata) == ("Alice", "a-meta")
    assert seen_alice.sid == alice.local_participant.sid
    assert alice.local_participant.sid.startswith("PA_") and len(alice.local_participant.sid) == 15

    (joined,) = await events.wait("participant_connected")
    assert (joined.identity, joined.name, joined.metadata) == ("bob", "Bob", "b-meta")
    assert joined.sid == bob.local_participant.sid
    assert joined.attributes == {"role": "guest"}
    assert (await alice.sid) == (await bob.sid)
    assert (await alice.sid).startswith("RM_")
    assert alice.name == room_name


async def test_three_clients(connect: Connect, room_name: str) -> None:
    clients = [await connect(name, room_name, name=name.title()) for name in ("ann", "ben", "cat")]
    for client in clients:
        others = {c.local_participant.identity for c in clients} - {client.local_participant.identity}
        await wait_for(lambda c=client, o=others: set(c.remote_participants) == o, what=f"{others}")
        for identity, p in client.remote_participants.items():
            owner = next(c for c in clients if c.local_participant.identity == identity)
            assert p.sid == owner.local_participant.sid
            assert p.name == identity.title()


async def test_many_clients_join_at_once(connect: Connect, room_name: str) -> None:
    """Simultaneous joins each start a Participant actor (a process); the JoinResponse must not wait for
    it, or the SDKs time out their signal connection and retry."""
    identities = [f"p{i}" for i in range(12)]
    clients = await asyncio.gather(*(connect(identity, room_name) for identity in identities))
    for client in clients:
        others = set(identities) - {client.local_participant.identity}
        await wait_for(lambda c=client, o=others: set(c.remote_participants) == o, 30.0, f"{others}")
    sids = {c.local_participant.sid for c in clients}
    assert len(sids) == len(identities), "a retried join would have replaced a session"


async def test_metadata_name_attributes_reach_others(connect: Connect, room_name: str) -> None:
    alice = await connect("alice", room_name, can_update_own_metadata=True)
    bob = await connect("bob", room_name)
    events = Events(
        bob, "participant_metadata_changed", "participant_name_changed", "participant_attributes_changed"
    )

    await alice.local_participant.set_metadata("new-meta")
    await alice.local_participant.set_name("Alice Liddell")
    await alice.local_participant.set_attributes({"mood": "curious"})

    await events.wait("participant_metadata_changed", lambda p, old, new: new == "new-meta")
    await events.wait("participant_name_changed", lambda p, old, new: new == "Alice Liddell")
    await events.wait("participant_attributes_changed", lambda changed, p: changed == {"mood": "curious"})
    remote = bob.remote_participants["alice"]
    assert (remote.metadata, remote.name, remote.attributes) == (
        "new-meta",
        "Alice Liddell",
        {"mood": "curious"},
    )


class SdkAnswers:
    """What the SDK's core answered each set_metadata / set_name / set_attributes: the error it reports,
    "" for success. Its Python layer waits for that answer (up to the core's 5 s request timeout when the
    server sends none) but drops the error, so the test reads the answers where the core hands them over."""

    KINDS = ("set_local_metadata", "set_local_name", "set_local_attributes")

    def __init__(self) -> None:
        loop = asyncio.get_running_loop()
        self._queue = FfiClient.instance.queue.subscribe(loop, filter_fn=self._wanted)

    def _wanted(self, event: ffi_pb2.FfiEvent) -> bool:
        return event.WhichOneof("message") in self.KINDS

    def errors(self) -> list[str]:
        """The errors of the answers given since the last call, in order."""
        found: list[str] = []
        while not self._queue.empty():
            event = self._queue.get_nowait()
            found.append(getattr(event, str(event.WhichOneof("message"))).error)
        return found

    def close(self) -> None:
        FfiClient.instance.queue.unsubscribe(self._queue)


@pytest.fixture
async def answers() -> AsyncIterator[SdkAnswers]:
    recorder = SdkAnswers()
    yield recorder
    recorder.close()


async def test_metadata_name_attributes_are_answered_ok(
    connect: Connect, room_name: str, answers: SdkAnswers
) -> None:
    """The server answers each update (RequestResponse OK), so the SDK's calls succeed at once instead of
    failing with its request timeout."""
    alice = await connect("alice", room_name, can_update_own_metadata=True)
    await alice.local_participant.set_metadata("m")
    await alice.local_participant.set_name("Alice")
    await alice.local_participant.set_attributes({"k": "v"})
    assert answers.errors() == ["", "", ""]


async def test_metadata_refused_without_grant(connect: Connect, room_name: str, answers: SdkAnswers) -> None:
    # canUpdateOwnMetadata defaults to false: the server answers NOT_ALLOWED, which the SDK reports as the
    # call's error (not its timeout), and nothing changes.
    alice = await connect("alice", room_name, metadata="original", name="Alice")
    bob = await connect("bob", room_name)
    events = Events(bob, "participant_metadata_changed", "participant_name_changed")
    await alice.local_participant.set_metadata("forbidden")
    await alice.local_participant.set_name("Mallory")
    await alice.local_participant.set_attributes({"k": "v"})
    errors = answers.errors()
    assert len(errors) == 3 and all("NotAllowed" in e for e in errors), errors
    await asyncio.sleep(0.5)
    assert events.seen == []
    assert (bob.remote_participants["alice"].metadata, bob.remote_participants["alice"].name) == (
        "original",
        "Alice",
    )


async def test_metadata_over_limit_is_refused_at_once(
    connect: Connect, room_name: str, answers: SdkAnswers
) -> None:
    alice = await connect("alice", room_name, can_update_own_metadata=True)
    await alice.local_participant.set_metadata("x" * (512 * 1024 + 1))
    await alice.local_participant.set_name("n" * 257)
    errors = answers.errors()
    assert len(errors) == 2 and all("LimitExceeded" in e for e in errors), errors
    assert (alice.local_participant.metadata, alice.local_participant.name) == ("", "")


async def test_leave_and_disconnect_are_seen(connect: Connect, room_name: str) -> None:
    alice = await connect("alice", room_name)
    bob = await connect("bob", room_name)
    carol = await connect("carol", room_name)
    events = Events(alice, "participant_disconnected")
    await bob.disconnect()
    (gone,) = await events.wait("participant_disconnected")
    assert gone.identity == "bob"
    await carol.disconnect()
    await events.wait("participant_disconnected", lambda p: p.identity == "carol")
    assert set(alice.remote_participants) == set()


async def test_duplicate_identity_kicks_older(connect: Connect, room_name: str) -> None:
    first = await connect("alice", room_name)
    watcher = await connect("bob", room_name)
    first_events = Events(first, "disconnected")
    old_sid = first.local_participant.sid
    second = await connect("alice", room_name)
    (reason,) = await first_events.wait("disconnected")
    assert reason == rtc.DisconnectReason.DUPLICATE_IDENTITY
    assert second.local_participant.sid != old_sid
    await wait_for(
        lambda: (
            watcher.remote_participants.get("alice") is not None
            and watcher.remote_participants["alice"].sid == second.local_participant.sid
        ),
        what="bob sees the new alice session",
    )


async def test_room_closes_after_departure_timeout(
    connect: Connect, api: lkapi.LiveKitAPI, room_name: str
) -> None:
    await api.room.create_room(lkapi.CreateRoomRequest(name=room_name, departure_timeout=1))
    alice = await connect("alice", room_name)
    listed = await api.room.list_rooms(lkapi.ListRoomsRequest(names=[room_name]))
    assert [r.name for r in listed.rooms] == [room_name]
    await alice.disconnect()
    await asyncio.sleep(0.3)
    listed = await api.room.list_rooms(lkapi.ListRoomsRequest(names=[room_name]))
    assert [r.name for r in listed.rooms] == [room_name], "closed before its departure timeout"
    deadline = asyncio.get_running_loop().time() + 10
    while (await api.room.list_rooms(lkapi.ListRoomsRequest(names=[room_name]))).rooms:
        assert asyncio.get_running_loop().time() < deadline, "room still listed 10 s after the last left"
        await asyncio.sleep(0.2)


async def test_room_closes_after_empty_timeout(api: lkapi.LiveKitAPI, room_name: str) -> None:
    await api.room.create_room(lkapi.CreateRoomRequest(name=room_name, empty_timeout=1))
    assert (await api.room.list_rooms(lkapi.ListRoomsRequest(names=[room_name]))).rooms
    await asyncio.sleep(3)
    assert not (await api.room.list_rooms(lkapi.ListRoomsRequest(names=[room_name]))).rooms


async def test_simultaneous_first_joins_make_one_room(connect: Connect, room_name: str) -> None:
    clients = await asyncio.gather(*(connect(f"p{i}", room_name) for i in range(4)))
    sids = {await c.sid for c in clients}
    assert len(sids) == 1
    for c in clients:
        await wait_for(lambda c=c: len(c.remote_participants) == 3, what="all four see each other")


async def test_dashboard_shows_the_hosts_as_actors_and_each_room_and_participant_at_work(
    server: Server, connect: Connect, room_name: str
) -> None:
    """The Actors view lists the fixed set of hosts (media workers, the room registry), never an actor per
    room or session; the Tasks view shows rooms and participants at work, named by kind and message (a name
    per room or participant would grow Ray's per-name task metrics without bound)."""
    await connect("alice", room_name)
    dashboard = "http://127.0.0.1:8265"
    actors = await asyncio.to_thread(
        list_actors,
        address=dashboard,
        filters=[("state", "=", "ALIVE")],
        limit=1000,
        raise_on_missing_output=False,
    )
    names = {a.name for a in actors}
    assert any(n.startswith("media:") for n in names)
    assert "rooms" in names
    assert not [n for n in names if n.startswith(("room:", "participant:", "track:"))]
    wanted = {"room.join", "participant.start"}
    seen: set[str] = set()

    def listed() -> bool:
        tasks = list_tasks(address=dashboard, limit=10_000, raise_on_missing_output=False)
        seen.update(t.name for t in tasks)
        return wanted <= seen

    async def poll() -> bool:
        return await asyncio.to_thread(listed)

    deadline = asyncio.get_running_loop().time() + 20
    while not await poll():
        assert asyncio.get_running_loop().time() < deadline, f"tasks {wanted - seen} not listed"
        await asyncio.sleep(0.5)
    assert not [n for n in seen if room_name in n or "alice" in n], (
        "a task name carries a room or an identity"
    )
