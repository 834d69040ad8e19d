"""Resuming a session after its signalling dropped (LiveKit's resume), with the Python SDK.

`simulate_scenario(SIMULATE_SIGNAL_RECONNECT)` closes the SDK's WebSocket; the SDK reconnects it with
`reconnect=1&sid=...`, gets a ReconnectResponse, sends its SyncState and restarts ICE on its publisher PC
while the server restarts it on the subscriber PC. The session goes on: the same sid, nobody sees a leave,
media and data flow again. A resume of a session that is gone is answered as LiveKit does
(LeaveRequest STATE_MISMATCH, RECONNECT), and the SDK then joins anew.
"""

import asyncio
import time

import aiohttp
import pytest
from livekit import rtc
from livekit.protocol import models
from livekit.protocol import rtc as rtc_pb
from livekit.rtc._proto.room_pb2 import SimulateScenarioKind
from playwright.async_api import Page

from actors.media.hooks.aioice import CONSENT_EXPIRY, CONSENT_INTERVAL
from loadgen.livekit_peer import LiveKitPeer
from tests.interop.browser import browser_condition, browser_event, publish_from_page
from tests.interop.media import MediaReceiver, MediaSession, VideoSample
from tests.interop.sdk import Connect, Events, MintToken, Server
from tests.interop.test_bad_input import RawClient, raw_join

pytestmark = pytest.mark.timeout(150)

FIRST_MEDIA = 15.0
RESUMED = 20.0  # the SDK's resume: a new WebSocket, the ICE restarts


def readable(sample: VideoSample) -> bool:
    return sample.counter is not None


async def receives(rx: MediaReceiver, identity: str, since: float) -> None:
    await rx.wait_frames(10, FIRST_MEDIA, identity=identity, since=since, where=readable)
    await rx.wait_tone(FIRST_MEDIA, identity=identity, since=since)


async def signal_reconnect(room: rtc.Room) -> None:
    """Drop the SDK's signalling and wait until it says it reconnected."""
    events = Events(room, "reconnected")
    await room.simulate_scenario(SimulateScenarioKind.SIMULATE_SIGNAL_RECONNECT)
    await events.wait("reconnected", timeout=RESUMED)


async def test_signal_reconnect_resumes_the_session(
    connect: Connect, media: MediaSession, room_name: str
) -> None:
    alice = await connect("alice", room_name)
    bob = await connect("bob", room_name)
    alice_rx, bob_rx = media.receive(alice), media.receive(bob)
    await media.publish(alice)
    await media.publish(bob)
    start = time.monotonic()
    await asyncio.gather(receives(bob_rx, "alice", start), receives(alice_rx, "bob", start))
    sid = alice.local_participant.sid
    bob_events = Events(bob, "participant_disconnected", "participant_connected", "track_unpublished")
    alice_events = Events(alice, "participant_disconnected", "participant_connected", "disconnected")
    bob_data = Events(bob, "data_received")
    alice_data = Events(alice, "data_received")

    await signal_reconnect(alice)
    resumed = time.monotonic()

    assert alice.local_participant.sid == sid
    assert alice.connection_state == rtc.ConnectionState.CONN_CONNECTED
    # Media in both directions after the ICE restarts (the publisher's and the subscriber's).
    await asyncio.gather(receives(bob_rx, "alice", resumed), receives(alice_rx, "bob", resumed))
    await alice.local_participant.publish_data(b"after the resume", reliable=True, topic="t")
    await bob.local_participant.publish_data(b"and back", reliable=True, topic="t")
    (packet,) = await bob_data.wait("data_received", lambda p: p.topic == "t")
    assert packet.data == b"after the resume" and packet.participant.identity == "alice"
    (packet,) = await alice_data.wait("data_received", lambda p: p.topic == "t")
    assert packet.data == b"and back"
    # Past consent expiry (30 s without an answered consent check): the checks on the restarted pair, with
    # the new credentials, are answered; media still flows.
    await asyncio.sleep(CONSENT_EXPIRY + CONSENT_INTERVAL)
    later = time.monotonic()
    await asyncio.gather(receives(bob_rx, "alice", later), receives(alice_rx, "bob", later))
    assert bob_events.names() == [], bob_events.names()
    assert alice_events.names() == [], alice_events.names()
    assert [p.identity for p in bob.remote_participants.values()] == ["alice"]
    assert bob.remote_participants["alice"].sid == sid


