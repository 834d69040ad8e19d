"""Byte-level tests of actors.media.rtp and actors.media.codecs on hand-built packets (RFC 3550/8285/4588)."""

import struct

import pytest
from aiortc import clock

from actors.media import codecs, rtp
from actors.media.rtcp import NackTracker, remb_target


def packet(
    *,
    pt: int = 96,
    seq: int = 1000,
    ts: int = 90000,
    ssrc: int = 0x11223344,
    csrcs: tuple[int, ...] = (),
    ext: bytes = b"",
    payload: bytes = b"\x10\x00\x9d",
    padding: int = 0,
    marker: bool = False,
) -> bytes:
    b0 = 0x80 | len(csrcs) | (0x10 if ext else 0) | (0x20 if padding else 0)
    out = struct.pack("!BBHII", b0, pt | (0x80 if marker else 0), seq, ts, ssrc)
    out += b"".join(struct.pack("!I", c) for c in csrcs) + ext + payload
    if padding:
        out += b"\x00" * (padding - 1) + bytes([padding])
    return out


ONE_BYTE = bytes.fromhex("bede00021030226162630000")  # id1 len1 0x30; id2 len3 "abc"; pad
TWO_BYTE = bytes.fromhex("100000020102aabb10010c00")  # id1 len2; id16 len1


def test_parse_fixed_header_csrcs_and_padding() -> None:
    raw = packet(csrcs=(1, 2), padding=4, marker=True, payload=b"xyz")
    h = rtp.parse_header(raw)
    assert (h.payload_type, h.marker, h.sequence_number, h.timestamp, h.ssrc) == (
        96,
        True,
        1000,
        90000,
        0x11223344,
    )
    assert h.csrc_end == 20 and h.header_length == 20 and raw[h.header_length : h.payload_end] == b"xyz"
    assert not h.padding_only


def test_padding_only_and_malformed() -> None:
    assert rtp.parse_header(packet(payload=b"", padding=8)).padding_only
    for bad in (
        b"\x80\x60",
        b"\x40" + packet()[1:],
        bytes([0xA0]) + packet(payload=b"")[1:] + b"\x40",
    ):
        with pytest.raises(rtp.RtpError):
            rtp.parse_header(bad)
    with pytest.raises(rtp.RtpError):  # extension length beyond the packet
        rtp.parse_header(packet(ext=bytes.fromhex("bede00ff"), payload=b""))


def test_read_one_and_two_byte_extensions() -> None:
    raw = packet(ext=ONE_BYTE)
    assert rtp.read_extensions(raw, rtp.parse_header(raw)) == {1: b"\x30", 2: b"abc"}
    raw = packet(ext=TWO_BYTE)
    assert rtp.read_extensions(raw, rtp.parse_header(raw)) == {1: b"\xaa\xbb", 16: b"\x0c"}


def test_rewrite_remaps_ids_replaces_mid_drops_rid_keeps_payload() -> None:
    # publisher: audio-level 1, mid 4, rid 10; subscriber: audio-level 2, mid 1
    ext = bytes.fromhex("bede000310804030a071000000")[:16]
    ext = rtp.build_extension_block([(1, b"\x80"), (4, b"0"), (10, b"q")])
    raw = packet(ext=ext, payload=b"PAYLOAD", padding=3, csrcs=(7,))
    plan = rtp.ExtensionPlan.between(
        {rtp.AUDIO_LEVEL_URI: 1, rtp.MID_URI: 4, rtp.RID_URI: 10},
        {rtp.AUDIO_LEVEL_URI: 2, rtp.MID_URI: 1},
        "7",
    )
    out = rtp.rewrite(raw, rtp.parse_header(raw), plan, 111, 5, 6, 0xAABBCCDD)
    h = rtp.parse_header(out)
    assert (h.payload_type, h.sequence_number, h.timestamp, h.ssrc) == (111, 5, 6, 0xAABBCCDD)
    assert rtp.read_extensions(out, h) == {2: b"\x80", 1: b"7"}
    assert out[h.header_length : h.payload_end] == b"PAYLOAD"
    assert out[12:16] == struct.pack("!I", 7)  # CSRC kept


def test_rewrite_inserts_mid_without_extension_block() -> None:
    raw = packet(payload=b"P")
    plan = rtp.ExtensionPlan.between({}, {rtp.MID_URI: 9}, "12")
    out = rtp.rewrite(raw, rtp.parse_header(raw), plan, 97, 1, 2, 3)
    h = rtp.parse_header(out)
    assert out[0] & 0x10 and h.ext_profile == rtp.ONE_BYTE_PROFILE
    assert rtp.read_extensions(out, h) == {9: b"12"} and out[h.header_length :] == b"P"


