"""Realistic RTP without an encoder: Opus-like audio and VP8-like video packets, with a send-time trailer.

The SFUs under test look at RTP headers and at the start of the payload (VP8 payload descriptor and frame tag,
to find keyframes and the resolution); none decodes. So a packet only needs a right header, a right VP8
descriptor / frame tag (or Opus TOC byte), and a realistic size. Every payload ends with a 16-byte trailer:
MAGIC, the sender's CLOCK_MONOTONIC time in ns (same machine as the receiver), and the stream's packet index,
from which the receiver computes latency and loss without decoding.
"""

import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass

RTP_HEADER = struct.Struct("!BBHII")
TRAILER = struct.Struct("!4sQI")
MAGIC = b"RSFB"
MAX_PAYLOAD = 1160  # bytes of VP8 payload per packet (libwebrtc stays below ~1200 with headers)

OPUS_CLOCK = 48000
OPUS_FRAME_MS = 20
OPUS_TOC = 0xF8  # config 31 (CELT fullband 20 ms), mono, one frame
VP8_CLOCK = 90000


@dataclass(frozen=True)
class Trailer:
    sent_ns: int
    index: int


def header(pt: int, seq: int, ts: int, ssrc: int, marker: bool) -> bytes:
    return RTP_HEADER.pack(0x80, (0x80 if marker else 0) | (pt & 0x7F), seq & 0xFFFF, ts & 0xFFFFFFFF, ssrc)


def trailer(index: int, sent_ns: int | None = None) -> bytes:
    return TRAILER.pack(MAGIC, time.monotonic_ns() if sent_ns is None else sent_ns, index & 0xFFFFFFFF)


def read_trailer(packet: bytes) -> Trailer | None:
    """The trailer at the end of an RTP packet (payload end; RTP padding is not used), None if absent."""
    if len(packet) < RTP_HEADER.size + TRAILER.size:
        return None
    magic, sent_ns, index = TRAILER.unpack_from(packet, len(packet) - TRAILER.size)
    if magic != MAGIC:
        return None
    return Trailer(sent_ns, index)


# ----- audio --------------------------------------------------------------------------------------------


def opus_payload(size: int, index: int, sent_ns: int | None = None) -> bytes:
    """An Opus-like 20 ms frame of `size` bytes (TOC byte, filler, trailer). 32 kbit/s Opus is ~80 bytes."""
    body = max(0, size - 1 - TRAILER.size)
    return bytes([OPUS_TOC]) + b"\x55" * body + trailer(index, sent_ns)


# ----- video --------------------------------------------------------------------------------------------


def vp8_descriptor(start: bool, picture_id: int) -> bytes:
    """RFC 7741 payload descriptor: X=1, S=start, PID=0; I=1 with a 15-bit picture id."""
    return bytes([0x90 if start else 0x80, 0x80, 0x80 | ((picture_id >> 8) & 0x7F), picture_id & 0xFF])


def vp8_frame_header(keyframe: bool, width: int, height: int, first_partition: int = 200) -> bytes:
    """The VP8 frame tag (3 bytes; P bit 0 = keyframe, show_frame 1) and, for a keyframe, the start code and
    the 14-bit width and height (RFC 6386 9.1)."""
    size = first_partition & 0x7FFFF
    tag = (0 if keyframe else 1) | (0 << 1) | (1 << 4) | (size << 5)
    out = tag.to_bytes(3, "little")
    if keyframe:
        out += b"\x9d\x01\x2a" + struct.pack("<HH", width & 0x3FFF, height & 0x3FFF)
    return out


def frame_sizes(
    bitrate: int, fps: int, keyframe_every_s: float, keyframe_ratio: float = 6.0
) -> tuple[int, int]:
    """(keyframe bytes, delta-frame bytes) so that one keyframe interval averages `bitrate`."""
    gop = max(1, round(fps * keyframe_every_s))
    total = bitrate / 8 * gop / fps
    delta = total / (gop - 1 + keyframe_ratio)
    return max(1, round(delta * keyframe_ratio)), max(1, round(delta))


def vp8_frame_payloads(
    frame_bytes: int, keyframe: bool, picture_id: int, width: int, height: int, first_index: int
) -> list[bytes]:
    """The payloads of one VP8 frame of about `frame_bytes`, split into packets of at most MAX_PAYLOAD
    (descriptor + [frame header] + filler + trailer each)."""
    per = MAX_PAYLOAD - TRAILER.size - 4
    count = max(1, -(-frame_bytes // per))
    payloads: list[bytes] = []
    now = time.monotonic_ns()
    remaining = frame_bytes
    for i in range(count):
        chunk = min(per, remaining) if i < count - 1 else max(remaining, 12)
        remaining -= chunk
        body = vp8_descriptor(i == 0, picture_id)
        if i == 0:
            head = vp8_frame_header(keyframe, width, height)
            body += head + b"\x00" * max(0, chunk - len(head))
        else:
            body += b"\x00" * chunk
        payloads.append(body + trailer(first_index + i, now))
    return payloads


@dataclass
class VideoSource:
    """Frame after frame of VP8-like packets at a target bitrate and frame rate, keyframe every N seconds
    (or on request: `request_keyframe()` after a PLI)."""

    bitrate: int = 1_500_000
    fps: int = 30
    keyframe_every_s: float = 3.0
    width: int = 1280
    height: int = 720

    def __post_init__(self) -> None:
        self.key_bytes, self.delta_bytes = frame_sizes(self.bitrate, self.fps, self.keyframe_every_s)
        self.gop = max(1, round(self.fps * self.keyframe_every_s))
        self.frame = 0
        self.picture_id = 0
        self.index = 0
        self.frames_sent = 0
        self._force_key = False

    def request_keyframe(self) -> None:
        self._force_key = True

    def next_frame(self) -> tuple[int, list[bytes]]:
        """(RTP timestamp, payloads) of the next frame; the last payload gets the marker bit."""
        key = self.frame % self.gop == 0 or self._force_key
        if key:
            self._force_key = False
            self.frame = 0
        payloads = vp8_frame_payloads(
            self.key_bytes if key else self.delta_bytes, key, self.picture_id, self.width, self.height,
            self.index,
        )  # fmt: skip
        ts = (self.frames_sent * VP8_CLOCK // self.fps) & 0xFFFFFFFF
        self.frame += 1
        self.frames_sent += 1
        self.picture_id = (self.picture_id + 1) & 0x7FFF
        self.index += len(payloads)
        return ts, payloads


def packets(pt: int, ssrc: int, seq0: int, ts: int, payloads: list[bytes]) -> Iterator[tuple[int, bytes]]:
    """(sequence number, packet) per payload; marker on the last."""
    for i, payload in enumerate(payloads):
        seq = (seq0 + i) & 0xFFFF
        yield seq, header(pt, seq, ts, ssrc, i == len(payloads) - 1) + payload
