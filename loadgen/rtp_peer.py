"""The light WebRTC peer of the load generator: real ICE + DTLS-SRTP (aiortc), no encoder, no decoder.

Publishers send pre-built RTP (loadgen/rtp.py) through a passthrough sender; subscribers count what
arrives and read the send-time trailer. The aiortc internals this needs are the SFU's own hooks
(actors/media/hooks/: PassthroughSender, TapReceiver, TapDtlsTransport), imported here and nowhere else in
loadgen/ and bench/.
"""

import asyncio
import logging
import random
import time
from dataclasses import dataclass, field, replace
from typing import Any

from aiortc import (
    RTCBundlePolicy,
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpTransceiver,
    RTCSessionDescription,
)

from actors.media import hooks
from actors.media import rtp as sfu_rtp
from loadgen import rtp

log = logging.getLogger(__name__)

CONNECT_TIMEOUT = 20.0


def new_pc() -> RTCPeerConnection:
    """A peer connection with no STUN server (aiortc's default is a public one) and the SFU hooks'
    process-wide patches (bounded ICE queues, extra payload types).

    max-bundle, as the SDKs and raysfu: with aiortc's default (balanced), an offer that brings several new
    m-lines of one kind bundles the later ones onto the first one's own transport, which aiortc then
    replaces by the BUNDLE group's and stops; those receivers never start and their packets are dropped
    as from an unknown SSRC (the audio-room bench lost 1-2 of 90 streams so)."""
    hooks.install()
    return RTCPeerConnection(RTCConfiguration(iceServers=[], bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))