async def test_resume_twice_keeps_the_session(connect: Connect, media: MediaSession, room_name: str) -> None:
    alice = await connect("alice", room_name)
    bob = await connect("bob", room_name)
    bob_rx = media.receive(bob)
    await media.publish(alice)
    sid = alice.local_participant.sid
    events = Events(bob, "participant_disconnected")
    for _ in range(2):
        await signal_reconnect(alice)
        await receives(bob_rx, "alice", time.monotonic())
    assert alice.local_participant.sid == sid
    assert events.names() == []


async def first_message(http: aiohttp.ClientSession, url: str, jwt: str) -> rtc_pb.SignalResponse:
    async with http.ws_connect(url, headers={"Authorization": f"Bearer {jwt}"}) as ws:
        message = await asyncio.wait_for(ws.receive(), 10)
        assert message.type == aiohttp.WSMsgType.BINARY, message
        return rtc_pb.SignalResponse.FromString(message.data)


def is_reconnect_leave(response: rtc_pb.SignalResponse) -> bool:
    leave = response.leave
    return (
        response.WhichOneof("message") == "leave"
        and leave.reason == models.DisconnectReason.STATE_MISMATCH
        and leave.action == rtc_pb.LeaveRequest.RECONNECT
    )


async def test_resume_of_a_session_that_is_gone_is_told_to_reconnect(
    server: Server, connect: Connect, token: MintToken, room_name: str
) -> None:
    alice = await connect("alice", room_name)
    resume = f"{server.url}/rtc?protocol=16&sdk=python&reconnect=1&sid="
    async with aiohttp.ClientSession() as http:
        # No such session in the room; a session of another identity; a room that is not open.
        for url, jwt in (
            (f"{resume}PA_unknown", token("alice", room_name)),
            (f"{resume}{alice.local_participant.sid}", token("mallory", room_name)),
            (f"{resume}{alice.local_participant.sid}", token("alice", f"{room_name}-none")),
        ):
            assert is_reconnect_leave(await first_message(http, url, jwt))
    assert alice.connection_state == rtc.ConnectionState.CONN_CONNECTED


async def test_sync_state_is_checked_against_the_session(
    server: Server, connect: Connect, token: MintToken, room_name: str
) -> None:
    """A raw client resumes its own session over a second socket (which replaces the first, as in
    LiveKit): a SyncState that matches keeps it; one naming a track the session does not publish gets
    LeaveRequest(STATE_MISMATCH, RECONNECT) and ends it."""
    bob = await connect("bob", room_name)
    events = Events(bob, "participant_connected", "participant_disconnected")
    jwt = token("alice", room_name)
    async with aiohttp.ClientSession() as http:
        first = await raw_join(http, server, jwt)
        (alice,) = await events.wait("participant_connected")
        ws = await http.ws_connect(
            f"{server.url}/rtc?protocol=16&sdk=python&reconnect=1&sid={alice.sid}",
            headers={"Authorization": f"Bearer {jwt}"},
        )
        resumed = RawClient(ws)
        await resumed.next("reconnect")
        update = await resumed.next("update")
        assert {p.identity for p in update.update.participants} == {"alice", "bob"}
        async with asyncio.timeout(10):  # the first socket is closed after what was sent on it
            while (closed := await first.ws.receive()).type == aiohttp.WSMsgType.BINARY:
                pass
        assert closed.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED), closed

        await resumed.send(rtc_pb.SignalRequest(sync_state=rtc_pb.SyncState()))
        await resumed.ping()
        assert events.names() == ["participant_connected"]

        unknown = rtc_pb.TrackPublishedResponse(cid="cam", track=models.TrackInfo(sid="TR_unknown"))
        await resumed.send(rtc_pb.SignalRequest(sync_state=rtc_pb.SyncState(publish_tracks=[unknown])))
        assert is_reconnect_leave(await resumed.next("leave"))
        (gone,) = await events.wait("participant_disconnected")
        assert gone.sid == alice.sid


