"""One published track on one worker: its layers, keyframe requests, and fan-out to down tracks and relays.

An up track is fed either by a tap receiver (the publisher is on this worker) or by the relay socket (a
copy from the publisher's worker). Both deliver decrypted, RTX-unwrapped raw RTP with its parsed header.
"""

import contextlib
import logging
import time
import zlib
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from actors.media import hooks, rtp
from actors.media.audiolevel import AudioLevel
from actors.media.codecs import keyframe_detector, vp8_resolution
from actors.media.ratelog import RateLimitedLog
from actors.media.rtcp import KEYFRAME_INTERVAL, RateLimiter
from actors.tasks import spawn

if TYPE_CHECKING:
    from actors.media.downtrack import DownTrack

log = logging.getLogger(__name__)
_ratelog = RateLimitedLog(log)

LAYER_ACTIVE = 1.0  # seconds since a layer's last packet for it to count as active
# Forwarding latency, sampled: for one packet in LATENCY_SAMPLE_EVERY, the seconds from its arrival at the up
# track to its last copy sent. The worker's metrics drain them (actors.metrics); the oldest go when full.
LATENCY_SAMPLE_EVERY = 32
forwarding_latencies: deque[float] = deque(maxlen=4096)


@dataclass(frozen=True)
class CodecInfo:
    payload_type: int
    mime_type: str
    clock_rate: int
    parameters: dict[str, str | int] = field(default_factory=dict)


@dataclass(frozen=True)
class TrackParams:
    """The publisher m-line's negotiated media codecs (no RTX) and header extensions (uri -> id)."""

    codecs: tuple[CodecInfo, ...]
    extensions: dict[str, int]


@dataclass
class Layer:
    ssrc: int | None = None
    packets: int = 0
    bytes: int = 0
    keyframes: int = 0
    last_packet: float = 0.0
    resolution: tuple[int, int] | None = None


def digest(payload: bytes | bytearray | memoryview) -> int:
    """A payload's checksum (CRC-32: ~4x cheaper than a cryptographic hash; it only has to tell the tests'
    payloads apart); stats() shows it in hex."""
    return zlib.crc32(payload)


def digests_hex(digests: list[int]) -> list[str]:
    return [f"{d:08x}" for d in digests]


# (rid, media ssrc or None) -> send a keyframe request upstream
KeyframeSink = Callable[[str | None, int | None], Awaitable[None]]


class RelaySink(Protocol):
    """Copies of the track for other workers (actors/media/relay.py)."""

    def send(self, raw: bytes, rid: str | None) -> None:
        """Send one packet to every receiving worker; never blocks, never raises on a full socket."""

    def stats(self) -> dict[str, dict[str, int]]:
        """{receiving worker: {"packets": n, "dropped": n}}."""


