"""RTP header work on raw bytes (RFC 3550, RFC 8285): parse, rewrite for a subscriber, RTX wrap/unwrap.

The forwarder never re-serialises a parsed packet (aiortc's RtpPacket keeps only the header extensions it
knows): it reads the fixed header, keeps the payload bytes exactly, and rebuilds only the extension block.
"""

import struct
import time
from dataclasses import dataclass, field
from functools import lru_cache
from typing import NamedTuple

MID_URI = "urn:ietf:params:rtp-hdrext:sdes:mid"
RID_URI = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id"
REPAIRED_RID_URI = "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id"
ABS_SEND_TIME_URI = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"
AUDIO_LEVEL_URI = "urn:ietf:params:rtp-hdrext:ssrc-audio-level"
# Never forwarded: they name the publisher's encodings, not the subscriber's stream.
EGRESS_DROPPED_URIS = frozenset({RID_URI, REPAIRED_RID_URI})

ONE_BYTE_PROFILE = 0xBEDE
TWO_BYTE_PROFILE_MASK = 0xFFF0
TWO_BYTE_PROFILE = 0x1000
_FIXED = struct.Struct("!BBHII")
_PROFILE_WORDS = struct.Struct("!HH")


class RtpError(ValueError):
    """Bytes that are not a well-formed RTP packet."""


class RtpHeader(NamedTuple):
    """The parsed fixed header of a raw packet (a named tuple: built once per incoming packet, cheaply)."""

    payload_type: int
    marker: bool
    sequence_number: int
    timestamp: int
    ssrc: int
    csrc_end: int  # offset just past the CSRC list (where an extension block would start)
    ext_profile: int | None  # 0xBEDE, 0x100x or another profile; None without an extension block
    header_length: int  # offset of the payload
    payload_end: int  # offset of the padding (== len(raw) without padding)

    @property
    def payload_length(self) -> int:
        return self.payload_end - self.header_length

    @property
    def padding_only(self) -> bool:
        """No media at all: a bandwidth probe (or a malformed empty packet); never forwarded."""
        return self.payload_end == self.header_length


def parse_header(raw: bytes | bytearray) -> RtpHeader:
    """The header of `raw`; RtpError if it is not RTP version 2 or its lengths are inconsistent."""
    n = len(raw)
    if n < 12:
        raise RtpError("shorter than an RTP header")
    b0, b1, seq, ts, ssrc = _FIXED.unpack_from(raw, 0)
    if b0 >> 6 != 2:
        raise RtpError("not RTP version 2")
    pos = 12 + 4 * (b0 & 0x0F)
    csrc_end = pos
    profile: int | None = None
    if b0 & 0x10:
        if pos + 4 > n:
            raise RtpError("truncated header extension")
        profile, words = _PROFILE_WORDS.unpack_from(raw, pos)
        pos += 4 + 4 * words
    if pos > n:
        raise RtpError("header longer than the packet")
    end = n
    if b0 & 0x20:
        pad = raw[-1]
        if pad == 0 or n - pad < pos:
            raise RtpError("bad padding length")
        end = n - pad
    return RtpHeader(b1 & 0x7F, bool(b1 & 0x80), seq, ts, ssrc, csrc_end, profile, pos, end)


def read_extensions(raw: bytes | bytearray, header: RtpHeader) -> dict[int, bytes]:
    """The header extensions (id -> value) of a one-byte or two-byte block; {} for other profiles."""
    profile = header.ext_profile
    if profile is None:
        return {}
    start, end = header.csrc_end + 4, header.header_length
    if profile == ONE_BYTE_PROFILE:
        return _read_one_byte(raw, start, end)
    if profile & TWO_BYTE_PROFILE_MASK == TWO_BYTE_PROFILE:
        return _read_two_byte(raw, start, end)
    return {}