def test_rewrite_two_byte_input_and_abs_send_time_restamp() -> None:
    raw = packet(ext=rtp.build_extension_block([(3, b"\x00\x00\x01"), (20, b"x" * 20)]))
    assert rtp.parse_header(raw).ext_profile == rtp.TWO_BYTE_PROFILE
    plan = rtp.ExtensionPlan.between({rtp.ABS_SEND_TIME_URI: 3}, {rtp.ABS_SEND_TIME_URI: 5}, "")
    out = rtp.rewrite(raw, rtp.parse_header(raw), plan, 96, 1, 1, 1, send_time=b"\x01\x02\x03")
    assert rtp.read_extensions(out, rtp.parse_header(out)) == {5: b"\x01\x02\x03"}
    plan = rtp.ExtensionPlan()  # nothing kept: the extension bit is cleared
    out = rtp.rewrite(raw, rtp.parse_header(raw), plan, 96, 1, 1, 1)
    assert not out[0] & 0x10 and rtp.parse_header(out).header_length == 12


def test_rtx_wrap_unwrap_roundtrip() -> None:
    raw = packet(seq=4242, payload=b"media", padding=2)
    rtx = rtp.rtx_wrap(raw, rtp.parse_header(raw), 97, 7, 0x55)
    h = rtp.parse_header(rtx)
    assert (h.payload_type, h.sequence_number, h.ssrc) == (97, 7, 0x55)
    back = rtp.rtx_unwrap(rtx, h, 96, 0x11223344)
    assert back == packet(seq=4242, payload=b"media")


def test_ntp_time_matches_aiortc_clock() -> None:
    ours, theirs = rtp.ntp_time(), clock.current_ntp_time()
    assert abs(ours - theirs) < (1 << 32) // 100  # within 10 ms


def test_seq_newer_wraps() -> None:
    assert rtp.seq_newer(1, 0xFFFF) and not rtp.seq_newer(0xFFFF, 1) and not rtp.seq_newer(5, 5)


def test_vp8_keyframe_and_resolution() -> None:
    key = (
        bytes([0x90, 0x80, 0x05]) + bytes([0x00, 0x00, 0x00]) + b"\x9d\x01\x2a" + struct.pack("<HH", 320, 240)
    )
    assert codecs.vp8_keyframe(key) and codecs.vp8_resolution(key) == (320, 240)
    assert not codecs.vp8_keyframe(bytes([0x90, 0x80, 0x05, 0x01]))  # P bit: inter frame
    assert not codecs.vp8_keyframe(bytes([0x80, 0x80, 0x05, 0x00]))  # not a partition start
    assert not codecs.vp8_keyframe(b"")


def test_vp9_h264_av1_keyframes() -> None:
    assert codecs.vp9_keyframe(bytes([0x08])) and not codecs.vp9_keyframe(bytes([0x48]))
    assert not codecs.vp9_keyframe(bytes([0x28, 0x02]))  # spatial layer 1
    assert codecs.h264_keyframe(bytes([0x65, 0x88])) and codecs.h264_keyframe(bytes([0x67, 0x42]))
    assert not codecs.h264_keyframe(bytes([0x41, 0x9A]))
    stap = (
        bytes([0x18])
        + struct.pack("!H", 2)
        + bytes([0x67, 0x42])
        + struct.pack("!H", 2)
        + bytes([0x68, 0xCE])
    )
    assert codecs.h264_keyframe(stap)
    assert codecs.h264_keyframe(bytes([0x7C, 0x85])) and not codecs.h264_keyframe(bytes([0x7C, 0x05]))
    assert codecs.av1_keyframe(bytes([0x18, 0x0A])) and not codecs.av1_keyframe(bytes([0x10, 0x0A]))
    assert not codecs.av1_keyframe(bytes([0x98, 0x0A]))  # continuation
    assert codecs.keyframe_detector("audio/opus")(b"") and not codecs.keyframe_detector("video/x")(b"\x00")


def test_codec_key_and_nack_tracker_and_remb() -> None:
    assert (
        codecs.codec_key("video/H264", {"packetization-mode": 1, "profile-level-id": "42e01f"})
        == "video/h264/1/42"
    )
    t = NackTracker()
    assert not t.add(10) and t.add(13) and t.missing_list() == [11, 12]
    assert not t.add(11) and t.missing == {12}
    assert not t.add(5000) and not t.missing  # a jump is not NACKed
    assert remb_target(3_000_000, [None, 800_000], simulcast=False) == 800_000
    assert remb_target(3_000_000, [10], simulcast=False) == 150_000
    assert remb_target(3_000_000, [800_000], simulcast=True) == 3_000_000