async def test_browser_resumes_after_a_signal_reconnect(
    page: Page,
    page_url: str,
    server: Server,
    token: MintToken,
    connect: Connect,
    media: MediaSession,
    room_name: str,
) -> None:
    """livekit-client's resume (simulateScenario('signal-reconnect')): the same sid, the Python client sees
    no leave, and media flows both ways after the ICE restarts."""
    await publish_from_page(page, page_url, server, token("browser", room_name))
    sid = await page.evaluate("window.__room.localParticipant.sid")
    alice = await connect("alice", room_name)
    rx = media.receive(alice)
    pub = await media.publish(alice, audio=False)
    assert pub.video_publication is not None
    video_sid = pub.video_publication.sid
    await rx.wait_frames(10, FIRST_MEDIA, identity="browser")
    decoded = f"window.__video['{video_sid}'] ? window.__video['{video_sid}'].framesDecoded : 0"
    await browser_condition(page, f"({decoded}) >= 10", "10 decoded frames of alice's video")
    events = Events(alice, "participant_disconnected", "participant_connected")

    await page.evaluate("window.__room.simulateScenario('signal-reconnect')")
    lost = await browser_event(page, "e => e.ev === 'connectionState' && e.state === 'signalReconnecting'")
    await browser_event(
        page, f"e => e.ev === 'connectionState' && e.state === 'connected' && e.t >= {lost['t']}", RESUMED
    )
    resumed = time.monotonic()
    frames = await page.evaluate(decoded)

    assert await page.evaluate("window.__room.localParticipant.sid") == sid
    await rx.wait_frames(10, FIRST_MEDIA, identity="browser", since=resumed)
    await browser_condition(page, f"({decoded}) >= {frames + 30}", "30 more decoded frames of alice's video")
    await asyncio.sleep(CONSENT_EXPIRY + CONSENT_INTERVAL)  # the restarted pairs' consent checks hold
    later = time.monotonic()
    frames = await page.evaluate(decoded)
    await rx.wait_frames(10, FIRST_MEDIA, identity="browser", since=later)
    await browser_condition(page, f"({decoded}) >= {frames + 30}", "30 more decoded frames of alice's video")
    assert events.names() == []
    assert "browser" in alice.remote_participants


async def test_a_dropped_session_ends_once_its_peer_connections_are_down(
    server: Server, connect: Connect, token: MintToken, room_name: str
) -> None:
    """A client whose WebSocket drops keeps its seat while its peer connection is up (nobody sees it leave,
    it may resume); once that is down too, it leaves within RESUME_GRACE (5 s) and a little."""
    bob = await connect("bob", room_name)
    events = Events(bob, "participant_connected", "participant_disconnected")
    peer = LiveKitPeer(server.url, token("alice", room_name), "alice")
    try:
        await peer.connect()  # its subscriber PC is connected
        await events.wait("participant_connected")
        assert peer.ws is not None
        await peer.ws.close()  # no LeaveRequest: the socket just drops
        await asyncio.sleep(3)
        assert events.names() == ["participant_connected"]
        await peer.subscriber.close()
        down = time.monotonic()
        (gone,) = await events.wait("participant_disconnected", timeout=15)
        assert gone.identity == "alice"
        assert time.monotonic() - down < 10
    finally:
        await peer.close()
