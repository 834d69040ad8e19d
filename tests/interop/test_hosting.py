"""Rooms, participants and tracks hosted by the media workers: no Ray actor (no process) per session, joins
that never wait for one, and what happens when a media worker's process dies."""

import asyncio
import os
import re
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from livekit import api as lkapi
from livekit import rtc
from ray.util.state import list_actors

from actors.metrics import REPORT_INTERVAL
from actors.worker import LOAD_INTERVAL
from tests.interop.conftest import DASHBOARD_PORT, running_server
from tests.interop.media import MediaSession, ray_metrics_text
from tests.interop.sdk import Connect, Events, MintToken, Server, wait_for

LOST_PORT, LOST_DASHBOARD = 7894, 8269


def _alive_actors(dashboard_port: int) -> list[tuple[str, int]]:
    actors = list_actors(
        address=f"http://127.0.0.1:{dashboard_port}",
        filters=[("state", "=", "ALIVE")],
        limit=1000,
        raise_on_missing_output=False,
    )
    return sorted((a.name, a.pid) for a in actors)


async def test_sessions_tracks_and_rooms_start_no_ray_actor(
    server: Server, connect: Connect, room_name: str
) -> None:
    before = await asyncio.to_thread(_alive_actors, DASHBOARD_PORT)
    clients = []
    for i in range(6):
        clients.append(await connect(f"p{i}", f"{room_name}-{i % 3}"))
    source = rtc.AudioSource(48000, 1)
    track = rtc.LocalAudioTrack.create_audio_track("mic", source)
    await clients[0].local_participant.publish_track(track, rtc.TrackPublishOptions())
    await wait_for(lambda: len(clients[3].remote_participants) == 1, what="p3 sees p0")
    after = await asyncio.to_thread(_alive_actors, DASHBOARD_PORT)
    assert after == before  # the same Ray actors, in the same processes


async def test_twenty_joins_at_once_all_connect(server: Server, token: MintToken, room_name: str) -> None:
    """Joins that arrive together are seated in parallel on warm workers (each Participant actor used to be a
    new Ray process: 1 of 20 simultaneous SDK joins connected within 30 s)."""
    clients = [rtc.Room() for _ in range(20)]
    try:
        await asyncio.gather(
            *(c.connect(server.url, token(f"p{i}", f"{room_name}-{i // 2}")) for i, c in enumerate(clients))
        )
        for c in clients:
            await wait_for(lambda c=c: len(c.remote_participants) == 1, what="each sees its partner")
    finally:
        await asyncio.gather(*(c.disconnect() for c in clients if c.isconnected()))


@pytest.fixture
def two_workers(tmp_path: Path) -> Iterator[Server]:
    """A server of its own (a worker of it gets killed): two media workers, two participants each."""
    with running_server(
        LOST_PORT, LOST_DASHBOARD, tmp_path, ["--workers", "2", "--participants-per-worker", "2"]
    ) as (srv, _):
        yield srv


async def _placed(srv: Server, identity: str, joins: int = 1) -> str:
    """The media worker the server placed `identity` on at its `joins`-th join (the worker's log line
    reaches the server's log through Ray's log forwarding, a moment after the join)."""
    found: list[str] = []

    def logged() -> bool:
        found[:] = re.findall(
            rf": {identity} joined as PA_\w+ on (\S+)", srv.log_path.read_text(errors="replace")
        )
        return len(found) >= joins

    await wait_for(logged, 10, f"{identity}'s join {joins} in the log")
    return found[joins - 1]


async def _kill_worker(worker: str) -> None:
    actors = await asyncio.to_thread(_alive_actors, LOST_DASHBOARD)
    (pid,) = [pid for name, pid in actors if name == worker]
    os.kill(pid, signal.SIGKILL)


async def _connect(srv: Server, token: MintToken, identity: str, room: str) -> rtc.Room:
    client = rtc.Room()
    await client.connect(srv.url, token(identity, room))
    return client


async def _identities(srv: Server, room: str) -> list[str]:
    async with lkapi.LiveKitAPI(srv.http_url, srv.api_key, srv.api_secret) as api:
        listed = await api.room.list_participants(lkapi.ListParticipantsRequest(room=room))
    return sorted(p.identity for p in listed.participants)


async def test_lost_worker_ends_its_sessions_and_the_room_goes_on(
    two_workers: Server, token: MintToken
) -> None:
    srv, room = two_workers, "lost-worker"
    alice = await _connect(srv, token, "alice", room)
    carol = await _connect(srv, token, "carol", room)
    bob = await _connect(srv, token, "bob", room)  # the home worker is full: bob goes to the other
    home = await _placed(
        srv, "alice"
    )  # a room's first participants go to its home, the worker hosting the Room
    assert await _placed(srv, "carol") == home
    assert await _placed(srv, "bob") != home
    bob_gone = Events(bob, "disconnected")
    alice_sees = Events(alice, "participant_disconnected")
    loop = asyncio.get_running_loop()

    await _kill_worker(await _placed(srv, "bob"))
    killed = loop.time()
    (left,) = await alice_sees.wait("participant_disconnected", timeout=10)
    assert left.identity == "bob"
    assert loop.time() - killed < 2.0
    await bob_gone.wait("disconnected", timeout=10)
    assert await _identities(srv, room) == ["alice", "carol"]

    again = await _connect(srv, token, "bob", room)  # at once, placed on the surviving worker
    assert await _placed(srv, "bob", joins=2) == home
    await wait_for(lambda: "bob" in {p.identity for p in alice.remote_participants.values()}, what="bob back")
    assert await _identities(srv, room) == ["alice", "bob", "carol"]
    for client in (alice, carol, again):
        await client.disconnect()


