"""Webhooks as LiveKit sends them, checked with the server SDK's WebhookReceiver, from a server whose config
file has LiveKit's `webhook` section. The receiver is an HTTP server inside the test, on 127.0.0.1; what it
answers depends on the room (rooms named "flaky-..." fail the first attempts, "stuck-..." never answer)."""

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field

import aiohttp
import pytest
from aiohttp import web
from livekit import api as lkapi
from livekit import rtc
from livekit.protocol import models, webhook
from livekit.protocol import rtc as signalling

from bench.server import API_KEY, API_SECRET, Server
from tests.interop.conftest import running_server
from tests.interop.media import MediaSession
from tests.interop.sdk import wait_for

RECEIVER_PORT = 7911
FAILURES = 2  # answers 503 to the first attempts of each event of a "flaky-" room


@dataclass
class Delivery:
    body: str
    authorization: str
    content_type: str
    status: int  # what the receiver answered

    @property
    def event(self) -> webhook.WebhookEvent:
        return lkapi.WebhookReceiver(lkapi.TokenVerifier(API_KEY, API_SECRET)).receive(
            self.body, self.authorization
        )


@dataclass
class Receiver:
    deliveries: list[Delivery] = field(default_factory=list)
    failed: dict[str, int] = field(default_factory=dict)  # event id -> 503s answered
    stuck: int = 0  # requests being held unanswered
    release: asyncio.Event = field(default_factory=asyncio.Event)

    def accepted(self, room: str) -> list[webhook.WebhookEvent]:
        events = [d.event for d in self.deliveries if d.status == 200]
        return [e for e in events if e.room.name == room]

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.text()
        auth = request.headers.get("Authorization", "")
        content_type = request.headers.get("Content-Type", "")
        parsed = json.loads(body)
        room, event_id = parsed.get("room", {}).get("name", ""), parsed.get("id", "")
        status = 200
        if room.startswith("stuck-"):
            self.stuck += 1
            await self.release.wait()
        elif room.startswith("flaky-") and self.failed.get(event_id, 0) < FAILURES:
            self.failed[event_id] = self.failed.get(event_id, 0) + 1
            status = 503
        self.deliveries.append(Delivery(body, auth, content_type, status))
        return web.Response(status=status)