async def wait_connected(pc: RTCPeerConnection, timeout: float = CONNECT_TIMEOUT) -> None:  # noqa: ASYNC109
    """Until ICE + DTLS are up; TimeoutError after `timeout` s, ConnectionError if the PC fails."""
    deadline = time.monotonic() + timeout
    while pc.connectionState != "connected":
        if pc.connectionState in ("failed", "closed"):
            raise ConnectionError(f"peer connection {pc.connectionState}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"peer connection still {pc.connectionState} after {timeout} s")
        await asyncio.sleep(0.01)


# ----- receiving ---------------------------------------------------------------------------------------


@dataclass
class StreamCounter:
    """What one subscriber received of one forwarded track (a TapReceiver's sink)."""

    kind: str
    created_ns: int = field(default_factory=time.monotonic_ns)  # when the track was offered to us
    first_ns: int | None = None
    packets: int = 0
    octets: int = 0
    no_trailer: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    indexes: set[int] = field(default_factory=set)
    max_samples: int = 200_000

    def reset(self) -> None:
        """Start of the measurement window."""
        self.packets = self.octets = self.no_trailer = 0
        self.latencies_ms = []
        self.indexes = set()

    def snapshot(self) -> "StreamCounter":
        """A copy that later packets do not change."""
        return replace(self, latencies_ms=list(self.latencies_ms), indexes=set(self.indexes))

    def deliver(
        self,
        raw: bytes,
        header: sfu_rtp.RtpHeader,
        rid: str | None,
        extensions: dict[int, bytes] | None = None,
    ) -> None:
        now = time.monotonic_ns()
        if self.first_ns is None:
            self.first_ns = now
        self.packets += 1
        self.octets += len(raw)
        found = rtp.read_trailer(raw)
        if found is None:
            self.no_trailer += 1
            return
        self.indexes.add(found.index)
        if len(self.latencies_ms) < self.max_samples:
            self.latencies_ms.append((now - found.sent_ns) / 1e6)

    def expected(self) -> int:
        """Packets the publisher sent in the index range seen (first to last received, both included)."""
        return max(self.indexes) - min(self.indexes) + 1 if self.indexes else 0

    @property
    def first_media_ms(self) -> float | None:
        return None if self.first_ns is None else (self.first_ns - self.created_ns) / 1e6


def tap_incoming(pc: RTCPeerConnection, counters: dict[str, StreamCounter]) -> None:
    """After setRemoteDescription(offer) and before the answer: every receiving transceiver not yet tapped
    delivers raw packets to a StreamCounter (keyed by mid) instead of a decoder."""
    for transceiver in pc.getTransceivers():
        mid = transceiver.mid
        if mid is None or mid in counters or transceiver.direction not in ("recvonly", "sendrecv"):
            continue
        hooks.tap_transport(transceiver.receiver.transport)
        receiver = hooks.tap_receiver(transceiver.receiver)
        counter = StreamCounter(kind=transceiver.kind)
        receiver.sink = counter
        counters[mid] = counter


async def answer_offer(pc: RTCPeerConnection, offer_sdp: str, counters: dict[str, StreamCounter]) -> str:
    """Apply an SFU's offer to a receiving PC, tap its new tracks into `counters`, return the answer's SDP."""
    await pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
    tap_incoming(pc, counters)
    await pc.setLocalDescription(await pc.createAnswer())
    return str(pc.localDescription.sdp)


# ----- sending -----------------------------------------------------------------------------------------


class _KeyframeListener:
    def __init__(self, source: rtp.VideoSource | None) -> None:
        self.source = source
        self.requests = 0

    async def on_keyframe_request(self) -> None:
        self.requests += 1
        if self.source is not None:
            self.source.request_keyframe()


@dataclass
class SendStats:
    packets: int = 0
    bytes: int = 0
    late_ticks: int = 0  # ticks that started more than one period late (the generator is overloaded)


class RtpSendLoop:
    """Sends audio (one Opus-like packet per 20 ms) or video (VideoSource frames at its fps) on a passthrough
    sender until `stop()` or `max_seconds`."""

    def __init__(
        self,
        transceiver: RTCRtpTransceiver,
        kind: str,
        *,
        audio_bytes: int = 80,
        video: rtp.VideoSource | None = None,
        max_seconds: float = 3600.0,
    ) -> None:
        self.transceiver = transceiver
        self.sender = hooks.passthrough_sender(transceiver.sender)
        self.kind = kind
        self.audio_bytes = audio_bytes
        self.video = video if kind == "video" else None
        if kind == "video" and self.video is None:
            self.video = rtp.VideoSource()
        self.listener = _KeyframeListener(self.video)
        self.sender.listener = self.listener
        self.max_seconds = max_seconds
        self.stats = SendStats()
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await asyncio.wait([self._task], timeout=5)

    async def _run(self) -> None:
        deadline = time.monotonic() + CONNECT_TIMEOUT
        while not self.sender.running:
            if time.monotonic() > deadline or self._stop.is_set():
                log.warning("sender never started (%s)", self.kind)
                return
            await asyncio.sleep(0.01)
        params = self.sender.params
        assert params is not None
        pt = params.codecs[0].payloadType or 0
        ssrc = self.sender.ssrc
        seq = random.randrange(0x10000)
        period = (
            rtp.OPUS_FRAME_MS / 1000 if self.kind == "audio" else 1 / (self.video or rtp.VideoSource()).fps
        )
        loop = asyncio.get_running_loop()
        start = loop.time()
        end = start + self.max_seconds
        tick = 0
        ts0 = random.randrange(1 << 32)
        while not self._stop.is_set():
            now = loop.time()
            if now >= end:
                break
            if now - (start + tick * period) > period:
                self.stats.late_ticks += 1
            if self.video is not None:
                ts, payloads = self.video.next_frame()
                ts = (ts + ts0) & 0xFFFFFFFF
            else:
                payloads = [rtp.opus_payload(self.audio_bytes, tick)]
                ts = (ts0 + tick * rtp.OPUS_CLOCK * rtp.OPUS_FRAME_MS // 1000) & 0xFFFFFFFF
            for number, packet in rtp.packets(pt, ssrc, seq, ts, payloads):
                if not self.sender.send_now(
                    packet, number, ts, len(packet) - rtp.RTP_HEADER.size, sfu_rtp.ntp_time()
                ):
                    break
                self.stats.packets += 1
                self.stats.bytes += len(packet)
            seq = (seq + len(payloads)) & 0xFFFF
            tick += 1
            delay = start + tick * period - loop.time()
            await asyncio.sleep(max(0.0, delay))


def add_send_transceiver(
    pc: RTCPeerConnection, kind: str, stream_id: str, track_id: str
) -> RTCRtpTransceiver:
    """A sendonly m-line announced with msid "stream_id track_id" (LiveKit binds it to the AddTrackRequest
    whose cid is track_id)."""
    transceiver = pc.addTransceiver(kind, direction="sendonly")
    hooks.passthrough_sender(transceiver.sender)
    hooks.label_sender(transceiver.sender, stream_id, track_id)
    return transceiver


def add_send_loop(
    pc: RTCPeerConnection,
    kind: str,
    stream_id: str,
    track_id: str,
    *,
    video: rtp.VideoSource | None = None,
    max_seconds: float = 3600.0,
) -> RtpSendLoop:
    """A send transceiver (add_send_transceiver) and the loop that will send on it once started."""
    return RtpSendLoop(
        add_send_transceiver(pc, kind, stream_id, track_id), kind, video=video, max_seconds=max_seconds
    )


def summary(counters: list[StreamCounter]) -> dict[str, Any]:
    """Totals over many stream counters (the measurement window since their reset)."""
    received = sum(len(c.indexes) for c in counters)
    expected = sum(c.expected() for c in counters)
    latencies = [x for c in counters for x in c.latencies_ms]
    return {
        "streams": len(counters),
        "packets": sum(c.packets for c in counters),
        "octets": sum(c.octets for c in counters),
        "unique_packets": received,
        "expected_packets": expected,
        "no_trailer": sum(c.no_trailer for c in counters),
        "latencies_ms": latencies,
        "first_media_ms": [c.first_media_ms for c in counters if c.first_media_ms is not None],
    }