async def test_lost_home_worker_rebuilds_the_room(two_workers: Server, token: MintToken) -> None:
    """The room's home dies: its sessions there end, the others' clients are sent to reconnect, and the
    room opens again on the surviving worker with only the connected participants in it."""
    srv, room = two_workers, "lost-home"
    alice = await _connect(srv, token, "alice", room)
    carol = await _connect(srv, token, "carol", room)
    bob = await _connect(srv, token, "bob", room)
    home = await _placed(srv, "alice")
    assert await _placed(srv, "bob") != home
    alice_gone = Events(alice, "disconnected")

    await _kill_worker(home)
    await alice_gone.wait("disconnected", timeout=10)
    await wait_for(lambda: bob.connection_state == rtc.ConnectionState.CONN_CONNECTED, 20, "bob reconnected")

    async def only_bob() -> bool:
        return await _identities(srv, room) == ["bob"]

    for _ in range(100):
        if await only_bob():
            break
        await asyncio.sleep(0.1)
    assert await _identities(srv, room) == ["bob"]
    again = await _connect(srv, token, "alice", room)
    await wait_for(
        lambda: "alice" in {p.identity for p in bob.remote_participants.values()}, what="alice back"
    )
    for client in (bob, again, carol):
        if client.isconnected():
            await client.disconnect()


async def test_rooms_are_no_metrics_tag_by_default(server: Server, connect: Connect, room_name: str) -> None:
    """Without `media.room_gauges`, Ray's metrics have the per-worker figures but no series per room (a Ray
    worker would keep each room's for its life)."""
    await connect("alice", room_name)
    participants = re.compile(r'raysfu_participants\{[^}]*worker="media:[^"]+"[^}]*\} (\S+)')
    text = ""
    for _ in range(60):  # the worker's figures of alice's session reached Ray's metrics agent
        text = await asyncio.to_thread(ray_metrics_text, DASHBOARD_PORT)
        if sum(float(v) for v in participants.findall(text)) >= 1:
            break
        await asyncio.sleep(0.5)
    await asyncio.sleep(REPORT_INTERVAL + 2.0)  # what a room gauge would have waited for, and its export
    text = await asyncio.to_thread(ray_metrics_text, DASHBOARD_PORT)
    assert sum(float(v) for v in participants.findall(text)) >= 1
    assert "raysfu_room_" not in text


async def test_placement_weighs_packets_spilling_then_refusing(
    tmp_path: Path, token: MintToken, media: MediaSession
) -> None:
    """With a packet limit that one audio track passes (`media.max_worker_packets`), a room does not stay
    compact: the next participant goes to the idle worker (counting participants alone would keep it on the
    busy one), and once that worker relays the track too, a further join is refused as the cluster is full."""
    config = tmp_path / "packets.yaml"
    config.write_text("media:\n  max_worker_packets: 40\n")
    args = ["--config", str(config), "--workers", "2"]
    with running_server(7897, 8272, tmp_path, args) as (srv, _):
        room = "loud"
        alice = await _connect(srv, token, "alice", room)
        await media.publish(alice, video=False)
        busy = await _placed(srv, "alice")
        await asyncio.sleep(3 * LOAD_INTERVAL)  # the worker measures the track's packets
        bob = await _connect(srv, token, "bob", room)
        assert await _placed(srv, "bob") != busy
        rx = media.receive(bob)
        await rx.wait_tone(15.0, identity="alice")  # relayed to bob's worker, which is now busy too
        await asyncio.sleep(3 * LOAD_INTERVAL)
        carol = rtc.Room()
        with pytest.raises(rtc.ConnectError):
            await carol.connect(srv.url, token("carol", room), rtc.RoomOptions(connect_timeout=10.0))
        assert await _identities(srv, room) == ["alice", "bob"]
        log = srv.log_path.read_text(errors="replace")
        assert "join of carol to loud refused: every media worker is at its load limit (0.9 cores" in log
        for client in (alice, bob):
            await client.disconnect()


async def test_a_join_is_refused_when_every_worker_is_at_its_cpu_limit(
    tmp_path: Path, token: MintToken
) -> None:
    """Every worker over `media.max_worker_cpu` (here a limit that an idle worker already passes): the join
    is refused with a clear error (HTTP 503, which the SDK reports as a failed connect) and nothing is left:
    no participant, no room."""
    config = tmp_path / "full.yaml"
    config.write_text("media:\n  max_worker_cpu: 0.000001\n")
    with running_server(7895, 8270, tmp_path, ["--config", str(config)]) as (srv, _):
        await asyncio.sleep(2 * LOAD_INTERVAL)  # the workers' first CPU measurements
        client = rtc.Room()
        with pytest.raises(rtc.ConnectError):
            await client.connect(srv.url, token("alice", "full"), rtc.RoomOptions(connect_timeout=10.0))
        assert await _identities(srv, "full") == []
        async with lkapi.LiveKitAPI(srv.http_url, srv.api_key, srv.api_secret) as api:
            assert not (await api.room.list_rooms(lkapi.ListRoomsRequest(names=["full"]))).rooms
        log = srv.log_path.read_text(errors="replace")
        assert "join of alice to full refused: every media worker is at its load limit" in log
