"""Fuzzed signalling and Twirp against a server of its own, while a bystander room is watched.

Property-based (hypothesis): SignalRequests of every kind filled from the protobuf descriptors, the same
with bytes flipped, cut or grown, random bytes, text frames, offers and trickle candidates mutated from a
real SDP, and a few oversized frames, spread over a pool of raw WebSocket sessions; Twirp bodies (protobuf
and JSON, whole and mutated) for every RoomService method. Asserted: no ERROR line or traceback in the
server's log, every Twirp answer a 2xx or a 4xx Twirp error, the bystander room's tone and every one of its
reliable data packets delivered, and nothing left of the fuzzing sessions afterwards (no participant, no
room, nothing hosted on the media workers).

CI runs a short run; a long one is `RAYSFU_FUZZ_CASES=100000 RAYSFU_FUZZ_TWIRP_CASES=100000 bash
scripts/netns-run .venv/bin/python -m pytest tests/interop/test_fuzz.py`.
"""

import asyncio
import json
import os
import re
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import TypeVar

import aiohttp
import pytest
from google.protobuf import json_format
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from livekit import api as lkapi
from livekit import rtc as sdk
from livekit.protocol import rtc

from gateway.twirp import METHODS, SERVICE
from tests.fuzz import client_offer, messages, mutated, mutated_sdp, oneof_messages
from tests.interop.conftest import running_server
from tests.interop.media import MediaSession, media_stats
from tests.interop.sdk import Server

CASES = int(os.environ.get("RAYSFU_FUZZ_CASES", "1500"))
TWIRP_CASES = int(os.environ.get("RAYSFU_FUZZ_TWIRP_CASES", "400"))
PORT, DASHBOARD_PORT = 7899, 8274
SESSIONS = 8  # raw sessions the frames are spread over
PACE = 0.002  # seconds between two frames: the pool stays under the signalling rate limit
ROOM, BYSTANDERS = "fuzz", "fuzz-bystanders"
T = TypeVar("T")
ERROR_LINE = re.compile(r"\d ERROR |Traceback \(most recent call last\)")


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    args = ["--departure-timeout", "1", "--empty-timeout", "1"]
    with running_server(PORT, DASHBOARD_PORT, tmp_path_factory.mktemp("fuzz"), args) as (srv, _):
        yield srv


def _token(srv: Server, identity: str, room: str, **grants: bool) -> str:
    video = lkapi.VideoGrants(room_join=True, room=room, can_update_own_metadata=True, **grants)
    return lkapi.AccessToken(srv.api_key, srv.api_secret).with_identity(identity).with_grants(video).to_jwt()


class Bystanders:
    """alice publishes a tone and sends a reliable data packet every 20 ms; bob counts what arrives."""

    def __init__(self, srv: Server, media: MediaSession) -> None:
        self.srv, self.media = srv, media
        self.sent = 0
        self.received: set[int] = set()
        self._sender: asyncio.Task[None] | None = None
        self._stopping = False

    async def start(self) -> None:
        self.alice, self.bob = sdk.Room(), sdk.Room()
        await self.alice.connect(self.srv.url, _token(self.srv, "alice", BYSTANDERS))
        await self.bob.connect(self.srv.url, _token(self.srv, "bob", BYSTANDERS))
        self.bob.on("data_received", lambda packet: self.received.add(int(packet.data)))
        self.rx = self.media.receive(self.bob)
        await self.media.publish(self.alice, video=False)
        await self.rx.wait_tone(15.0, identity="alice")
        self._sender = asyncio.get_running_loop().create_task(self._send())

    async def _send(self) -> None:
        while not self._stopping:
            await self.alice.local_participant.publish_data(str(self.sent).encode(), reliable=True)
            self.sent += 1
            await asyncio.sleep(0.02)

    async def stop(self) -> int:
        """Stops sending once the packet under way is out (a cancel could land after the SDK sent it but
        before it was counted); the number sent."""
        self._stopping = True
        if self._sender is not None:
            await self._sender
        await asyncio.sleep(1.0)  # in flight
        return self.sent

    async def close(self) -> None:
        for room in (self.alice, self.bob):
            if room.isconnected():
                await room.disconnect()


