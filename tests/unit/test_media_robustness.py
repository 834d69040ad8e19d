"""Bad input and misbehaving peers against a MediaWorker, in-process on 127.0.0.1 with aiortc peers:
malformed RTP/RTCP and unknown SSRCs are dropped and counted, a flooding publisher cannot grow the worker's
memory, and a subscriber that never answers its offer stalls nobody else."""

import asyncio
import logging
import os
import struct
from collections import Counter
from typing import Any

import pytest
from aiortc import clock
from aiortc.rtcrtpparameters import RTCRtpDecodingParameters, RTCRtpReceiveParameters, RTCRtpRtxParameters
from aiortc.rtp import RTCP_PSFB_PLI, RtcpPsfbPacket, RtcpRtpfbPacket

from actors.media import downtrack, hooks
from actors.media import peer as peer_module
from actors.media.uptrack import digest
from tests.polling import wait_for
from tests.unit.media_peers import (
    Room,
    ice_connection,
    negotiate,
    new_pc,
    new_publisher,
    new_subscriber,
    start_room,
    worker_pc,
)


def rtp_packet(
    ssrc: int, seq: int, pt: int, payload: bytes, extension: bytes = b"", version: int = 2, ts: int = 0
) -> bytes:
    """An RTP packet; `extension` is a raw block (profile, length, body) when given."""
    b0 = (version << 6) | (0x10 if extension else 0)
    return struct.pack("!BBHII", b0, pt, seq, ts, ssrc) + extension + payload


def published_video(room: Room) -> tuple[Any, int, int]:
    """The worker's tap receiver of the publisher's video, its media SSRC and payload type."""
    receiver = room.plane.published[room.publisher.video_sid].receiver
    up = room.plane.ups[room.publisher.video_sid]
    return receiver, room.publisher.sender("video")._ssrc, up.params.codecs[0].payload_type


def publisher_dtls(room: Room) -> Any:
    """The publisher's (client side) DTLS transport: `_send_rtp` SRTP-protects and sends to the worker."""
    return room.publisher.pc.getTransceivers()[0].sender.transport


async def frames_continue(room: Room, sid: str, more: int = 15) -> None:
    client = room.subs[sid]
    start = len(client.frames)
    await wait_for(lambda: len(client.frames) >= start + more, what=f"{sid} still decoding")


async def test_malformed_rtp_rtcp_and_unknown_ssrcs_are_dropped(caplog: pytest.LogCaptureFixture) -> None:
    room = await start_room("media:test/bad-input", ["PA_bob"])
    try:
        receiver, video_ssrc, video_pt = published_video(room)
        tap = receiver.transport  # the worker's TapDtlsTransport: decrypted packets enter here
        assert isinstance(tap, hooks.TapDtlsTransport)
        hooks.common.ratelog._last.clear()
        downtrack._ratelog._last.clear()
        before = Counter(hooks.counters)
        caplog.set_level(logging.WARNING, logger="actors.media")
        malformed = [
            b"",
            b"\x80",
            b"\x80\x60\x00\x01",  # truncated header
            rtp_packet(video_ssrc, 1, video_pt, b"x" * 20, version=1),  # bad version
            rtp_packet(video_ssrc, 1, video_pt, b"", extension=b"\xbe\xde\x00\x05"),  # extension past the end
            rtp_packet(
                video_ssrc, 1, video_pt, b"", extension=b"\xbe\xde\x00\x01\x35\x00\x00\x00"
            ),  # truncated
            bytes([0xA0]) + os.urandom(30) + b"\xff",  # padding longer than the packet
        ]
        garbage = [bytes([0x80 | (i & 0x3F)]) + os.urandom(i) for i in range(1, 60)]
        now = clock.current_ms()
        for _ in range(20):
            for data in malformed:
                await tap._handle_rtp_data(data, now)
        for data in garbage:
            await tap._handle_rtp_data(data, now)
        assert hooks.counters["dropped_malformed_rtp"] - before["dropped_malformed_rtp"] >= 20 * len(
            malformed
        )

        # Known SSRC and payload type, an extension block aiortc ignores (two-byte profile with app bits)
        # whose element runs past its end: the per-subscriber rewrite cannot parse it. Dropped, not raised.
        seq = (receiver._nacks[video_ssrc].max_seq - 3) & 0xFFFF
        odd = rtp_packet(video_ssrc, seq, video_pt, b"\x10odd", extension=b"\x10\x01\x00\x01\x05\xc8\x00\x00")
        await tap._handle_rtp_data(odd, now)

        # Through the real path (SRTP from the publisher's own session): an SSRC nobody signalled, with the
        # video payload type (aiortc would bind it to the video receiver) and with an unknown one.
        dtls = publisher_dtls(room)
        marker = b"\x10INJECTED-BY-TEST" + bytes(40)
        for i in range(20):
            await dtls._send_rtp(rtp_packet(0x0BADBEEF, 1000 + i, video_pt, marker))
            await dtls._send_rtp(rtp_packet(0x0BADBEF0, 1000 + i, 77, marker))
        # RTCP garbage through SRTCP (length field larger than the packet) and straight into the tap.
        for _ in range(10):
            await dtls._send_rtp(bytes([0x81, 201, 0x00, 0x40]) + bytes(8))
            await tap._handle_rtcp_data(bytes([0x80, 205]) + os.urandom(6))
        # The subscriber asks for keyframes and retransmissions of SSRCs the worker never sent.
        bob_receiver = room.subs["PA_bob"].receiver("video")
        rtcp_ssrc = bob_receiver._RTCRtpReceiver__rtcp_ssrc
        for _ in range(10):
            await bob_receiver._send_rtcp(
                RtcpPsfbPacket(fmt=RTCP_PSFB_PLI, ssrc=rtcp_ssrc, media_ssrc=0x1234)
            )
            await bob_receiver._send_rtcp(
                RtcpRtpfbPacket(fmt=1, ssrc=rtcp_ssrc, media_ssrc=0x1234, lost=[1, 2])
            )

        await wait_for(
            lambda: (
                hooks.counters["dropped_unknown_ssrc"] - before["dropped_unknown_ssrc"] >= 40
                and hooks.counters["dropped_malformed_rtcp"] - before["dropped_malformed_rtcp"] >= 20
            ),
            timeout=3,
            what="unknown SSRCs and malformed RTCP counted",
        )
        assert 0x0BADBEEF not in receiver._RTCRtpReceiver__remote_streams
        down = room.plane.downs[("PA_bob", room.publisher.video_sid)]
        assert digest(marker) not in down.digests_out  # never forwarded
        assert hooks.counters["dropped_unforwardable_rtp"] - before["dropped_unforwardable_rtp"] >= 1
        # one log line per kind of problem, however many packets
        lines = Counter(
            str(r.msg)
            for r in caplog.records
            if r.name.startswith("actors.media") and r.levelno >= logging.WARNING
        )
        assert len(lines) >= 4 and max(lines.values()) == 1, lines
        assert worker_pc(room.worker, "PA_alice", publisher=True).connectionState == "connected"
        await frames_continue(room, "PA_bob")
    finally:
        await room.close()


