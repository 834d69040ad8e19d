"""`/rtc/v1`: one peer connection per participant, offered by the client, answered by raysfu.

Both pinned SDKs join there by default: the Python SDK (livekit 1.2.1, its Rust engine's
single_peer_connection defaults to true) and livekit-client 2.23.0 (singlePeerConnection defaults to true).
Their first offer carries their data channels and 3 recvonly audio and 3 recvonly video m-lines, on which
raysfu sends what they subscribe to; for more it asks for more (MediaSectionsRequirement). `/rtc` (two peer
connections) stays for clients that ask for it (single_peer_connection=False).
"""

import asyncio
import base64
import gzip
import re
from urllib.parse import urlencode

import aiohttp
import pytest
from livekit import api as lkapi
from livekit import rtc
from livekit.protocol import models
from livekit.protocol import rtc as rtc_pb
from playwright.async_api import Page

from tests.interop.browser import browser_event, decoded_video, open_room, publish_from_page
from tests.interop.conftest import DASHBOARD_PORT
from tests.interop.media import MediaSession, media_stats, subscriber_m_lines
from tests.interop.sdk import Connect, Events, MintToken, Server, wait_for
from tests.interop.test_media import assert_receives_pattern, published

pytestmark = pytest.mark.timeout(120)

FIRST_MEDIA = 15.0


def joins(server: Server, room: str, identity: str) -> list[str]:
    """The paths (/rtc or /rtc/v1) `identity`'s joins to `room` came on, from the server's log."""
    pattern = re.compile(rf"{re.escape(room)}/{re.escape(identity)} PA_\w+: joining on (\S+)$", re.M)
    return pattern.findall(server.log_path.read_text(errors="replace"))


def join_request(request: rtc_pb.JoinRequest, compress: bool = False) -> str:
    """The `join_request` URL parameter for `request`, as the SDKs make it."""
    data = request.SerializeToString()
    wrapped = rtc_pb.WrappedJoinRequest(
        compression=rtc_pb.WrappedJoinRequest.GZIP if compress else rtc_pb.WrappedJoinRequest.NONE,
        join_request=gzip.compress(data) if compress else data,
    )
    return base64.urlsafe_b64encode(wrapped.SerializeToString()).decode()


def client_request(auto_subscribe: bool = True) -> rtc_pb.JoinRequest:
    return rtc_pb.JoinRequest(
        client_info=models.ClientInfo(sdk=models.ClientInfo.PYTHON, protocol=16),
        connection_settings=rtc_pb.ConnectionSettings(auto_subscribe=auto_subscribe),
    )


async def test_python_sdk_joins_on_v1_with_media_and_data_both_ways(
    connect: Connect, media: MediaSession, server: Server, room_name: str
) -> None:
    alice = await connect("alice", room_name)
    bob = await connect("bob", room_name)
    alice_rx, bob_rx = media.receive(alice), media.receive(bob)
    alice_pub = await media.publish(alice)
    bob_pub = await media.publish(bob)
    await asyncio.gather(
        assert_receives_pattern(bob_rx, alice_pub, "alice"),
        assert_receives_pattern(alice_rx, bob_pub, "bob"),
    )
    alice_in, bob_in = Events(alice, "data_received"), Events(bob, "data_received")
    await alice.local_participant.publish_data(b"to bob", reliable=True, topic="chat")
    await bob.local_participant.publish_data(b"to alice", reliable=False, topic="pos")
    (to_bob,) = await bob_in.wait("data_received")
    assert (to_bob.data, to_bob.participant.identity, to_bob.kind) == (
        b"to bob",
        "alice",
        rtc.DataPacketKind.KIND_RELIABLE,
    )
    (to_alice,) = await alice_in.wait("data_received")
    assert (to_alice.data, to_alice.participant.identity, to_alice.kind) == (
        b"to alice",
        "bob",
        rtc.DataPacketKind.KIND_LOSSY,
    )
    for identity in ("alice", "bob"):
        assert joins(server, room_name, identity) == ["/rtc/v1"]
    stats = await media_stats(DASHBOARD_PORT)
    for room in (alice, bob):
        # one PC: the client's 3 + 3 receiving m-lines carry the other's two tracks, nothing was added
        assert subscriber_m_lines(stats, room.local_participant.sid) == 6


