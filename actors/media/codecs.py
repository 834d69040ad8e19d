"""Per-codec knowledge the forwarder needs: keyframe detection on RTP payloads, and SDP codec entries.

Keyframe detection answers "is this the first packet of a keyframe?" from the payload descriptor alone
(VP8 RFC 7741, VP9 RFC 9628, H.264 RFC 6184, AV1 RTP spec 1.0); a wrong parser gives false positives,
so detection is chosen by the negotiated codec, never guessed.
"""

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

Payload = bytes | bytearray | memoryview


def vp8_keyframe(payload: Payload) -> bool:
    """First packet of a VP8 key frame: start of partition 0 and the frame tag's P bit clear."""
    n = len(payload)
    if n < 1:
        return False
    b0 = payload[0]
    if not b0 & 0x10 or b0 & 0x07:  # S bit, partition index 0
        return False
    pos = 1
    if b0 & 0x80:  # X: extension byte
        if pos >= n:
            return False
        x = payload[pos]
        pos += 1
        if x & 0x80:  # I: picture id, 7 or 15 bits
            if pos >= n:
                return False
            pos += 2 if payload[pos] & 0x80 else 1
        if x & 0x40:  # L: TL0PICIDX
            pos += 1
        if x & 0x30:  # T/K: TID/KEYIDX byte
            pos += 1
    return pos < n and payload[pos] & 0x01 == 0


def vp8_resolution(payload: Payload) -> tuple[int, int] | None:
    """(width, height) from the start of a VP8 key frame, None when this packet does not carry it."""
    if not vp8_keyframe(payload):
        return None
    pos = 1
    if payload[0] & 0x80:
        x = payload[1]
        pos = 2
        if x & 0x80:
            pos += 2 if payload[pos] & 0x80 else 1
        if x & 0x40:
            pos += 1
        if x & 0x30:
            pos += 1
    frame = bytes(payload[pos : pos + 10])
    if len(frame) < 10 or frame[3:6] != b"\x9d\x01\x2a":
        return None
    return (int.from_bytes(frame[6:8], "little") & 0x3FFF, int.from_bytes(frame[8:10], "little") & 0x3FFF)


def vp9_keyframe(payload: Payload) -> bool:
    """First packet of a VP9 key picture: B (start of frame) set, P (inter-picture predicted) clear,
    and spatial layer 0 when layer indices are present."""
    if len(payload) < 1:
        return False
    b0 = payload[0]
    if not b0 & 0x08 or b0 & 0x40:  # B, P
        return False
    if b0 & 0x20:  # L: layer indices after the optional picture id
        pos = 1
        if b0 & 0x80:  # I
            if pos >= len(payload):
                return False
            pos += 2 if payload[pos] & 0x80 else 1
        if pos >= len(payload):
            return False
        if (payload[pos] >> 1) & 0x07:  # SID
            return False
    return True


H264_IDR, H264_SPS, H264_STAP_A, H264_FU_A = 5, 7, 24, 28


def h264_keyframe(payload: Payload) -> bool:
    """A packet carrying an SPS or the start of an IDR slice (single NAL, STAP-A or FU-A)."""
    n = len(payload)
    if n < 1:
        return False
    nal = payload[0] & 0x1F
    if nal in (H264_IDR, H264_SPS):
        return True
    if nal == H264_STAP_A:
        pos = 1
        while pos + 2 < n:
            size = (payload[pos] << 8) | payload[pos + 1]
            if size == 0 or pos + 2 + size > n:
                return False
            if payload[pos + 2] & 0x1F in (H264_IDR, H264_SPS):
                return True
            pos += 2 + size
        return False
    if nal == H264_FU_A and n >= 2:
        return bool(payload[1] & 0x80) and payload[1] & 0x1F in (H264_IDR, H264_SPS)
    return False


def av1_keyframe(payload: Payload) -> bool:
    """First packet of an AV1 coded video sequence: aggregation header N set and Z (continuation) clear."""
    return len(payload) >= 2 and bool(payload[0] & 0x08) and not payload[0] & 0x80


def _always(payload: Payload) -> bool:
    return True


def _never(payload: Payload) -> bool:
    return False


_DETECTORS: dict[str, Callable[[Payload], bool]] = {
    "video/vp8": vp8_keyframe,
    "video/vp9": vp9_keyframe,
    "video/h264": h264_keyframe,
    "video/av1": av1_keyframe,
}


def keyframe_detector(mime_type: str) -> Callable[[Payload], bool]:
    """The keyframe test for a codec; audio needs none (always a "keyframe"), unknown video never is."""
    mime = mime_type.lower()
    if mime.startswith("audio/"):
        return _always
    return _DETECTORS.get(mime, _never)


def codec_key(mime_type: str, parameters: Mapping[str, object]) -> str:
    """Codec identity for matching a publisher's payload type to a subscriber's."""
    key = mime_type.lower()
    if key == "video/h264":
        key += (
            f"/{parameters.get('packetization-mode', '0')}/{str(parameters.get('profile-level-id', ''))[:2]}"
        )
    elif key == "video/vp9":
        key += f"/{parameters.get('profile-id', '0')}"
    return key


@dataclass(frozen=True)
class VideoCodecEntry:
    """A video codec aiortc does not offer or accept by itself; passthrough needs only its SDP entry."""

    payload_type: int
    mime_type: str
    parameters: dict[str, str | int] = field(default_factory=dict)


# aiortc owns 97-102 (VP8, H264 42001f, H264 42e01f with their RTX); these follow (RTX = payload_type + 1).
EXTRA_VIDEO_CODECS: tuple[VideoCodecEntry, ...] = (
    VideoCodecEntry(103, "video/VP9", {"profile-id": 0}),
    VideoCodecEntry(105, "video/AV1"),
    VideoCodecEntry(107, "video/VP9", {"profile-id": 2}),
    VideoCodecEntry(
        109,
        "video/H264",
        {"level-asymmetry-allowed": 1, "packetization-mode": 1, "profile-level-id": "4d001f"},
    ),
    VideoCodecEntry(
        111,
        "video/H264",
        {"level-asymmetry-allowed": 1, "packetization-mode": 1, "profile-level-id": "640c1f"},
    ),
)

# libwebrtc also numbers dynamic payload types 35-63 (RFC 8285-era "extended" dynamic range).
DYNAMIC_PAYLOAD_TYPES: frozenset[int] = frozenset(range(35, 64)) | frozenset(range(96, 128))