async def test_flooding_publisher_is_bounded_and_other_rooms_keep_media() -> None:
    room = await start_room("media:test/flood", ["PA_bob"])
    worker = room.worker
    try:
        mallory = await new_publisher(worker, "PA_mallory", room="f")
        await wait_for(lambda: room.plane.ups[mallory.video_sid].packets_in > 10, what="mallory publishing")
        connection = ice_connection(worker_pc(worker, "PA_mallory", publisher=True))
        before = hooks.counters["dropped_ice_queue_full"] + hooks.counters["dropped_srtp_unprotect"]
        bob = room.subs["PA_bob"]
        frames = len(bob.frames)
        junk = [b"\x80\x60" + os.urandom(1100) for _ in range(64)]  # SRTP that fails authentication
        burst, bursts = 20_000, 5
        for _ in range(bursts):
            for i in range(burst):  # faster than the loop can process: it never runs meanwhile
                connection.data_received(junk[i % len(junk)], 1)
            assert connection._queue.qsize() <= hooks.MAX_ICE_QUEUE
            await asyncio.sleep(0.2)
        # Each datagram is either turned away by the bounded queue or, taken straight from the socket
        # callback (the SRTP hot path), rejected by SRTP authentication: nothing piles up.
        dropped = hooks.counters["dropped_ice_queue_full"] + hooks.counters["dropped_srtp_unprotect"] - before
        assert dropped >= bursts * (burst - hooks.MAX_ICE_QUEUE)
        # the other room's subscriber kept getting media during the flood (about 1 s), and still does
        assert len(bob.frames) > frames + 10
        await frames_continue(room, "PA_bob")
        await mallory.pc.close()
    finally:
        await room.close()


async def test_subscriber_that_never_answers_stalls_only_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(peer_module, "ANSWER_WAIT", 2.0)
    room = await start_room("media:test/ghost", ["PA_bob"])
    worker, video_sid = room.worker, room.publisher.video_sid
    try:
        await worker.add_participant("r", "PA_ghost", "ghost")
        await worker.subscribe("PA_ghost", video_sid, "PA_alice")
        await worker.subscriber_offer("PA_ghost")  # never answered
        again = asyncio.ensure_future(worker.subscriber_offer("PA_ghost"))  # waits for that answer
        loop = asyncio.get_running_loop()
        start = loop.time()
        eve = await new_subscriber(worker, "PA_eve", [video_sid])
        room.subs["PA_eve"] = eve
        await wait_for(lambda: len(eve.frames) > 5, timeout=5, what="eve decoding")
        assert loop.time() - start < 2.0
        assert not again.done()  # the ghost's own renegotiation is the only thing waiting
        await frames_continue(room, "PA_bob")
        # a later renegotiation of another subscriber is not held either
        await worker.subscribe("PA_eve", room.publisher.audio_sid, "PA_alice")
        await asyncio.wait_for(negotiate(worker, eve), 2.0)
        await wait_for(lambda: eve.audio_frames > 10, timeout=5, what="eve's audio")
        # the ghost's wait ends on its own (a fresh offer), and its down track never sent anything
        offer = await asyncio.wait_for(again, 5.0)
        assert offer.startswith("v=0")
        assert room.plane.downs[("PA_ghost", video_sid)].packets_out == 0
    finally:
        await room.close()


async def test_tap_receiver_admits_signalled_ssrcs_or_a_few_learned_ones() -> None:
    pc = new_pc()
    receiver = hooks.tap_receiver(pc.addTransceiver("video", direction="recvonly").receiver)
    assert not receiver.admit(1)  # not receiving yet
    receiver.params = RTCRtpReceiveParameters(
        encodings=[RTCRtpDecodingParameters(ssrc=10, payloadType=96, rtx=RTCRtpRtxParameters(ssrc=11))]
    )
    assert receiver.admit(10) and receiver.admit(11) and not receiver.admit(12)
    receiver.params = RTCRtpReceiveParameters(encodings=[])  # rid simulcast: no a=ssrc, SSRCs are learned
    assert all(receiver.admit(ssrc) for ssrc in range(100, 100 + hooks.MAX_LEARNED_SSRCS))
    assert receiver.admit(100) and not receiver.admit(99)
    await pc.close()