async def test_more_subscriptions_than_the_first_offer_has_m_lines_for(
    connect: Connect, media: MediaSession, server: Server, room_name: str
) -> None:
    """Four publishers of audio and video: their subscriber needs 4 + 4 m-lines, its first offer has 3 + 3,
    so raysfu asks for more (MediaSectionsRequirement) and sends the rest on the ones the next offer adds."""
    publishers = [await connect(f"pub{i}", room_name) for i in range(4)]
    for room in publishers:
        await media.publish(room, width=160, height=120, fps=10)
    viewer = await connect("viewer", room_name)
    rx = media.receive(viewer)
    for i in range(4):
        await rx.wait_frames(5, FIRST_MEDIA, identity=f"pub{i}")
        await rx.wait_tone(FIRST_MEDIA, identity=f"pub{i}")
    assert len(rx.videos) == 4 and len(rx.audios) == 4, rx.report()
    asked = re.findall(
        rf"{re.escape(room_name)}/viewer PA_\w+\): asked for an offer with (\d+) more audio and (\d+)",
        server.log_path.read_text(errors="replace"),
    )
    assert sum(int(a) for a, _ in asked) >= 1 and sum(int(v) for _, v in asked) >= 1, asked
    stats = await media_stats(DASHBOARD_PORT)
    assert subscriber_m_lines(stats, viewer.local_participant.sid) >= 8
    assert joins(server, room_name, "viewer") == ["/rtc/v1"]


async def test_unpublish_and_resubscribe_on_one_peer_connection(
    connect: Connect, media: MediaSession, room_name: str
) -> None:
    """bob unsubscribes and resubscribes alice's tracks, then she unpublishes them and publishes new ones:
    each time what he gets follows, on the m-lines his client offered (the SDP does not grow past 3 + 3)."""
    alice = await connect("alice", room_name)
    bob = await connect("bob", room_name)
    rx = media.receive(bob)
    pub = await media.publish(alice)
    video_sid, audio_sid = published(pub)
    await rx.wait_frames(10, FIRST_MEDIA, identity="alice")
    events = Events(bob, "track_unsubscribed", "track_subscribed", "track_unpublished")
    publications = [
        bob.remote_participants["alice"].track_publications[sid] for sid in (video_sid, audio_sid)
    ]
    for publication in publications:
        publication.set_subscribed(False)
    for sid in (video_sid, audio_sid):
        await events.wait("track_unsubscribed", lambda t, pb, p, sid=sid: pb.sid == sid)
    for publication in publications:
        publication.set_subscribed(True)
    for sid in (video_sid, audio_sid):
        await events.wait("track_subscribed", lambda t, pb, p, sid=sid: pb.sid == sid)
    frames = rx.videos[video_sid].frames()
    await wait_for(
        lambda: rx.videos[video_sid].frames() >= frames + 10, FIRST_MEDIA, "video after resubscribing"
    )

    await pub.stop()
    for sid in (video_sid, audio_sid):
        await alice.local_participant.unpublish_track(sid)
        await events.wait("track_unpublished", lambda pb, p, sid=sid: pb.sid == sid)
    again = await media.publish(alice)
    new_video, new_audio = published(again)
    await wait_for(
        lambda: new_video in rx.videos and rx.videos[new_video].frames() >= 10, FIRST_MEDIA, "the new video"
    )
    await wait_for(
        lambda: new_audio in rx.audios and rx.audios[new_audio].tone_windows() >= 3,
        FIRST_MEDIA,
        "the new tone",
    )
    stats = await media_stats(DASHBOARD_PORT)
    assert subscriber_m_lines(stats, bob.local_participant.sid) == 6