class UpTrack:
    def __init__(
        self,
        track_sid: str,
        publisher_sid: str,
        kind: str,
        mime_type: str,
        rids: list[str],
        request_upstream: KeyframeSink,
        relayed_from: str | None = None,
    ) -> None:
        self.track_sid = track_sid
        self.publisher_sid = publisher_sid
        self.kind = kind
        self.mime_type = mime_type
        self.rids = list(rids)
        self.simulcast = len(self.rids) > 1  # more than one layer (rids are fixed at publication)
        self.params: TrackParams | None = None
        self.muted = False
        self.closed = False
        self.downs: dict[str, DownTrack] = {}
        self.layers: dict[str | None, Layer] = {}
        # Each layer's size as the publisher announced it (its TrackInfo's layers), by rid.
        self.announced_sizes: dict[str, tuple[int, int]] = {}
        self.relay: RelaySink | None = None
        self.relayed_from = relayed_from  # the publisher's worker when this is a relayed copy
        self.forward_errors = 0
        self.packets_in = 0
        self.bytes_in = 0
        self.keyframes_in = 0
        self.keyframe_requests = 0
        # CRC32 digests of the first `digest_limit` payloads in, and (DownTrack) out: only for tests that
        # check the bytes pass through unchanged (media.payload_digests); 0 keeps them off the hot path.
        self.digest_limit = 0
        self.digests_in: list[int] = []
        # The speaking level, for a local audio track whose publisher sends the audio-level extension.
        self.audio_level: AudioLevel | None = None
        self._audio_level_id = 0
        self._request_upstream = request_upstream
        self._limiter = RateLimiter(KEYFRAME_INTERVAL)
        self._is_keyframe = keyframe_detector(mime_type)
        self._clock_rate = 48000 if kind == "audio" else 90000

    def __repr__(self) -> str:
        return f"UpTrack({self.track_sid} {self.kind} {self.mime_type})"

    @property
    def clock_rate(self) -> int:
        return self._clock_rate

    def set_params(self, params: TrackParams) -> None:
        self.params = params
        if params.codecs:
            self._clock_rate = params.codecs[0].clock_rate
            self.mime_type = params.codecs[0].mime_type
            self._is_keyframe = keyframe_detector(self.mime_type)

    def measure_audio_level(self, extension_id: int) -> None:
        """Keep the track's speaking level from the audio-level header extension numbered `extension_id`."""
        self._audio_level_id = extension_id
        self.audio_level = AudioLevel(self._clock_rate)

    def deliver(
        self,
        raw: bytes,
        header: rtp.RtpHeader,
        rid: str | None,
        extensions: dict[int, bytes] | None = None,
    ) -> None:
        """One incoming packet: count it, then fan it out to the down tracks and relays (no awaits: the
        rare keyframe request upstream runs as a task). `extensions`: the packet's header extensions when
        the caller has read them already; read here (once for every subscriber) otherwise."""
        self.packets_in += 1
        payload_length = header.payload_length
        self.bytes_in += payload_length
        if self.muted or self.closed:
            return
        now = time.monotonic()
        layer = self.layers.get(rid)
        if layer is None:
            layer = self.layers[rid] = Layer()
        layer.ssrc = header.ssrc
        layer.packets += 1
        layer.bytes += payload_length
        layer.last_packet = now
        payload = memoryview(raw)[header.header_length : header.payload_end]
        is_keyframe = self.kind == "video" and self._is_keyframe(payload)
        if is_keyframe:
            self.keyframes_in += 1
            layer.keyframes += 1
            if self.mime_type.lower() == "video/vp8":
                layer.resolution = vp8_resolution(payload) or layer.resolution
        if self.digest_limit and len(self.digests_in) < self.digest_limit and payload_length:
            self.digests_in.append(digest(payload))
        if self.relay is not None:
            self.relay.send(raw, rid)
        meter = self.audio_level
        if meter is not None and header.ext_profile is not None:
            if extensions is None:
                with contextlib.suppress(rtp.RtpError):  # unreadable: the forwarding below drops it
                    extensions = rtp.read_extensions(raw, header)
            level = extensions.get(self._audio_level_id) if extensions else None
            if level:
                meter.observe(level[0] & 0x7F, header.timestamp, now)
        if not self.downs:
            return
        if extensions is None and header.ext_profile is not None:
            try:
                extensions = rtp.read_extensions(raw, header)
            except rtp.RtpError as e:  # an extension block aiortc's parser let through but ours cannot read
                hooks.counters["dropped_unforwardable_rtp"] += 1
                _ratelog.warning("unforwardable", "%r: RTP packet not forwardable, dropped: %s", self, e)
                return
        ntp = rtp.ntp_time()
        for down in list(self.downs.values()):
            try:
                down.forward(raw, header, rid, is_keyframe, now, ntp, extensions)
            except Exception as e:  # a bug in one subscriber's path must not starve the others
                self.forward_errors += 1
                _ratelog.warning("forward", "%r: forwarding to %s failed: %r", self, down.sub_sid, e)
        if not self.packets_in % LATENCY_SAMPLE_EVERY:
            forwarding_latencies.append(time.monotonic() - now)

    async def request_keyframe(self, rid: str | None = None) -> None:
        """Ask the publisher for a keyframe of layer `rid`, at most once per KEYFRAME_INTERVAL per layer."""
        request = self._keyframe_request(rid)
        if request is not None:
            await request

    def request_keyframe_soon(self, rid: str | None = None) -> None:
        """`request_keyframe` from the hot path: rate-limited now, the request itself sent by a task."""
        request = self._keyframe_request(rid)
        if request is not None:
            spawn(request, f"{self!r}: keyframe request")

    def _keyframe_request(self, rid: str | None) -> Awaitable[None] | None:
        if self.kind != "video" or self.closed or self.muted:
            return None
        if not self._limiter.allow(rid):
            return None
        self.keyframe_requests += 1
        layer = self.layers.get(rid)
        return self._request_upstream(rid, layer.ssrc if layer is not None else None)

    def layer_sizes(self) -> dict[str, tuple[int, int]]:
        """Each layer's (width, height): as announced when every layer's is (LiveKit's choice), else as
        measured from its keyframes (VP8), for the layers measured so far."""
        announced = self.announced_sizes
        if self.rids and all(announced.get(r, (0, 0))[1] for r in self.rids):
            return announced
        return {r: la.resolution for r, la in self.layers.items() if r is not None and la.resolution}

    def active_rids(self, now: float) -> list[str]:
        return [
            r
            for r in self.rids
            if (la := self.layers.get(r)) is not None and now - la.last_packet < LAYER_ACTIVE
        ]

    async def set_muted(self, muted: bool) -> None:
        if muted == self.muted:
            return
        self.muted = muted
        if not muted:
            for down in self.downs.values():
                down.restart()
            rids: list[str | None] = [*self.rids] or [None]
            for rid in rids:
                await self.request_keyframe(rid)

    def stats(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "mime_type": self.mime_type,
            "publisher": self.publisher_sid,
            "relayed_from": self.relayed_from,
            "muted": self.muted,
            "packets_in": self.packets_in,
            "bytes_in": self.bytes_in,
            "keyframes_in": self.keyframes_in,
            "keyframe_requests": self.keyframe_requests,
            "forward_errors": self.forward_errors,
            "relay_out": self.relay.stats() if self.relay is not None else {},
            "layers": {
                str(rid): {
                    "ssrc": la.ssrc,
                    "packets": la.packets,
                    "bytes": la.bytes,
                    "keyframes": la.keyframes,
                    "resolution": la.resolution,
                }
                for rid, la in self.layers.items()
            },
            "digests_in": digests_hex(self.digests_in),
            "subscribers": {sid: d.stats() for sid, d in self.downs.items()},
        }