class Pool:
    """Raw WebSocket sessions in the fuzzing room, each read by a task (so that none is a slow consumer);
    one the server ended is joined again on its next use."""

    def __init__(self, srv: Server, http: aiohttp.ClientSession) -> None:
        self.srv, self.http = srv, http
        self.sockets: list[aiohttp.ClientWebSocketResponse | None] = [None] * SESSIONS
        self.readers: list[asyncio.Task[None]] = []
        self.joins = 0

    async def _join(self) -> aiohttp.ClientWebSocketResponse:
        self.joins += 1
        jwt = _token(self.srv, f"fuzz{self.joins}", ROOM)
        ws = await self.http.ws_connect(
            f"{self.srv.url}/rtc?protocol=16&sdk=python",
            headers={"Authorization": f"Bearer {jwt}"},
            max_msg_size=64 * 1024 * 1024,
        )
        self.readers.append(asyncio.get_running_loop().create_task(self._read(ws)))
        return ws

    @staticmethod
    async def _read(ws: aiohttp.ClientWebSocketResponse) -> None:
        while (await ws.receive()).type in (aiohttp.WSMsgType.BINARY, aiohttp.WSMsgType.TEXT):
            pass

    async def send(self, which: int, kind: str, data: bytes | str) -> None:
        ws = self.sockets[which]
        if ws is None or ws.closed:
            ws = self.sockets[which] = await self._join()
        try:
            if kind == "text":
                assert isinstance(data, str)
                await ws.send_str(data)
            else:
                assert isinstance(data, bytes)
                await ws.send_bytes(data)
        except (aiohttp.ClientError, ConnectionError, RuntimeError):
            self.sockets[which] = None  # ended by the server meanwhile: joined again next time

    async def close(self) -> None:
        for ws in self.sockets:
            if ws is not None and not ws.closed:
                await ws.close()
        for reader in self.readers:
            reader.cancel()


def _frames(offer: str) -> st.SearchStrategy[tuple[str, bytes | str]]:
    requests = oneof_messages(rtc.SignalRequest, "message")
    candidates = [line[2:] for line in offer.splitlines() if line.startswith("a=candidate:")]

    def offer_frame(sdp: str) -> tuple[str, bytes | str]:
        desc = rtc.SessionDescription(type="offer", sdp=sdp, id=1)
        return "bytes", rtc.SignalRequest(offer=desc).SerializeToString()

    def trickle_frame(line: str) -> tuple[str, bytes | str]:
        init = json.dumps({"candidate": line, "sdpMid": "0", "sdpMLineIndex": 0})
        return "bytes", rtc.SignalRequest(trickle=rtc.TrickleRequest(candidateInit=init)).SerializeToString()

    return st.one_of(
        requests.map(lambda m: ("bytes", m.SerializeToString())),
        requests.flatmap(lambda m: mutated(m.SerializeToString())).map(lambda b: ("bytes", b)),
        st.binary(max_size=600).map(lambda b: ("bytes", b)),
        st.text(max_size=300).map(lambda t: ("text", t)),
        mutated_sdp(offer).map(offer_frame),
        (mutated_sdp(candidates[0]) if candidates else st.text(max_size=100)).map(
            lambda c: trickle_frame(c.strip())
        ),
    )


def _errors_since(srv: Server, offset: int) -> list[str]:
    text = srv.log_path.read_text(errors="replace")[offset:]
    return [line for line in text.splitlines() if ERROR_LINE.search(line)]


@pytest.fixture
async def bystanders(fuzz_server: Server) -> AsyncIterator[Bystanders]:
    media = MediaSession()
    watched = Bystanders(fuzz_server, media)
    await watched.start()
    yield watched
    await media.close()
    await watched.close()


async def _identities(api: lkapi.LiveKitAPI, room: str) -> list[str]:
    """Who is in `room`; [] once it is gone (not_found)."""
    try:
        listed = await api.room.list_participants(lkapi.ListParticipantsRequest(room=room))
    except lkapi.ServerError as exc:
        if exc.code != "not_found":
            raise
        return []
    return sorted(p.identity for p in listed.participants)