async def test_python_sdk_still_joins_on_rtc_when_it_asks(
    connect: Connect, media: MediaSession, server: Server, room_name: str
) -> None:
    alice = await connect("alice", room_name, single_peer_connection=False)
    bob = await connect("bob", room_name)
    alice_rx, bob_rx = media.receive(alice), media.receive(bob)
    alice_pub, bob_pub = await media.publish(alice), await media.publish(bob)
    await asyncio.gather(
        assert_receives_pattern(bob_rx, alice_pub, "alice"),
        assert_receives_pattern(alice_rx, bob_pub, "bob"),
    )
    bob_in = Events(bob, "data_received")
    await alice.local_participant.publish_data(b"over two PCs", reliable=True)
    (packet,) = await bob_in.wait("data_received")
    assert packet.data == b"over two PCs"
    assert joins(server, room_name, "alice") == ["/rtc"]
    assert joins(server, room_name, "bob") == ["/rtc/v1"]


def bad_join_requests() -> list[tuple[str, str | None]]:
    good = join_request(client_request())
    return [
        ("missing", None),
        ("empty", ""),
        ("not base64", "%%%not-base64%%%"),
        ("not a WrappedJoinRequest", base64.urlsafe_b64encode(b"\xff\xff\xff\xff").decode()),
        (
            "not a JoinRequest",
            base64.urlsafe_b64encode(
                rtc_pb.WrappedJoinRequest(join_request=b"\x0a\xff\xff").SerializeToString()
            ).decode(),
        ),
        (
            "bad gzip",
            base64.urlsafe_b64encode(
                rtc_pb.WrappedJoinRequest(
                    compression=rtc_pb.WrappedJoinRequest.GZIP, join_request=b"not gzip"
                ).SerializeToString()
            ).decode(),
        ),
        ("truncated", good[: len(good) // 2]),
    ]


@pytest.mark.parametrize(("case", "value"), bad_join_requests(), ids=[c for c, _ in bad_join_requests()])
async def test_malformed_join_request_is_refused_with_400_and_changes_nothing(
    http: aiohttp.ClientSession,
    server: Server,
    token: MintToken,
    api: lkapi.LiveKitAPI,
    room_name: str,
    case: str,
    value: str | None,
) -> None:
    query = {
        "access_token": token("mallory", room_name),
        **({} if value is None else {"join_request": value}),
    }
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await http.ws_connect(f"{server.url}/rtc/v1?{urlencode(query)}")
    assert refused.value.status == 400, case
    async with http.get(f"{server.http_url}/rtc/v1/validate", params=query) as response:
        assert response.status == 400, case
    rooms = await api.room.list_rooms(lkapi.ListRoomsRequest(names=[room_name]))
    assert list(rooms.rooms) == [], case


async def test_raw_v1_join_with_gzip_answers_its_offerless_join(
    http: aiohttp.ClientSession, server: Server, token: MintToken, api: lkapi.LiveKitAPI, room_name: str
) -> None:
    """A gzipped JoinRequest (as livekit-client sends it) seats the participant with what it asks for:
    its attributes (with canUpdateOwnMetadata) and one peer connection (subscriber_primary false)."""
    request = client_request()
    request.participant_attributes["role"] = "tester"
    query = {
        "access_token": token("raw", room_name, can_update_own_metadata=True),
        "join_request": join_request(request, compress=True),
    }
    async with http.ws_connect(f"{server.url}/rtc/v1?{urlencode(query)}") as ws:
        message = await ws.receive()
        join = rtc_pb.SignalResponse.FromString(message.data).join
        assert join.participant.identity == "raw" and not join.subscriber_primary
        assert dict(join.participant.attributes) == {"role": "tester"}
        participants = await api.room.list_participants(lkapi.ListParticipantsRequest(room=room_name))
        assert [p.identity for p in participants.participants] == ["raw"]


async def test_join_request_attributes_need_permission(
    http: aiohttp.ClientSession, server: Server, token: MintToken, api: lkapi.LiveKitAPI, room_name: str
) -> None:
    request = client_request()
    request.metadata = "mine"
    query = {"access_token": token("raw", room_name), "join_request": join_request(request)}
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await http.ws_connect(f"{server.url}/rtc/v1?{urlencode(query)}")
    assert refused.value.status == 401
    rooms = await api.room.list_rooms(lkapi.ListRoomsRequest(names=[room_name]))
    assert list(rooms.rooms) == []


async def test_v1_validate(
    http: aiohttp.ClientSession, server: Server, token: MintToken, room_name: str
) -> None:
    url = f"{server.http_url}/rtc/v1/validate"
    good = {"access_token": token("alice", room_name), "join_request": join_request(client_request())}
    async with http.get(url, params=good) as response:
        assert (response.status, await response.text()) == (200, "success")
    async with http.get(url, params={**good, "access_token": "not-a-token"}) as response:
        assert response.status == 401
    async with http.get(url, params={"join_request": good["join_request"]}) as response:
        assert response.status == 401  # the token is checked first, as in LiveKit
    async with http.get(url, params={"access_token": good["access_token"]}) as response:
        assert response.status == 400
        assert "join_request" in await response.text()


async def test_browser_joins_on_v1_with_media_and_data_both_ways(
    page: Page,
    page_url: str,
    server: Server,
    token: MintToken,
    connect: Connect,
    media: MediaSession,
    room_name: str,
) -> None:
    await publish_from_page(page, page_url, server, token("browser", room_name))
    alice = await connect("alice", room_name)
    rx = media.receive(alice)
    pub = await media.publish(alice)
    video_sid, _ = published(pub)
    await rx.wait_frames(10, 20.0, identity="browser")
    await decoded_video(page, video_sid, 20, "20 decoded frames of alice's video")
    alice_in = Events(alice, "data_received")
    await page.evaluate(
        "window.__room.localParticipant.publishData(new TextEncoder().encode('from js'), {reliable: true})"
    )
    (packet,) = await alice_in.wait("data_received")
    assert (packet.data, packet.participant.identity) == (b"from js", "browser")
    await alice.local_participant.publish_data(b"from python", reliable=True, topic="t")
    got = await browser_event(page, "e => e.ev === 'dataReceived'")
    assert (got["text"], got["from"]) == ("from python", "alice"), got
    assert joins(server, room_name, "browser") == ["/rtc/v1"]


async def test_browser_gets_more_audio_tracks_than_its_first_offer_has_m_lines_for(
    page: Page,
    page_url: str,
    server: Server,
    token: MintToken,
    connect: Connect,
    media: MediaSession,
    room_name: str,
) -> None:
    publishers = [await connect(f"pub{i}", room_name) for i in range(4)]
    sids = []
    for room in publishers:
        pub = await media.publish(room, video=False)
        assert pub.audio_publication is not None
        sids.append(pub.audio_publication.sid)
    await open_room(page, page_url, server, token("browser", room_name), publish=False)
    for sid in sids:
        await browser_event(page, f"e => e.ev === 'trackSubscribed' && e.sid === '{sid}'")
    inbound = """async () => {
        const stats = await window.__room.engine.pcManager.publisher.getStats();
        return [...stats.values()].filter(s => s.type === 'inbound-rtp' && s.kind === 'audio')
            .filter(s => s.packetsReceived > 20).length;
    }"""
    counts: list[int] = []

    async def poll() -> None:
        while True:
            counts.append(await page.evaluate(inbound))
            if counts[-1] >= 4:
                return
            await asyncio.sleep(0.5)

    async with asyncio.timeout(FIRST_MEDIA):
        await poll()
    receiving = counts[-1]
    assert receiving >= 4
    assert joins(server, room_name, "browser") == ["/rtc/v1"]


async def test_browser_still_joins_on_rtc_when_it_asks(
    page: Page,
    page_url: str,
    server: Server,
    token: MintToken,
    connect: Connect,
    media: MediaSession,
    room_name: str,
) -> None:
    await open_room(page, page_url, server, token("browser", room_name), publish=False, v0="1")
    alice = await connect("alice", room_name)
    pub = await media.publish(alice)
    video_sid, _ = published(pub)
    await decoded_video(page, video_sid, 20, "20 decoded frames of alice's video")
    assert joins(server, room_name, "browser") == ["/rtc"]
