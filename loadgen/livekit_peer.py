"""A light LiveKit participant: LiveKit signalling (protobuf over WebSocket) + the light RTP peer.

Join (JoinResponse), answer the server's subscriber offers (tapping every offered track into a counter),
publish with AddTrackRequest -> TrackPublishedResponse -> publisher offer -> answer, apply trickled
candidates, ping at the server's interval, leave. What the SDK does, minus codecs and everything optional.
"""

import asyncio
import contextlib
import json
import logging
import secrets
import time
from typing import Any

import aiohttp
from aiortc import RTCIceCandidate, RTCPeerConnection, RTCSessionDescription
from aiortc.sdp import candidate_from_sdp
from livekit.protocol import models, rtc

from loadgen import rtp
from loadgen.rtp_peer import RtpSendLoop, StreamCounter, add_send_loop, answer_offer, new_pc, wait_connected

log = logging.getLogger(__name__)

SIGNAL_TIMEOUT = 20.0


class LiveKitPeer:
    def __init__(self, url: str, token: str, identity: str) -> None:
        self.url = url
        self.token = token
        self.identity = identity
        self.http: aiohttp.ClientSession | None = None
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.join: rtc.JoinResponse | None = None
        self.subscriber: RTCPeerConnection = new_pc()
        self.publisher: RTCPeerConnection | None = None
        self.counters: dict[str, StreamCounter] = {}
        self.senders: list[RtpSendLoop] = []
        self.published: dict[str, RtpSendLoop] = {}  # track sid -> its sender, while published
        self.connect_ms: float | None = None
        self._joined = asyncio.Event()
        self._published: dict[str, asyncio.Future[models.TrackInfo]] = {}
        self._answer: asyncio.Future[str] | None = None
        self._sub_lock = asyncio.Lock()
        self._pub_lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []
        self._offer_id = 0
        self.errors: list[str] = []

    # ----- lifecycle -----

    @property
    def ended(self) -> bool:
        """The server's end is gone: aiortc closes a PC once all its DTLS transports are closed."""
        pcs = (self.subscriber, self.publisher)
        return any(pc is not None and pc.connectionState == "closed" for pc in pcs)

    async def connect(self, started_ns: int | None = None) -> float:
        """Join and wait until the subscriber PC is connected; returns ms since `started_ns` (or the call)."""
        started_ns = time.monotonic_ns() if started_ns is None else started_ns
        self.http = aiohttp.ClientSession()
        self.ws = await self.http.ws_connect(
            f"{self.url}/rtc?protocol=16&sdk=python&auto_subscribe=1",
            headers={"Authorization": f"Bearer {self.token}"},
            max_msg_size=8 * 1024 * 1024,
        )
        self._tasks.append(asyncio.ensure_future(self._read()))
        async with asyncio.timeout(SIGNAL_TIMEOUT):
            await self._joined.wait()
        await wait_connected(self.subscriber)
        self.connect_ms = (time.monotonic_ns() - started_ns) / 1e6
        self._tasks.append(asyncio.ensure_future(self._ping()))
        return self.connect_ms

    async def close(self) -> None:
        for loop in self.senders:
            await loop.stop()
        if self.ws is not None and not self.ws.closed:
            with contextlib.suppress(Exception):
                await self._send(rtc.SignalRequest(leave=rtc.LeaveRequest(reason=models.CLIENT_INITIATED)))
                await self.ws.close()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(BaseException):
                await task
        await self.subscriber.close()
        if self.publisher is not None:
            await self.publisher.close()
        if self.http is not None:
            await self.http.close()

    # ----- publishing -----

    async def publish(
        self, kind: str, *, video: rtp.VideoSource | None = None, max_seconds: float = 3600.0
    ) -> str:
        """Publish one track of pre-built RTP; returns its track sid. Sending starts once the PC connects."""
        async with self._pub_lock:
            cid = f"TR_bench_{secrets.token_hex(4)}"
            is_video = kind == "video"
            request = rtc.AddTrackRequest(
                cid=cid,
                name=f"{kind}-{self.identity}",
                type=models.TrackType.VIDEO if is_video else models.TrackType.AUDIO,
                source=models.TrackSource.CAMERA if is_video else models.TrackSource.MICROPHONE,
                width=video.width if (is_video and video) else 0,
                height=video.height if (is_video and video) else 0,
            )
            future: asyncio.Future[models.TrackInfo] = asyncio.get_running_loop().create_future()
            self._published[cid] = future
            await self._send(rtc.SignalRequest(add_track=request))
            async with asyncio.timeout(SIGNAL_TIMEOUT):
                info = await future
            if self.publisher is None:
                self.publisher = new_pc()
            loop = add_send_loop(
                self.publisher, kind, f"stream-{self.identity}", cid, video=video, max_seconds=max_seconds
            )
            await self._negotiate_publisher()
            self.senders.append(loop)
            self.published[str(info.sid)] = loop
            loop.start()
            return str(info.sid)

    async def unpublish(self, track_sid: str) -> None:
        """Stop sending the track and renegotiate with its m-line inactive, as an SDK's unpublish does."""
        async with self._pub_lock:
            loop = self.published.pop(track_sid)
            await loop.stop()
            loop.transceiver.direction = "inactive"
            assert self.publisher is not None
            await self._negotiate_publisher()

    async def mute(self, track_sid: str, muted: bool) -> None:
        await self._send(rtc.SignalRequest(mute=rtc.MuteTrackRequest(sid=track_sid, muted=muted)))

    async def subscribe(self, track_sids: list[str], subscribe: bool) -> None:
        update = rtc.UpdateSubscription(track_sids=track_sids, subscribe=subscribe)
        await self._send(rtc.SignalRequest(subscription=update))

    async def _negotiate_publisher(self) -> None:
        assert self.publisher is not None
        offer = await self.publisher.createOffer()
        await self.publisher.setLocalDescription(offer)
        self._answer = asyncio.get_running_loop().create_future()
        self._offer_id += 1
        sdp = self.publisher.localDescription.sdp
        await self._send(
            rtc.SignalRequest(offer=rtc.SessionDescription(type="offer", sdp=sdp, id=self._offer_id))
        )
        async with asyncio.timeout(SIGNAL_TIMEOUT):
            answer = await self._answer
        await self.publisher.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))

    # ----- signalling -----

    async def _send(self, request: rtc.SignalRequest) -> None:
        assert self.ws is not None
        await self.ws.send_bytes(request.SerializeToString())

    async def _ping(self) -> None:
        interval = max(1, self.join.ping_interval if self.join else 5)
        while self.ws is not None and not self.ws.closed:
            await asyncio.sleep(interval)
            await self._send(rtc.SignalRequest(ping_req=rtc.Ping(timestamp=int(time.time() * 1000))))

    async def _read(self) -> None:
        assert self.ws is not None
        async for msg in self.ws:
            if msg.type != aiohttp.WSMsgType.BINARY:
                break
            response = rtc.SignalResponse.FromString(msg.data)
            try:
                await self._handle(response)
            except Exception as exc:
                log.exception("%s: handling %s failed", self.identity, response.WhichOneof("message"))
                self.errors.append(f"{response.WhichOneof('message')}: {exc}")

    async def _handle(self, response: rtc.SignalResponse) -> None:
        kind = response.WhichOneof("message")
        if kind == "join":
            self.join = response.join
            self._joined.set()
        elif kind == "offer":
            await self._on_offer(response.offer)
        elif kind == "answer":
            if self._answer is not None and not self._answer.done():
                self._answer.set_result(response.answer.sdp)
        elif kind == "trickle":
            await self._on_trickle(response.trickle)
        elif kind == "track_published":
            future = self._published.pop(response.track_published.cid, None)
            if future is not None and not future.done():
                future.set_result(response.track_published.track)
        elif kind == "request_response":
            rr = response.request_response
            if rr.reason != rtc.RequestResponse.OK:
                self.errors.append(f"refused: {rr.message}")
        elif kind == "leave":
            self.errors.append("server sent leave")

    async def _on_offer(self, offer: rtc.SessionDescription) -> None:
        if self.subscriber.signalingState == "closed":  # it failed (aiortc closes a failed PC): no traceback
            self.errors.append("offer for a closed subscriber PC")
            return
        async with self._sub_lock:
            sdp = await answer_offer(self.subscriber, offer.sdp, self.counters)
            await self._send(
                rtc.SignalRequest(answer=rtc.SessionDescription(type="answer", sdp=sdp, id=offer.id))
            )

    async def _on_trickle(self, trickle: rtc.TrickleRequest) -> None:
        pc = self.subscriber if trickle.target == rtc.SignalTarget.SUBSCRIBER else self.publisher
        if pc is None or not trickle.candidateInit:
            return
        init: dict[str, Any] = json.loads(trickle.candidateInit)
        text = str(init.get("candidate", ""))
        if not text:
            return
        candidate: RTCIceCandidate = candidate_from_sdp(text.removeprefix("candidate:"))
        candidate.sdpMid = init.get("sdpMid")
        candidate.sdpMLineIndex = init.get("sdpMLineIndex")
        with contextlib.suppress(Exception):  # before the remote description: the SDP carries them anyway
            await pc.addIceCandidate(candidate)
