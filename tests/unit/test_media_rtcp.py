"""RTCP and bandwidth through a MediaWorker, in-process on 127.0.0.1 with aiortc peers: NACK/retransmission
upstream and downstream (loss simulated before SRTP unprotect), keyframe-request rate limiting, sender reports
of the forwarded stream, and the REMB policy seen by the publisher."""

import asyncio
import itertools
from typing import Any

from aiortc import RTCSessionDescription
from aiortc.rtp import (
    RTCP_PSFB_APP,
    RTCP_PSFB_FIR,
    RTCP_PSFB_PLI,
    RtcpPsfbPacket,
    RtcpSrPacket,
    pack_remb_fci,
    unpack_remb_fci,
)

from actors.media.rtcp import KEYFRAME_INTERVAL, REMB_FLOOR
from tests.polling import wait_for
from tests.unit.media_peers import (
    Client,
    Loss,
    ice_connection,
    missing_frames,
    new_pc,
    start_room,
    worker_pc,
)


def on_rtcp(target: Any, seen: list[tuple[float, Any]]) -> None:
    """Record every RTCP packet `target` (an aiortc sender or receiver) handles, then handle it."""
    original = target._handle_rtcp_packet
    loop = asyncio.get_running_loop()

    async def handle(packet: Any) -> None:
        seen.append((loop.time(), packet))
        await original(packet)

    target._handle_rtcp_packet = handle


def is_keyframe_request(packet: Any) -> bool:
    return isinstance(packet, RtcpPsfbPacket) and packet.fmt in (RTCP_PSFB_PLI, RTCP_PSFB_FIR)


def remb_of(packet: Any) -> tuple[int, list[int]] | None:
    if isinstance(packet, RtcpPsfbPacket) and packet.fmt == RTCP_PSFB_APP:
        bitrate, ssrcs = unpack_remb_fci(packet.fci)
        return bitrate, list(ssrcs)
    return None


async def test_upstream_loss_is_nacked_and_recovered() -> None:
    room = await start_room("media:test/loss-up", ["PA_bob"])
    try:
        bob = room.subs["PA_bob"]
        receiver = room.plane.published[room.publisher.video_sid].receiver
        video_ssrc = room.publisher.sender("video")._ssrc
        before = dict(receiver.counters)
        loss = Loss(ice_connection(worker_pc(room.worker, "PA_alice", publisher=True)), video_ssrc, every=12)
        first = len(bob.pts)
        await wait_for(lambda: loss.dropped >= 8, what="8 publisher packets lost")
        loss.stop()
        await asyncio.sleep(0.5)
        nacks = receiver.counters["nacks_sent"] - before.get("nacks_sent", 0)
        recovered = receiver.counters["rtx_in"] - before.get("rtx_in", 0)
        assert nacks >= loss.dropped
        assert recovered >= loss.dropped  # the publisher resent every lost packet (as RTX)
        assert not receiver._nacks[video_ssrc].missing
        window = bob.pts[first:]
        assert len(window) > 30
        assert missing_frames(window) == 0  # the subscriber decoded every frame
    finally:
        await room.close()


async def test_downstream_loss_is_served_from_the_sender_history() -> None:
    room = await start_room("media:test/loss-down", ["PA_bob"])
    try:
        bob = room.subs["PA_bob"]
        down = room.plane.downs[("PA_bob", room.publisher.video_sid)]
        sender = down.sender
        assert sender.rtx_pt is not None  # the subscriber negotiated RTX
        before = dict(sender.counters)
        rtx_before = sender.rtx_seq
        loss = Loss(ice_connection(bob.pc), sender.ssrc, every=12)
        first = len(bob.pts)
        await wait_for(lambda: loss.dropped >= 8, what="8 subscriber packets lost")
        loss.stop()
        await asyncio.sleep(0.5)
        assert sender.counters["nack_received"] - before.get("nack_received", 0) >= 1
        served = sender.counters["nack_served"] - before.get("nack_served", 0)
        assert served >= loss.dropped
        assert (sender.rtx_seq - rtx_before) & 0xFFFF >= loss.dropped  # served as RTX
        window = bob.pts[first:]
        assert len(window) > 30
        assert missing_frames(window) == 0
    finally:
        await room.close()