@pytest.mark.timeout(120 + CASES * 0.05)
async def test_fuzzed_signalling_disturbs_nobody_and_leaves_nothing(
    fuzz_server: Server, http: aiohttp.ClientSession, bystanders: Bystanders
) -> None:
    srv, loop = fuzz_server, asyncio.get_running_loop()
    pool = Pool(srv, http)
    offset = len(srv.log_path.read_text(errors="replace"))
    started = time.monotonic()

    @settings(max_examples=CASES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(frame=_frames(await client_offer()), which=st.integers(0, SESSIONS - 1))
    def fuzz(frame: tuple[str, bytes | str], which: int) -> None:
        asyncio.run_coroutine_threadsafe(pool.send(which, *frame), loop).result(30)
        time.sleep(PACE)

    try:
        await asyncio.to_thread(fuzz)
        for which in range(3):  # oversized frames: each ends its session
            await pool.send(which, "bytes", b"\x0a" * (3 * 1024 * 1024))
    finally:
        await pool.close()
    ended = time.monotonic()
    sent = await bystanders.stop()

    assert _errors_since(srv, offset) == []
    assert len(bystanders.received) == sent, f"{sent - len(bystanders.received)} of {sent} packets lost"
    audio = bystanders.rx.audio("alice")
    windows = len(audio.between(started, ended))
    assert audio.tone_windows(started, ended) >= 0.9 * windows, audio.summary(started, ended)

    async with lkapi.LiveKitAPI(srv.http_url, srv.api_key, srv.api_secret) as api:
        await wait_for_async(lambda: _identities(api, ROOM), [], 20, "the fuzzing sessions gone")
        await wait_for_async(lambda: _room_names(api), [BYSTANDERS], 20, "only the bystanders' room left")
        assert await _identities(api, BYSTANDERS) == ["alice", "bob"]
    stats = await media_stats(DASHBOARD_PORT)
    hosted = {sid for s in stats.values() for sid in s.get("participants", ())}
    assert hosted == {bystanders.alice.local_participant.sid, bystanders.bob.local_participant.sid}, stats
    print(f"fuzz: {CASES} frames over {pool.joins} sessions in {ended - started:.1f} s, {sent} data packets")


async def _room_names(api: lkapi.LiveKitAPI) -> list[str]:
    return sorted(r.name for r in (await api.room.list_rooms(lkapi.ListRoomsRequest())).rooms)


async def wait_for_async(
    read: Callable[[], Awaitable[T]],
    expected: T,
    seconds: float,
    what: str,
) -> None:
    """Until `read()` gives `expected`; AssertionError with the last value after `seconds`."""
    deadline = time.monotonic() + seconds
    while (value := await read()) != expected:
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {seconds} s waiting for {what}: {value!r}")
        await asyncio.sleep(0.5)


def _twirp_bodies() -> st.SearchStrategy[tuple[str, str, bytes]]:
    """(method, content type, body) for every RoomService method."""

    def for_method(method: str) -> st.SearchStrategy[tuple[str, str, bytes]]:
        cls = METHODS[method][0]
        proto = messages(cls).map(lambda m: m.SerializeToString())
        as_json = messages(cls).map(lambda m: json_format.MessageToJson(m).encode())
        return st.tuples(
            st.just(method),
            st.sampled_from(["application/protobuf", "application/json"]),
            st.one_of(
                proto, as_json, proto.flatmap(mutated), as_json.flatmap(mutated), st.binary(max_size=300)
            ),
        )

    return st.sampled_from(sorted(METHODS)).flatmap(for_method)


@pytest.mark.timeout(120 + TWIRP_CASES * 0.05)
async def test_fuzzed_twirp_is_answered_with_twirp_errors(
    fuzz_server: Server, bystanders: Bystanders
) -> None:
    srv = fuzz_server
    offset = len(srv.log_path.read_text(errors="replace"))
    admin = (
        lkapi.AccessToken(srv.api_key, srv.api_secret)
        .with_identity("fuzz-admin")
        .with_grants(lkapi.VideoGrants(room_admin=True, room_create=True, room_list=True, room=ROOM))
        .to_jwt()
    )
    statuses: dict[int, int] = {}

    @settings(max_examples=TWIRP_CASES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(case=_twirp_bodies())
    def fuzz(case: tuple[str, str, bytes]) -> None:
        method, content_type, body = case
        request = urllib.request.Request(
            f"{srv.http_url}/twirp/{SERVICE}/{method}",
            data=body,
            method="POST",
            headers={"Authorization": f"Bearer {admin}", "Content-Type": content_type},
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as reply:
                status = reply.status
        except urllib.error.HTTPError as exc:
            status = exc.code
            error = json.loads(exc.read())
            assert isinstance(error.get("code"), str) and isinstance(error.get("msg"), str), error
        assert status < 500, (method, content_type, body[:200], status)
        statuses[status] = statuses.get(status, 0) + 1

    await asyncio.to_thread(fuzz)
    await bystanders.stop()
    assert _errors_since(srv, offset) == []
    async with lkapi.LiveKitAPI(srv.http_url, srv.api_key, srv.api_secret) as api:
        assert await _identities(api, BYSTANDERS) == ["alice", "bob"]
    print(f"twirp fuzz: {TWIRP_CASES} requests, statuses {dict(sorted(statuses.items()))}")
