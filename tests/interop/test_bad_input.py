"""Bad input on the signalling socket: refused or cut off cleanly, and nobody else in the room notices.

A raw WebSocket client (aiohttp) plays the misbehaving participant; real SDK clients share its room.
"""

import asyncio
import json
import re
from urllib.parse import urlsplit

import aiohttp
import pytest
from livekit import api as lkapi
from livekit.protocol import models, rtc

from tests.interop.sdk import Connect, Events, MintToken, Server, wait_for


class RawClient:
    """Speaks LiveKit signalling by hand, so it can send what no SDK would."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.backlog: list[rtc.SignalResponse] = []  # received, not yet asked for

    async def next(self, kind: str, timeout: float = 10.0) -> rtc.SignalResponse:  # noqa: ASYNC109
        """The first message of this kind not asked for before (others stay in the backlog)."""
        async with asyncio.timeout(timeout):
            while True:
                for i, response in enumerate(self.backlog):
                    if response.WhichOneof("message") == kind:
                        return self.backlog.pop(i)
                msg = await self.ws.receive()
                if msg.type != aiohttp.WSMsgType.BINARY:
                    raise AssertionError(f"expected a {kind}, got {msg.type} {msg.data!r}")
                self.backlog.append(rtc.SignalResponse.FromString(msg.data))

    async def send(self, request: rtc.SignalRequest) -> None:
        await self.ws.send_bytes(request.SerializeToString())

    async def ping(self) -> None:
        """The session still works: a ping_req is answered."""
        await self.send(rtc.SignalRequest(ping_req=rtc.Ping(timestamp=42)))
        pong = await self.next("pong_resp")
        assert pong.pong_resp.last_ping_timestamp == 42

    async def refusal(self) -> rtc.RequestResponse:
        response = (await self.next("request_response")).request_response
        assert response.reason != rtc.RequestResponse.OK
        return response


async def raw_join(http: aiohttp.ClientSession, server: Server, jwt: str) -> RawClient:
    ws = await http.ws_connect(
        f"{server.url}/rtc?protocol=16&sdk=python", headers={"Authorization": f"Bearer {jwt}"}
    )
    client = RawClient(ws)
    join = await client.next("join")
    assert join.join.participant.sid.startswith("PA_")
    return client


async def test_garbage_frames_are_refused(
    http: aiohttp.ClientSession, server: Server, token: MintToken, connect: Connect, room_name: str
) -> None:
    bystander = await connect("bystander", room_name)
    raw = await raw_join(http, server, token("raw", room_name))

    await raw.ws.send_str('{"offer": "not protobuf"}')
    assert "binary" in (await raw.refusal()).message
    await raw.ws.send_bytes(b"\xff\xff\xff\xff not a protobuf")
    assert "malformed" in (await raw.refusal()).message
    await raw.ws.send_bytes(b"")  # a SignalRequest with no message set
    await raw.refusal()
    await raw.ping()
    await wait_for(lambda: "raw" in bystander.remote_participants, what="the bystander sees raw")


async def test_unparseable_sdp_and_candidate_are_refused(
    http: aiohttp.ClientSession, server: Server, token: MintToken, connect: Connect, room_name: str
) -> None:
    bystander = await connect("bystander", room_name)
    raw = await raw_join(http, server, token("raw", room_name))

    await raw.send(
        rtc.SignalRequest(offer=rtc.SessionDescription(type="offer", sdp="v=0\r\nthis is not sdp", id=1))
    )
    assert (await raw.refusal()).reason == rtc.RequestResponse.INVALID_REQUEST
    offer = await raw.next("offer")  # the server's subscriber offer, which this client never answers
    assert offer.offer.sdp.startswith("v=0")
    await raw.send(rtc.SignalRequest(answer=rtc.SessionDescription(type="answer", sdp="garbage", id=1)))
    await raw.refusal()
    bad = json.dumps({"candidate": "candidate:nonsense", "sdpMid": "0", "sdpMLineIndex": 0})
    await raw.send(rtc.SignalRequest(trickle=rtc.TrickleRequest(candidateInit=bad, target=rtc.SUBSCRIBER)))
    await raw.refusal()
    await raw.send(
        rtc.SignalRequest(trickle=rtc.TrickleRequest(candidateInit="{not json", target=rtc.PUBLISHER))
    )
    await raw.refusal()
    await raw.ping()

    # the room is undisturbed: others still talk
    other = await connect("other", room_name)
    inbox = Events(other, "data_received")
    await bystander.local_participant.publish_data(b"still fine", topic="t")
    (packet,) = await inbox.wait("data_received")
    assert packet.data == b"still fine"


async def test_oversized_message_closes_only_that_session(
    http: aiohttp.ClientSession, server: Server, token: MintToken, connect: Connect, room_name: str
) -> None:
    bystander = await connect("bystander", room_name)
    events = Events(bystander, "participant_disconnected")
    raw = await raw_join(http, server, token("raw", room_name))
    await wait_for(lambda: "raw" in bystander.remote_participants, what="raw joined")

    big = rtc.SignalRequest(update_metadata=rtc.UpdateParticipantMetadata(metadata="x" * (3 * 1024 * 1024)))
    await raw.send(big)
    leave = await raw.next("leave")
    assert leave.leave.action == rtc.LeaveRequest.DISCONNECT
    msg = await raw.ws.receive()
    assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING)
    (gone,) = await events.wait("participant_disconnected")
    assert gone.identity == "raw"
    assert bystander.isconnected()


async def test_metadata_over_limit_is_refused(
    http: aiohttp.ClientSession, server: Server, token: MintToken, connect: Connect, room_name: str
) -> None:
    bystander = await connect("bystander", room_name)
    raw = await raw_join(
        http, server, token("raw", room_name, metadata="small", can_update_own_metadata=True)
    )
    await raw.send(
        rtc.SignalRequest(
            update_metadata=rtc.UpdateParticipantMetadata(metadata="x" * (512 * 1024 + 1), request_id=7)
        )
    )
    refusal = await raw.refusal()
    assert (refusal.request_id, refusal.reason) == (7, rtc.RequestResponse.LIMIT_EXCEEDED)
    await raw.send(
        rtc.SignalRequest(update_metadata=rtc.UpdateParticipantMetadata(name="n" * 257, request_id=8))
    )
    assert (await raw.refusal()).reason == rtc.RequestResponse.LIMIT_EXCEEDED
    await asyncio.sleep(0.3)
    assert bystander.remote_participants["raw"].metadata == "small"


async def test_update_beyond_permission_is_refused(
    http: aiohttp.ClientSession, server: Server, token: MintToken, room_name: str
) -> None:
    raw = await raw_join(http, server, token("raw", room_name))  # no canUpdateOwnMetadata
    await raw.send(
        rtc.SignalRequest(update_metadata=rtc.UpdateParticipantMetadata(metadata="m", request_id=3))
    )
    refusal = await raw.refusal()
    assert (refusal.request_id, refusal.reason) == (3, rtc.RequestResponse.NOT_ALLOWED)
    await raw.ping()


async def test_requests_about_tracks_it_does_not_publish_are_answered(
    http: aiohttp.ClientSession, server: Server, token: MintToken, room_name: str
) -> None:
    """LiveKit's answers: NOT_FOUND (with the request) to a mute or a track update for a track the client
    does not publish, UNSUPPORTED_TYPE to a track that is neither audio nor video."""
    raw = await raw_join(http, server, token("raw", room_name))
    mute = rtc.MuteTrackRequest(sid="TR_unknown", muted=True)
    await raw.send(rtc.SignalRequest(mute=mute))
    refusal = await raw.refusal()
    assert (refusal.reason, refusal.mute) == (rtc.RequestResponse.NOT_FOUND, mute)
    video = rtc.UpdateLocalVideoTrack(track_sid="TR_unknown", width=640, height=360)
    await raw.send(rtc.SignalRequest(update_video_track=video))
    refusal = await raw.refusal()
    assert (refusal.reason, refusal.update_video_track) == (rtc.RequestResponse.NOT_FOUND, video)
    audio = rtc.UpdateLocalAudioTrack(track_sid="TR_unknown")
    await raw.send(rtc.SignalRequest(update_audio_track=audio))
    assert (await raw.refusal()).reason == rtc.RequestResponse.NOT_FOUND
    data = rtc.AddTrackRequest(cid="d", name="d", type=models.TrackType.DATA)
    await raw.send(rtc.SignalRequest(add_track=data))
    refusal = await raw.refusal()
    assert (refusal.reason, refusal.add_track.cid) == (rtc.RequestResponse.UNSUPPORTED_TYPE, "d")
    await raw.ping()


@pytest.mark.parametrize("identity,room", [("i" * 257, "ok-room"), ("ok", "r" * 257)])
async def test_overlong_identity_or_room_is_refused(
    http: aiohttp.ClientSession, server: Server, token: MintToken, identity: str, room: str
) -> None:
    with pytest.raises(aiohttp.WSServerHandshakeError) as info:
        await http.ws_connect(
            f"{server.url}/rtc", headers={"Authorization": f"Bearer {token(identity, room)}"}
        )
    assert 400 <= info.value.status < 500
    async with http.get(
        f"{server.http_url}/rtc/validate", params={"access_token": token(identity, room)}
    ) as r:
        assert 400 <= r.status < 500
        assert "256" in await r.text()


async def test_client_gone_before_its_join_is_answered_leaves_no_session(
    server: Server, token: MintToken, api: lkapi.LiveKitAPI, room_name: str
) -> None:
    """An SDK that gives up while its join is being seated (its join timeout, on a loaded server) must not
    leave a session nobody holds. The room's first join creates its Room actor, so a client that hangs up
    right after its upgrade request is gone before the gateway can accept. (Were the gateway to miss it,
    the host's gateway watch would end the session only after GATEWAY_TIMEOUT, 30-40 s.)"""
    url = urlsplit(server.url)
    _, writer = await asyncio.open_connection(url.hostname, url.port)
    writer.write(
        (
            "GET /rtc?protocol=16&sdk=python HTTP/1.1\r\n"
            f"Host: {url.netloc}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
            f"Authorization: Bearer {token('ghost', room_name)}\r\n\r\n"
        ).encode()
    )
    await writer.drain()
    writer.close()
    await writer.wait_closed()

    left = re.compile(rf"{re.escape(room_name)}: ghost \(PA_\w+\) left: JOIN_FAILURE")
    await wait_for(lambda: left.search(server.log_path.read_text(errors="replace")), 15, "the session to end")
    listed = await api.room.list_participants(lkapi.ListParticipantsRequest(room=room_name))
    assert [p.identity for p in listed.participants] == []


async def test_a_client_that_stops_reading_is_cut_off(
    http: aiohttp.ClientSession,
    server: Server,
    token: MintToken,
    connect: Connect,
    api: lkapi.LiveKitAPI,
    room_name: str,
) -> None:
    """A client that stops reading its WebSocket is cut off once what waits for it passes a bound
    (limits.MAX_SIGNAL_BACKLOG), not buffered for ever; the others notice only that it left."""
    bystander = await connect("bystander", room_name)
    slow = await raw_join(http, server, token("slow", room_name))  # and never reads again
    chatty = await raw_join(http, server, token("chatty", room_name, can_update_own_metadata=True))

    async def drain() -> None:
        while (await chatty.ws.receive()).type == aiohttp.WSMsgType.BINARY:
            pass

    async def identities() -> set[str]:
        listed = await api.room.list_participants(lkapi.ListParticipantsRequest(room=room_name))
        return {p.identity for p in listed.participants}

    reader = asyncio.get_running_loop().create_task(drain())
    try:
        assert await identities() == {"bystander", "slow", "chatty"}
        # Each update (400 kB of metadata) goes to everyone: ~24 MB for the one that does not read, more
        # than the kernel's and the transport's buffers hold.
        for i in range(60):
            update = rtc.UpdateParticipantMetadata(metadata=f"{i:02d}" + "x" * 400_000, request_id=i + 1)
            await chatty.send(rtc.SignalRequest(update_metadata=update))
            await asyncio.sleep(0.05)
        for _ in range(60):
            if "slow" not in await identities():
                break
            await asyncio.sleep(0.5)
        assert await identities() == {"bystander", "chatty"}
        assert re.search(r"slow .*cut off: \d+ bytes of signalling wait", server.log_path.read_text())
        await wait_for(
            lambda: bystander.remote_participants["chatty"].metadata.startswith("59"), 30, "the last update"
        )
        assert bystander.isconnected()
    finally:
        reader.cancel()
        await slow.ws.close()
