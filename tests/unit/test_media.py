"""MediaWorker's RTP plane in-process (no Ray): a real aiortc publisher sends VP8 + Opus on 127.0.0.1, aiortc
subscribers decode what the worker forwards (raw passthrough, per-subscriber rewrite)."""

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCPeerConnection,
    RTCSessionDescription,
    VideoStreamTrack,
)
from aiortc.mediastreams import AudioStreamTrack
from av import VideoFrame

from actors.settings import MediaSettings
from actors.worker import MediaWorker

NAME = "media:test/media"
COLOURS = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]
TIMEOUT = 10.0


class ColourTrack(VideoStreamTrack):
    """320x240 frames of one solid colour, switching colour every 10 frames."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    async def recv(self) -> VideoFrame:
        pts, time_base = await self.next_timestamp()
        rgb = COLOURS[(self.count // 10) % len(COLOURS)]
        self.count += 1
        image = np.zeros((240, 320, 3), dtype=np.uint8)
        image[:, :] = rgb
        frame = VideoFrame.from_ndarray(image, format="rgb24")
        frame.pts, frame.time_base = pts, time_base
        return frame


def dominant(frame: VideoFrame) -> int | None:
    """Index in COLOURS of the frame's colour, None if it is no clear primary colour."""
    mean = frame.to_ndarray(format="rgb24").reshape(-1, 3).mean(axis=0)
    index = int(np.argmax(mean))
    return index if mean[index] > 150 and sorted(mean)[1] < 80 else None


@dataclass
class Client:
    sid: str
    pc: RTCPeerConnection
    frames: list[int | None] = field(default_factory=list)
    audio_frames: int = 0
    tasks: list["asyncio.Task[None]"] = field(default_factory=list)

    def on_track(self, track: MediaStreamTrack) -> None:
        self.tasks.append(asyncio.ensure_future(self._consume(track)))

    async def _consume(self, track: MediaStreamTrack) -> None:
        try:
            while True:
                frame = await track.recv()
                if track.kind == "video":
                    assert isinstance(frame, VideoFrame)
                    self.frames.append(dominant(frame))
                else:
                    self.audio_frames += 1
        except Exception:
            return


@dataclass
class Setup:
    worker: MediaWorker
    publisher: RTCPeerConnection
    video_sid: str
    audio_sid: str
    subs: dict[str, Client]


def new_pc() -> RTCPeerConnection:
    return RTCPeerConnection(RTCConfiguration(iceServers=[]))


async def negotiate(worker: MediaWorker, client: Client) -> None:
    offer = await worker.subscriber_offer(client.sid)
    await client.pc.setRemoteDescription(RTCSessionDescription(offer, "offer"))
    await client.pc.setLocalDescription(await client.pc.createAnswer())
    await worker.subscriber_answer(client.sid, client.pc.localDescription.sdp)


async def until(predicate: Any, limit: float = TIMEOUT) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while not predicate():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def new_subscriber(worker: MediaWorker, sid: str, tracks: list[str]) -> Client:
    await worker.add_participant("r", sid, sid)
    client = Client(sid, new_pc())
    client.pc.on("track", client.on_track)
    for track_sid in tracks:
        await worker.subscribe(sid, track_sid, "PA_alice")
    await negotiate(worker, client)
    return client


def track_stats(stats: dict[str, Any], track_sid: str) -> dict[str, Any]:
    result: dict[str, Any] = stats["tracks"][track_sid]
    return result


@pytest.fixture(scope="module")
async def setup() -> AsyncIterator[Setup]:
    worker = MediaWorker(NAME, MediaSettings(ice_addresses=("127.0.0.1",)))
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
        await until(lambda c=client: {0, 1, 2} <= set(c.frames) and c.audio_frames > 20)
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
    await until(lambda: len(bob.frames) > 5)
    await worker.set_track_muted(setup.video_sid, True)
    await asyncio.sleep(0.3)
    before = track_stats(await worker.media_stats(), setup.video_sid)["subscribers"]["PA_bob"]["packets_out"]
    await asyncio.sleep(0.7)
    during = track_stats(await worker.media_stats(), setup.video_sid)["subscribers"]["PA_bob"]["packets_out"]
    assert during == before
    frames = len(bob.frames)
    await worker.set_track_muted(setup.video_sid, False)
    await until(lambda: len(bob.frames) > frames + 10)


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

    await until(resumed)
    after = track_stats(await worker.media_stats(), setup.video_sid)["subscribers"]["PA_carol"]
    # A new m-line (the SDK would not report the old one again), so a new SSRC: its numbering starts afresh.
    assert after["ssrc"] != old.sender.ssrc
    sdp = carol.pc.remoteDescription.sdp
    assert sdp.count(f"msid:PA_alice|{setup.video_sid} ") == 1  # the idle m-line no longer names the track
    await until(lambda: len(carol.frames) > frames + 5)


async def test_late_subscriber_gets_a_keyframe_quickly(setup: Setup) -> None:
    worker = setup.worker
    dave = await new_subscriber(worker, "PA_dave", [setup.video_sid])
    try:
        loop = asyncio.get_running_loop()
        start = loop.time()
        await until(lambda: len(dave.frames) > 0, limit=5)
        assert loop.time() - start < 3.0
    finally:
        for task in dave.tasks:
            task.cancel()
        await dave.pc.close()
        await worker.remove_participant("PA_dave")


async def test_stop_track_drops_everything(setup: Setup) -> None:
    worker = setup.worker
    await worker.stop_track(setup.audio_sid)
    await worker.stop_track(setup.audio_sid)  # idempotent
    stats = await worker.media_stats()
    assert setup.audio_sid not in stats["tracks"]
    assert setup.video_sid in stats["tracks"]
