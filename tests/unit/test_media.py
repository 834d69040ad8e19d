"""MediaWorker's RTP plane in-process (no Ray): a real aiortc publisher sends VP8 + Opus on 127.0.0.1, aiortc
subscribers decode what the worker forwards (raw passthrough, per-subscriber rewrite)."""

import asyncio
import gc
import logging
import weakref
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import AudioStreamTrack

from actors.settings import MediaSettings
from actors.worker import MediaWorker
from tests.polling import wait_for
from tests.unit.media_peers import (
    Client,
    ColourTrack,
    negotiate,
    new_pc,
    new_subscriber,
    track_stats,
    worker_pc,
)

NAME = "media:test/media"


@dataclass
class Setup:
    worker: MediaWorker
    publisher: RTCPeerConnection
    video_sid: str
    audio_sid: str
    subs: dict[str, Client]


@pytest.fixture(scope="module")
async def setup() -> AsyncIterator[Setup]:
    worker = MediaWorker(
        NAME, MediaSettings(ice_addresses=("127.0.0.1",), payload_digests=5000), relay_key=bytes(32)
    )
    await worker.add_participant("r", "PA_alice", "alice")
    publisher = new_pc()
    video, audio = ColourTrack(), AudioStreamTrack()
    publisher.addTrack(video)
    publisher.addTrack(audio)
    await publisher.setLocalDescription(await publisher.createOffer())
    answer = await worker.publisher_offer(
        "PA_alice", publisher.localDescription.sdp, {video.id: "TR_video", audio.id: "TR_audio", "x": "TR_x"}
    )
    assert sorted((b.cid, b.track_sid, b.kind, b.mime_type) for b in answer.bound) == sorted(
        [(video.id, "TR_video", "video", "video/VP8"), (audio.id, "TR_audio", "audio", "audio/opus")]
    )
    assert answer.ended == []
    await publisher.setRemoteDescription(RTCSessionDescription(answer.sdp, "answer"))
    subs = {}
    for sid in ("PA_bob", "PA_carol"):
        subs[sid] = await new_subscriber(worker, sid, ["TR_video", "TR_audio"])
    yield Setup(worker, publisher, "TR_video", "TR_audio", subs)
    for client in subs.values():
        for task in client.tasks:
            task.cancel()
        await client.pc.close()
    await publisher.close()
    for sid in ("PA_alice", *subs):
        await worker.remove_participant(sid)


async def test_subscribers_decode_forwarded_media(setup: Setup) -> None:
    for client in setup.subs.values():
        await wait_for(lambda c=client: {0, 1, 2} <= set(c.frames) and c.audio_frames > 20)
    stats = await setup.worker.media_stats()
    for track_sid in (setup.video_sid, setup.audio_sid):
        track = track_stats(stats, track_sid)
        assert track["packets_in"] > 0
        ingress = set(track["digests_in"])
        for sid in setup.subs:
            sub = track["subscribers"][sid]
            assert sub["packets_out"] > 0 and sub["bytes_out"] > 0
            # every forwarded payload is byte-identical to one that arrived
            assert sub["digests_out"] and set(sub["digests_out"]) <= ingress


async def test_mute_stops_bytes_and_unmute_resumes(setup: Setup) -> None:
    worker, bob = setup.worker, setup.subs["PA_bob"]
    await wait_for(lambda: len(bob.frames) > 5)
    await worker.set_track_muted(setup.video_sid, True)
    await asyncio.sleep(0.3)
    before = track_stats(await worker.media_stats(), setup.video_sid)["subscribers"]["PA_bob"]["packets_out"]
    await asyncio.sleep(0.7)
    during = track_stats(await worker.media_stats(), setup.video_sid)["subscribers"]["PA_bob"]["packets_out"]
    assert during == before
    frames = len(bob.frames)
    await worker.set_track_muted(setup.video_sid, False)
    await wait_for(lambda: len(bob.frames) > frames + 10)


async def test_unsubscribe_stops_bytes_and_resubscribe_gets_a_fresh_m_line(setup: Setup) -> None:
    worker, carol = setup.worker, setup.subs["PA_carol"]
    old = worker._media.downs[("PA_carol", setup.video_sid)]
    await worker.unsubscribe("PA_carol", setup.video_sid)
    await negotiate(worker, carol)
    last_seq = old.sender.last_seq
    assert last_seq is not None
    await asyncio.sleep(0.3)
    assert old.sender.last_seq == last_seq  # no bytes after unsubscribe
    assert "PA_carol" not in track_stats(await worker.media_stats(), setup.video_sid)["subscribers"]
    await worker.subscribe("PA_carol", setup.video_sid, "PA_alice")
    await negotiate(worker, carol)
    frames = len(carol.frames)

    def resumed() -> bool:
        subs = track_stats(worker._media.stats(), setup.video_sid)["subscribers"]
        return bool(subs["PA_carol"]["packets_out"])

    await wait_for(resumed)
    after = track_stats(await worker.media_stats(), setup.video_sid)["subscribers"]["PA_carol"]
    # A new m-line (the SDK would not report the old one again), so a new SSRC: its numbering starts afresh.
    assert after["ssrc"] != old.sender.ssrc
    sdp = carol.pc.remoteDescription.sdp
    assert sdp.count(f"msid:PA_alice|{setup.video_sid} ") == 1  # the idle m-line no longer names the track
    await wait_for(lambda: len(carol.frames) > frames + 5)


async def test_late_subscriber_gets_a_keyframe_quickly(setup: Setup) -> None:
    worker = setup.worker
    dave = await new_subscriber(worker, "PA_dave", [setup.video_sid])
    try:
        loop = asyncio.get_running_loop()
        start = loop.time()
        await wait_for(lambda: len(dave.frames) > 0, timeout=5)
        assert loop.time() - start < 3.0
    finally:
        for task in dave.tasks:
            task.cancel()
        await dave.pc.close()
        await worker.remove_participant("PA_dave")


async def test_a_subscriber_that_left_is_not_kept(setup: Setup, caplog: pytest.LogCaptureFixture) -> None:
    """A client closing its PC before its session ends (the SDKs' order on leave) stops the server's
    transceivers first: nothing of that subscriber may stay referenced once it was removed (found by the
    soak: the m-line bookkeeping kept every such PC, with its DTLS and SRTP state, for good)."""
    caplog.set_level(logging.WARNING)  # pytest keeps INFO records, whose arguments would keep the peers
    worker = setup.worker
    dave = await new_subscriber(worker, "PA_dave", [setup.video_sid, setup.audio_sid])
    server_pc = weakref.ref(worker_pc(worker, "PA_dave", publisher=False))
    for task in dave.tasks:
        task.cancel()
    await dave.pc.close()
    await worker_pc(worker, "PA_dave", publisher=False).close()  # what aiortc does once the DTLS is closed
    await worker.remove_participant("PA_dave")

    def released() -> bool:  # once the tasks that watched it have seen it closed
        gc.collect()
        return server_pc() is None

    await wait_for(released, timeout=5)


async def test_stop_track_drops_everything(setup: Setup) -> None:
    worker = setup.worker
    await worker.stop_track(setup.audio_sid)
    await worker.stop_track(setup.audio_sid)  # idempotent
    stats = await worker.media_stats()
    assert setup.audio_sid not in stats["tracks"]
    assert setup.video_sid in stats["tracks"]