async def test_pli_storm_reaches_the_publisher_rate_limited() -> None:
    room = await start_room("media:test/pli", ["PA_bob", "PA_carol", "PA_dave"])
    try:
        requests: list[tuple[float, Any]] = []
        on_rtcp(room.publisher.sender("video"), requests)
        downs = [room.plane.downs[(sid, room.publisher.video_sid)] for sid in room.subs]
        storm_seconds = 2.0

        async def storm(client: Client, ssrc: int) -> None:
            receiver = client.receiver("video")
            loop = asyncio.get_running_loop()
            end = loop.time() + storm_seconds
            while loop.time() < end:
                await receiver._send_rtcp_pli(ssrc)
                await asyncio.sleep(0.01)

        await asyncio.sleep(KEYFRAME_INTERVAL)
        start = asyncio.get_running_loop().time()
        pairs = zip(room.subs.values(), downs, strict=True)
        await asyncio.gather(*(storm(client, down.sender.ssrc) for client, down in pairs))
        await asyncio.sleep(KEYFRAME_INTERVAL)
        for down in downs:
            assert down.sender.counters["pli_received"] >= 50  # the storm reached the worker
        times = [t for t, p in requests if is_keyframe_request(p) and t >= start]
        assert len(times) >= 3  # relayed ...
        assert len(times) <= storm_seconds / KEYFRAME_INTERVAL + 2  # ... but rate-limited
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert min(gaps) >= KEYFRAME_INTERVAL - 0.05, gaps
        frames = {sid: len(c.frames) for sid, c in room.subs.items()}
        await wait_for(lambda: all(len(c.frames) > frames[s] + 10 for s, c in room.subs.items()))
    finally:
        await room.close()


async def test_subscriber_gets_consistent_sender_reports() -> None:
    room = await start_room("media:test/sr", [])
    worker, publisher = room.worker, room.publisher
    try:
        await worker.add_participant("r", "PA_bob", "PA_bob")
        bob = Client("PA_bob", new_pc())
        room.subs["PA_bob"] = bob
        bob.pc.on("track", bob.on_track)
        for track_sid in (publisher.video_sid, publisher.audio_sid):
            await worker.subscribe("PA_bob", track_sid, publisher.sid)
        offer = await worker.subscriber_offer("PA_bob")
        await bob.pc.setRemoteDescription(RTCSessionDescription(offer, "offer"))
        # Count what each receiver gets from the first packet on, and note it at every sender report.
        received: dict[int, list[int]] = {}  # ssrc -> [packets, payload octets, last timestamp]
        reports: list[tuple[RtcpSrPacket, list[int]]] = []
        for transceiver in bob.pc.getTransceivers():
            if transceiver.kind not in ("audio", "video"):
                continue
            receiver = transceiver.receiver
            handle_rtp, handle_rtcp = receiver._handle_rtp_packet, receiver._handle_rtcp_packet

            async def on_rtp(packet: Any, arrival_time_ms: int, original: Any = handle_rtp) -> None:
                if packet.payload_type in (96, 111) or len(packet.payload) > 2:
                    count = received.setdefault(packet.ssrc, [0, 0, 0])
                    count[0] += 1
                    count[1] += len(packet.payload)
                    count[2] = packet.timestamp
                await original(packet, arrival_time_ms=arrival_time_ms)

            async def on_rtcp_packet(packet: Any, original: Any = handle_rtcp) -> None:
                if isinstance(packet, RtcpSrPacket):
                    reports.append((packet, list(received.get(packet.ssrc, [0, 0, 0]))))
                await original(packet)

            receiver._handle_rtp_packet = on_rtp
            receiver._handle_rtcp_packet = on_rtcp_packet
        await bob.pc.setLocalDescription(await bob.pc.createAnswer())
        await worker.subscriber_answer("PA_bob", bob.pc.localDescription.sdp)
        video = room.plane.downs[("PA_bob", publisher.video_sid)].sender
        audio = room.plane.downs[("PA_bob", publisher.audio_sid)].sender
        clock = {video.ssrc: 90000, audio.ssrc: 48000}

        def reports_of(ssrc: int) -> list[tuple[RtcpSrPacket, list[int]]]:
            return [(sr, count) for sr, count in reports if sr.ssrc == ssrc and count[0]]

        await wait_for(
            lambda: all(len(reports_of(s)) >= 3 for s in clock), timeout=12, what="3 SRs per stream"
        )
        for ssrc, rate in clock.items():
            mine = reports_of(ssrc)
            for sr, (packets, octets, last_ts) in mine:
                info = sr.sender_info
                assert info.packet_count == packets
                assert info.octet_count == octets
                assert info.rtp_timestamp == last_ts  # the (NTP, RTP) pair of the last packet sent
            for (a, _), (b, _) in itertools.pairwise(mine):
                ntp = (b.sender_info.ntp_timestamp - a.sender_info.ntp_timestamp) / (1 << 32)
                media = ((b.sender_info.rtp_timestamp - a.sender_info.rtp_timestamp) & 0xFFFFFFFF) / rate
                assert ntp > 0 and abs(media - ntp) < 0.15, (ssrc, ntp, media)
    finally:
        await room.close()