def _read_one_byte(raw: bytes | bytearray, i: int, end: int) -> dict[int, bytes]:
    out: dict[int, bytes] = {}
    while i < end:
        b = raw[i]
        if b == 0:  # padding between elements
            i += 1
            continue
        ext_id = b >> 4
        if ext_id == 15:  # reserved: stop parsing (RFC 8285 4.2)
            break
        length = (b & 0x0F) + 1
        if i + 1 + length > end:
            raise RtpError("truncated one-byte header extension")
        out[ext_id] = bytes(raw[i + 1 : i + 1 + length])
        i += 1 + length
    return out


def _read_two_byte(raw: bytes | bytearray, i: int, end: int) -> dict[int, bytes]:
    out: dict[int, bytes] = {}
    while i < end:
        ext_id = raw[i]
        if ext_id == 0:
            i += 1
            continue
        if i + 2 > end:
            raise RtpError("truncated two-byte header extension")
        length = raw[i + 1]
        if i + 2 + length > end:
            raise RtpError("truncated two-byte header extension")
        out[ext_id] = bytes(raw[i + 2 : i + 2 + length])
        i += 2 + length
    return out


def build_extension_block(elements: list[tuple[int, bytes]]) -> bytes:
    """An extension block (profile, length, elements, zero padding); one-byte form whenever it fits."""
    if not elements:
        return b""
    body = bytearray()
    if all(1 <= i <= 14 and 1 <= len(v) <= 16 for i, v in elements):
        profile = ONE_BYTE_PROFILE
        for ext_id, value in elements:
            body.append((ext_id << 4) | (len(value) - 1))
            body += value
    else:
        profile = TWO_BYTE_PROFILE
        for ext_id, value in elements:
            if not 1 <= ext_id <= 255 or len(value) > 255:
                raise RtpError(f"extension {ext_id} cannot be encoded")
            body += bytes((ext_id, len(value))) + value
    body += b"\x00" * (-len(body) % 4)
    return _PROFILE_WORDS.pack(profile, len(body) // 4) + bytes(body)


@dataclass(frozen=True)
class ExtensionPlan:
    """How one publisher m-line's header extensions become one subscriber m-line's.

    Plans from `between` are shared by every down track with the same negotiation, and a plan remembers the
    block it built last, so the subscribers of one packet build its extension block once."""

    id_map: dict[int, int] = field(default_factory=dict)  # publisher id -> subscriber id (kept ones)
    mid_id: int | None = None  # the subscriber's MID id (always written when set)
    mid_value: bytes = b""
    abs_send_time_id: int | None = None  # subscriber id, restamped at send time
    # The block of a packet without extensions (only the MID), and the last block built (extensions, send
    # time, block): not part of the plan's identity.
    _static: bytes = field(default=b"", init=False, compare=False, repr=False)
    _last: list[object] = field(
        default_factory=lambda: [None, None, b""], init=False, compare=False, repr=False
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "_static", self._build({}, None))

    @classmethod
    def between(cls, publisher: dict[str, int], subscriber: dict[str, int], mid: str) -> "ExtensionPlan":
        """The plan for two uri -> id maps; MID is replaced, rid/repaired-rid are dropped."""
        return _plan(tuple(sorted(publisher.items())), tuple(sorted(subscriber.items())), mid)

    def block(self, extensions: dict[int, bytes] | None, send_time: bytes | None = None) -> bytes:
        """The subscriber's extension block for a packet with these (publisher) extensions."""
        if not extensions:
            return self._static
        last = self._last
        if last[0] is extensions and last[1] == send_time:
            return last[2]  # type: ignore[return-value]
        block = self._build(extensions, send_time)
        last[0], last[1], last[2] = extensions, send_time, block
        return block

    def _build(self, extensions: dict[int, bytes], send_time: bytes | None) -> bytes:
        elements: list[tuple[int, bytes]] = []
        id_map = self.id_map
        for ext_id, value in extensions.items():
            out_id = id_map.get(ext_id)
            if out_id is None:
                continue
            if out_id == self.abs_send_time_id and send_time is not None:
                value = send_time
            elements.append((out_id, value))
        if self.mid_id is not None and self.mid_value:
            elements.append((self.mid_id, self.mid_value))
        return build_extension_block(elements)


@lru_cache(maxsize=1024)
def _plan(
    publisher: tuple[tuple[str, int], ...], subscriber: tuple[tuple[str, int], ...], mid: str
) -> ExtensionPlan:
    skip = EGRESS_DROPPED_URIS | {MID_URI}
    sub = dict(subscriber)
    id_map = {pid: sub[uri] for uri, pid in publisher if uri in sub and uri not in skip}
    return ExtensionPlan(id_map, sub.get(MID_URI), mid.encode(), sub.get(ABS_SEND_TIME_URI))


NTP_UNIX_OFFSET = 2_208_988_800  # seconds from 1900-01-01 (NTP's epoch) to 1970-01-01


def ntp_time() -> int:
    """Now as a 64-bit NTP timestamp (aiortc's clock.current_ntp_time goes through datetime: 3x slower)."""
    now = time.time() + NTP_UNIX_OFFSET
    seconds = int(now)
    return (seconds << 32) | int((now - seconds) * 4_294_967_296)


def abs_send_time(ntp_time: int) -> bytes:
    """The 24-bit abs-send-time value (6.18 fixed-point seconds) of a 64-bit NTP time."""
    return ((ntp_time >> 14) & 0xFFFFFF).to_bytes(3, "big")


def rewrite(
    raw: bytes | bytearray,
    header: RtpHeader,
    plan: ExtensionPlan,
    payload_type: int,
    sequence_number: int,
    timestamp: int,
    ssrc: int,
    send_time: bytes | None = None,
    extensions: dict[int, bytes] | None = None,
) -> bytes:
    """The packet for one subscriber: new PT/seq/ts/SSRC and extension block; payload and padding kept.
    `extensions`: the packet's, when the caller has read them already (once for all its subscribers)."""
    if extensions is None and header.ext_profile is not None:
        extensions = read_extensions(raw, header)
    block = plan.block(extensions, send_time)
    fixed = _FIXED.pack(
        (raw[0] & 0xEF) | (0x10 if block else 0),
        (raw[1] & 0x80) | payload_type,
        sequence_number,
        timestamp,
        ssrc,
    )
    csrc_end = header.csrc_end
    rest = memoryview(raw)[header.header_length :]
    if csrc_end == 12:
        return b"".join((fixed, block, rest))
    return b"".join((fixed, raw[12:csrc_end], block, rest))


def rtx_unwrap(raw: bytes | bytearray, header: RtpHeader, payload_type: int, ssrc: int) -> bytes:
    """An RTX packet (RFC 4588) as the original: OSN as seq, PT/SSRC of the media stream, padding dropped."""
    if header.payload_length < 2:
        raise RtpError("RTX packet without an original sequence number")
    (osn,) = struct.unpack_from("!H", raw, header.header_length)
    out = bytearray(raw[: header.header_length])
    out[0] &= 0xDF
    out[1] = (out[1] & 0x80) | payload_type
    struct.pack_into("!H", out, 2, osn)
    struct.pack_into("!I", out, 8, ssrc)
    out += raw[header.header_length + 2 : header.payload_end]
    return bytes(out)


def rtx_wrap(
    raw: bytes | bytearray, header: RtpHeader, payload_type: int, sequence_number: int, ssrc: int
) -> bytes:
    """`raw` as an RTX packet: the original sequence number prefixed to its payload, padding dropped."""
    out = bytearray(raw[: header.header_length])
    out[0] &= 0xDF
    out[1] = (out[1] & 0x80) | payload_type
    struct.pack_into("!H", out, 2, sequence_number)
    struct.pack_into("!I", out, 8, ssrc)
    out += struct.pack("!H", header.sequence_number)
    out += raw[header.header_length : header.payload_end]
    return bytes(out)


def seq_newer(a: int, b: int) -> bool:
    """True if 16-bit sequence number `a` comes after `b` (RFC 1982 serial arithmetic)."""
    return a != b and ((a - b) & 0xFFFF) < 0x8000
