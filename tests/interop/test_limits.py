"""Limits per participant (the config's `limit` section): a client over one is refused or cut off, and the
others in its room notice nothing. One server with small limits, so that tests reach them quickly."""

import asyncio
from collections.abc import AsyncIterator, Iterator

import aiohttp
import pytest
import yaml
from livekit import rtc
from livekit.protocol import models
from livekit.protocol import rtc as signal

from tests.interop.conftest import running_server
from tests.interop.media import MediaSession
from tests.interop.sdk import Events, Server, wait_for
from tests.interop.test_bad_input import raw_join

LIMITS = {
    "signal_messages_per_second": 50,  # a burst of 100 (actors.limits.RATE_BURST = 2 s)
    "data_packets_per_second": 10,  # a burst of 20
    "data_bytes_per_second": 20_000,  # a burst of 40 KB
    "max_data_packet_size": 8192,
    "max_published_tracks": 2,
    "subscription_limit_audio": 1,
}


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    log_dir = tmp_path_factory.mktemp("limited")
    config = log_dir / "raysfu.yaml"
    config.write_text(yaml.safe_dump({"limit": LIMITS}))
    with running_server(7896, 8271, log_dir, ["--config", str(config)]) as (srv, _):
        yield srv


@pytest.fixture
async def clients(limited: Server) -> AsyncIterator[list[rtc.Room]]:
    rooms: list[rtc.Room] = []
    yield rooms
    for room in rooms:
        await room.disconnect()


async def join(limited: Server, clients: list[rtc.Room], identity: str, room: str) -> rtc.Room:
    client = rtc.Room()
    clients.append(client)
    await client.connect(limited.url, limited.token(identity, room))
    return client


class Chat:
    """A sender that keeps publishing reliable data within the limits, and a bystander that counts it."""

    def __init__(self, sender: rtc.Room, bystander: rtc.Room) -> None:
        self.sender = sender
        self.received: list[bytes] = []
        self.sent = 0
        bystander.on("data_received", self._on_data)

    def _on_data(self, packet: rtc.DataPacket) -> None:
        if (
            packet.participant is not None
            and packet.participant.identity == self.sender.local_participant.identity
        ):
            self.received.append(packet.data)

    async def talk(self, count: int = 15, interval: float = 0.2) -> None:
        for i in range(count):
            await self.sender.local_participant.publish_data(f"chat {i}".encode(), reliable=True)
            self.sent += 1
            await asyncio.sleep(interval)

    async def all_arrived(self) -> None:
        await wait_for(lambda: len(self.received) == self.sent, 10, f"{self.sent} chat packets")
        assert self.received == [f"chat {i}".encode() for i in range(self.sent)]


async def test_signalling_flood_ends_only_that_session(
    limited: Server, http: aiohttp.ClientSession, clients: list[rtc.Room], room_name: str
) -> None:
    bystander = await join(limited, clients, "bystander", room_name)
    chat = Chat(await join(limited, clients, "sender", room_name), bystander)
    gone = Events(bystander, "participant_disconnected")
    raw = await raw_join(http, limited, limited.token("flooder", room_name))
    await wait_for(lambda: "flooder" in bystander.remote_participants, what="the flooder joined")

    talking = asyncio.get_running_loop().create_task(chat.talk())
    for i in range(400):  # the limit is 50 a second with a burst of 100: 400 at once is a flood
        await raw.send(signal.SignalRequest(ping_req=signal.Ping(timestamp=i)))
    leave = await raw.next("leave")
    assert leave.leave.action == signal.LeaveRequest.DISCONNECT
    (participant,) = await gone.wait("participant_disconnected")
    assert participant.identity == "flooder"
    await talking
    await chat.all_arrived()


async def test_data_over_the_rates_or_size_is_dropped_for_that_sender_only(
    limited: Server, clients: list[rtc.Room], room_name: str
) -> None:
    bystander = await join(limited, clients, "bystander", room_name)
    chat = Chat(await join(limited, clients, "sender", room_name), bystander)
    flooder = await join(limited, clients, "flooder", room_name)
    flooded = Chat(flooder, bystander)
    talking = asyncio.get_running_loop().create_task(chat.talk())

    for i in range(100):  # packets: a burst of 20 and 10 a second
        await flooder.local_participant.publish_data(f"chat {i}".encode(), reliable=True)
    await talking
    await chat.all_arrived()
    await asyncio.sleep(1)
    assert 20 <= len(flooded.received) < 60, len(flooded.received)

    await asyncio.sleep(3)  # the packet bucket refills; the byte bucket (40 KB) too
    before = len(flooded.received)
    for _ in range(15):  # 15 packets (under the packet burst) of 8,000 bytes: 120 KB, over the byte burst
        await flooder.local_participant.publish_data(b"x" * 8000, reliable=True)
    await flooder.local_participant.publish_data(b"y" * 9000, reliable=True)  # over max_data_packet_size
    await asyncio.sleep(2)
    big = flooded.received[before:]
    assert 0 < len(big) < 10 and all(p == b"x" * 8000 for p in big), [len(p) for p in big]


async def test_tracks_over_the_limit_are_refused(
    limited: Server, http: aiohttp.ClientSession, clients: list[rtc.Room], room_name: str
) -> None:
    raw = await raw_join(http, limited, limited.token("raw", room_name))
    for cid in ("a", "b", "c"):
        add = signal.AddTrackRequest(cid=cid, name=cid, type=models.TrackType.AUDIO)
        await raw.send(signal.SignalRequest(add_track=add))
    published = [(await raw.next("track_published")).track_published.cid for _ in range(2)]
    assert published == ["a", "b"]
    refusal = (await raw.next("request_response")).request_response
    assert (refusal.reason, refusal.add_track.cid) == (signal.RequestResponse.LIMIT_EXCEEDED, "c")
    assert "limit" in refusal.message
    await raw.ping()


async def test_subscriptions_over_the_limit_wait_for_a_free_slot(
    limited: Server, clients: list[rtc.Room], room_name: str
) -> None:
    """As in LiveKit: a subscription over subscription_limit_audio is not refused but waits; it is made
    when one of the subscriber's audio subscriptions ends."""
    bob = await join(limited, clients, "bob", room_name)
    subscribed = Events(bob, "track_subscribed")
    media = MediaSession()
    try:
        publishers = {
            name: await media.publish(await join(limited, clients, name, room_name), video=False)
            for name in ("alice", "carol")
        }
        await subscribed.wait("track_subscribed")
        await asyncio.sleep(2)  # time for a second subscription, were there no limit
        (first,) = [p.identity for _, _, p in subscribed.args("track_subscribed")]
        (other,) = set(publishers) - {first}
        publication = publishers[first].audio_publication
        assert publication is not None
        await publishers[first].room.local_participant.unpublish_track(publication.sid)
        await subscribed.wait("track_subscribed", lambda t, pb, p: p.identity == other)
    finally:
        await media.close()