async def test_publisher_gets_the_remb_policy_value() -> None:
    room = await start_room("media:test/remb", [])
    worker = room.worker
    try:
        ceiling = 1_200_000  # exactly representable in REMB (18-bit mantissa)
        room.plane.remb_ceiling = ceiling
        rembs: list[tuple[int, list[int]]] = []
        sender = room.publisher.sender("video")
        seen: list[tuple[float, Any]] = []
        on_rtcp(sender, seen)

        def latest() -> int | None:
            values = [r for _, p in seen if (r := remb_of(p)) is not None]
            rembs[:] = values
            return values[-1][0] if values else None

        await wait_for(lambda: latest() == ceiling, timeout=5, what="REMB at the ceiling")
        assert rembs[-1][1] == [sender._ssrc]

        async def subscriber(sid: str, estimate: int) -> Client:
            """A subscriber whose receiver always estimates `estimate` bit/s (aiortc's own REMB rewritten)."""
            await worker.add_participant("r", sid, sid)
            client = Client(sid, new_pc())
            room.subs[sid] = client
            client.pc.on("track", client.on_track)
            await worker.subscribe(sid, room.publisher.video_sid, room.publisher.sid)
            offer = await worker.subscriber_offer(sid)
            await client.pc.setRemoteDescription(RTCSessionDescription(offer, "offer"))
            receiver = client.pc.getTransceivers()[-1].receiver
            send = receiver._send_rtcp

            async def send_rtcp(packet: Any) -> None:
                remb = remb_of(packet)
                if remb is not None:
                    fci = pack_remb_fci(estimate, remb[1])
                    packet = RtcpPsfbPacket(fmt=RTCP_PSFB_APP, ssrc=packet.ssrc, media_ssrc=0, fci=fci)
                await send(packet)

            receiver._send_rtcp = send_rtcp
            await client.pc.setLocalDescription(await client.pc.createAnswer())
            await worker.subscriber_answer(sid, client.pc.localDescription.sdp)
            down = room.plane.downs[(sid, room.publisher.video_sid)]
            await wait_for(lambda: down.sender.remb_bps == estimate, what=f"{sid}'s REMB at the worker")
            return client

        await subscriber("PA_bob", 700_000)
        await wait_for(lambda: latest() == 700_000, timeout=5, what="REMB lowered to bob's estimate")
        await subscriber("PA_carol", 40_000)
        await wait_for(lambda: latest() == REMB_FLOOR, timeout=5, what="REMB at the floor")
        latest()
        # Only the policy's values ever reached the publisher, never aiortc's own estimate.
        assert {bitrate for bitrate, _ in rembs} <= {ceiling, 700_000, REMB_FLOOR}
    finally:
        await room.close()