@pytest.fixture(scope="module")
async def receiver() -> AsyncIterator[Receiver]:
    recorder = Receiver()
    app = web.Application()
    app.router.add_post("/hook", recorder.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", RECEIVER_PORT).start()
    yield recorder
    recorder.release.set()
    await runner.cleanup()


@pytest.fixture(scope="module")
def hooked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server posting its webhooks to the receiver, signed with the dev key."""
    directory = tmp_path_factory.mktemp("webhooks")
    config = directory / "livekit.yaml"
    config.write_text(
        f"webhook:\n  api_key: {API_KEY}\n  urls: [http://127.0.0.1:{RECEIVER_PORT}/hook]\n"
        "room:\n  departure_timeout: 1\n"
    )
    with running_server(7901, 8276, directory, ["--config", str(config)]) as (srv, _):
        yield srv


async def _connect(srv: Server, identity: str, room: str) -> rtc.Room:
    client = rtc.Room()
    await client.connect(srv.url, srv.token(identity, room))
    return client


async def _a_call(srv: Server, room: str, media: MediaSession, receiver: Receiver) -> dict[str, str]:
    """alice joins and publishes audio, bob joins, alice unpublishes and leaves, then bob; the sids.

    The SDK's publish_track returns once the server has announced the track; the track is published
    (its webhook sent) once its media is negotiated, so bob joins after that webhook arrived."""
    alice = await _connect(srv, "alice", room)
    publisher = await media.publish(alice, video=False)
    assert publisher.audio_publication is not None
    track = publisher.audio_publication.sid
    await wait_for(lambda: "track_published" in {e.event for e in receiver.accepted(room)}, timeout=30)
    bob = await _connect(srv, "bob", room)

    def bob_sees_the_track() -> bool:
        seen = bob.remote_participants.get("alice")
        return seen is not None and track in seen.track_publications

    await wait_for(bob_sees_the_track)
    await publisher.stop()
    await alice.local_participant.unpublish_track(track)
    sids = {"alice": alice.local_participant.sid, "bob": bob.local_participant.sid, "track": track}
    await alice.disconnect()
    await wait_for(lambda: "alice" not in bob.remote_participants)
    await bob.disconnect()
    return sids


EXPECTED = [
    ("room_started", ""),
    ("participant_joined", "alice"),
    ("track_published", "alice"),
    ("participant_joined", "bob"),
    ("track_unpublished", "alice"),
    ("participant_left", "alice"),
    ("participant_left", "bob"),
    ("room_finished", ""),
]


def _sequence(events: list[webhook.WebhookEvent]) -> list[tuple[str, str]]:
    return [(e.event, e.participant.identity) for e in events]


async def test_a_rooms_lifetime_is_posted_in_order_and_signed(
    hooked: Server, receiver: Receiver, media: MediaSession
) -> None:
    room = "hooked"
    sids = await _a_call(hooked, room, media, receiver)
    await wait_for(lambda: len(receiver.accepted(room)) >= len(EXPECTED), timeout=20)
    await asyncio.sleep(1.0)  # nothing more arrives
    assert {d.content_type for d in receiver.deliveries} == {"application/webhook+json"}
    events = receiver.accepted(room)  # each body verified against its Authorization by WebhookReceiver
    assert _sequence(events) == EXPECTED, _sequence(events)
    assert len({e.id for e in events}) == len(events) and all(e.id.startswith("EV_") for e in events)
    assert len({e.room.sid for e in events}) == 1 and events[0].room.sid.startswith("RM_")
    started, joined, published, _, unpublished, left, _, finished = events
    assert started.room.empty_timeout > 0 and started.room.creation_time > 0
    assert (
        joined.participant.sid == sids["alice"] and joined.participant.state == models.ParticipantInfo.ACTIVE
    )
    assert published.track.sid == sids["track"] and published.track.type == models.AUDIO
    assert published.participant.sid == sids["alice"]
    assert unpublished.track.sid == sids["track"]
    assert left.participant.sid == sids["alice"]
    assert left.participant.state == models.ParticipantInfo.DISCONNECTED
    assert left.participant.disconnect_reason == models.DisconnectReason.CLIENT_INITIATED
    assert finished.room.num_participants == 0
    assert all(e.created_at >= started.created_at for e in events)


async def test_a_failing_receiver_gets_every_event_again_in_order(
    hooked: Server, receiver: Receiver, media: MediaSession
) -> None:
    """Each event is refused (503) twice, then taken: retried with backoff, never out of order, once."""
    room = "flaky-room"
    await _a_call(hooked, room, media, receiver)
    await wait_for(lambda: len(receiver.accepted(room)) >= len(EXPECTED), timeout=60)
    await asyncio.sleep(2.0)
    events = receiver.accepted(room)
    assert _sequence(events) == EXPECTED
    assert len({e.id for e in events}) == len(events)
    assert all(receiver.failed[e.id] == FAILURES for e in events)


async def test_a_participant_that_never_connects_is_a_connection_aborted(
    hooked: Server, receiver: Receiver
) -> None:
    """Signalling joined, no peer connection ever connected: participant_connection_aborted, not _left,
    and no participant_joined (LiveKit counts a participant as joined once it is connected)."""
    room = "aborted"
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(
            f"{hooked.url}/rtc?protocol=16&sdk=python",
            headers={"Authorization": f"Bearer {hooked.token('carol', room)}"},
        )
        join = signalling.SignalResponse.FromString((await ws.receive()).data)
        assert join.WhichOneof("message") == "join"
        await ws.close()
    await wait_for(lambda: len(receiver.accepted(room)) >= 3, timeout=20)
    events = receiver.accepted(room)
    assert _sequence(events) == [
        ("room_started", ""),
        ("participant_connection_aborted", "carol"),
        ("room_finished", ""),
    ]
    assert events[1].participant.sid == join.join.participant.sid


async def test_a_receiver_that_never_answers_holds_up_no_join(hooked: Server, receiver: Receiver) -> None:
    """The receiver holds the room's first event unanswered; the room goes on: three participants join
    and see each other while it still has not answered, and another room's events still arrive."""
    room = "stuck-room"
    clients = [await _connect(hooked, identity, room) for identity in ("ann", "ben", "cat")]
    for client in clients:
        await wait_for(lambda c=client: len(c.remote_participants) == 2)  # type: ignore[misc]
    assert receiver.stuck >= 1 and not receiver.accepted(room)
    other = await _connect(hooked, "dan", "unstuck")
    await wait_for(lambda: len(receiver.accepted("unstuck")) >= 2, timeout=20)
    await other.disconnect()
    for client in clients:
        await client.disconnect()
    assert not receiver.accepted(room)  # the rest of the stuck room's events wait behind the first
