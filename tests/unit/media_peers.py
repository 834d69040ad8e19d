"""aiortc peers for in-process media tests: a colour-cycling publisher and decoding subscribers talking to a
MediaWorker on 127.0.0.1, plus hooks to lose or inspect packets on the way (no Ray).

Loss is simulated BEFORE SRTP unprotect (on the receiving side's ICE connection): dropping after it would
make libsrtp reject the retransmission as a replay (sdk-passthrough-relay.md, pitfall 8).
"""

import asyncio
import itertools
from dataclasses import dataclass, field
from typing import Any

import aioice.ice
import numpy as np
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCPeerConnection,
    RTCSessionDescription,
    VideoStreamTrack,
)
from aiortc.mediastreams import AudioStreamTrack
from aiortc.rtcrtpreceiver import RTCRtpReceiver
from aiortc.rtcrtpsender import RTCRtpSender
from av import VideoFrame

from actors.media.peer import PUBLISHER, SUBSCRIBER
from actors.settings import MediaSettings
from actors.worker import MediaWorker
from tests.polling import wait_for

COLOURS = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]
FRAME_TICKS = 3000  # RTP timestamp step between two frames of a VideoStreamTrack (90 kHz / 30 fps)


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
    pts: list[int] = field(default_factory=list)  # decoded video frames' RTP timestamps (aiortc-mapped)
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
                    self.pts.append(int(frame.pts))
                else:
                    self.audio_frames += 1
        except Exception:
            return

    def receiver(self, kind: str) -> RTCRtpReceiver:
        for transceiver in self.pc.getTransceivers():
            if transceiver.kind == kind and transceiver.receiver.track is not None:
                receiver: RTCRtpReceiver = transceiver.receiver
                return receiver
        raise LookupError(kind)

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await self.pc.close()


@dataclass
class Publisher:
    sid: str
    pc: RTCPeerConnection
    video_sid: str
    audio_sid: str

    def sender(self, kind: str) -> RTCRtpSender:
        for transceiver in self.pc.getTransceivers():
            if transceiver.kind == kind:
                sender: RTCRtpSender = transceiver.sender
                return sender
        raise LookupError(kind)


def new_pc() -> RTCPeerConnection:
    return RTCPeerConnection(RTCConfiguration(iceServers=[]))


async def negotiate(worker: MediaWorker, client: Client) -> None:
    offer = await worker.subscriber_offer(client.sid)
    await client.pc.setRemoteDescription(RTCSessionDescription(offer, "offer"))
    await client.pc.setLocalDescription(await client.pc.createAnswer())
    await worker.subscriber_answer(client.sid, client.pc.localDescription.sdp)


async def new_subscriber(
    worker: MediaWorker, sid: str, tracks: list[str], publisher_sid: str = "PA_alice", room: str = "r"
) -> Client:
    await worker.add_participant(room, sid, sid)
    client = Client(sid, new_pc())
    client.pc.on("track", client.on_track)
    for track_sid in tracks:
        await worker.subscribe(sid, track_sid, publisher_sid)
    await negotiate(worker, client)
    return client


async def new_publisher(worker: MediaWorker, sid: str = "PA_alice", room: str = "r") -> Publisher:
    """An aiortc publisher of a ColourTrack (track sid TR_<sid>_v) and a silent audio track (TR_<sid>_a)."""
    await worker.add_participant(room, sid, sid)
    pc = new_pc()
    video, audio = ColourTrack(), AudioStreamTrack()
    pc.addTrack(video)
    pc.addTrack(audio)
    await pc.setLocalDescription(await pc.createOffer())
    video_sid, audio_sid = f"TR_{sid}_v", f"TR_{sid}_a"
    answer = await worker.publisher_offer(
        sid, pc.localDescription.sdp, {video.id: video_sid, audio.id: audio_sid}
    )
    assert {b.track_sid for b in answer.bound} == {video_sid, audio_sid}
    await pc.setRemoteDescription(RTCSessionDescription(answer.sdp, "answer"))
    return Publisher(sid, pc, video_sid, audio_sid)


def track_stats(stats: dict[str, Any], track_sid: str) -> dict[str, Any]:
    result: dict[str, Any] = stats["tracks"][track_sid]
    return result


# ----- the packet path -----------------------------------------------------------------------------------


def ice_connection(pc: RTCPeerConnection) -> Any:
    """The (bundled) aioice Connection of an aiortc peer connection."""
    return pc.getTransceivers()[0].receiver.transport.transport._connection


async def connected_ice_pair() -> tuple[aioice.ice.Connection, aioice.ice.Connection]:
    """Two aioice connections (on the host addresses aioice is given), connected to each other; the first
    controlling. Consent checks start on connect."""
    a = aioice.ice.Connection(ice_controlling=True, use_ipv6=False)
    b = aioice.ice.Connection(ice_controlling=False, use_ipv6=False)
    await asyncio.gather(a.gather_candidates(), b.gather_candidates())
    for here, there in ((a, b), (b, a)):
        here.remote_username, here.remote_password = there.local_username, there.local_password
        for candidate in there.local_candidates:
            await here.add_remote_candidate(candidate)
        await here.add_remote_candidate(None)
    await asyncio.gather(a.connect(), b.connect())
    return a, b


def worker_pc(worker: MediaWorker, sid: str, publisher: bool) -> RTCPeerConnection:
    pc: RTCPeerConnection = worker._peers[sid]._pcs[PUBLISHER if publisher else SUBSCRIBER]
    return pc


def srtp_ssrc(data: bytes) -> int | None:
    """The SSRC of an SRTP (not SRTCP) datagram: the RTP header stays in clear text."""
    if len(data) < 12 or not 128 <= data[0] < 192 or 192 <= data[1] <= 223:
        return None
    return int.from_bytes(data[8:12], "big")


class Loss:
    """Drops every `every`-th SRTP packet of one SSRC arriving on an ICE connection, before SRTP unprotect."""

    def __init__(self, connection: Any, ssrc: int, every: int) -> None:
        self.ssrc = ssrc
        self.every = every
        self.seen = 0
        self.dropped = 0
        self._connection = connection
        self._original = connection.data_received
        connection.data_received = self._data_received

    def _data_received(self, data: bytes, component: int) -> None:
        if srtp_ssrc(data) == self.ssrc:
            self.seen += 1
            if self.seen % self.every == 0:
                self.dropped += 1
                return
        self._original(data, component)

    def stop(self) -> None:
        del self._connection.data_received  # back to the class's (bounded) data_received


def missing_frames(pts: list[int]) -> int:
    """Frames absent from a run of decoded RTP timestamps of a 30 fps VideoStreamTrack."""
    return sum(max(0, (b - a) // FRAME_TICKS - 1) for a, b in itertools.pairwise(pts))


@dataclass
class Room:
    worker: MediaWorker
    publisher: Publisher
    subs: dict[str, Client]

    @property
    def plane(self) -> Any:
        return self.worker._media

    async def close(self) -> None:
        for client in self.subs.values():
            await client.close()
        await self.publisher.pc.close()
        for sid in list(self.worker._peers):
            await self.worker.remove_participant(sid)
        await self.plane.close()


async def start_room(name: str, sub_sids: list[str], video_only: bool = True) -> Room:
    """A worker with publisher PA_alice (room "r") and subscribers that are decoding video already."""
    worker = MediaWorker(
        name, MediaSettings(ice_addresses=("127.0.0.1",), payload_digests=5000), relay_key=bytes(32)
    )
    publisher = await new_publisher(worker)
    tracks = [publisher.video_sid] if video_only else [publisher.video_sid, publisher.audio_sid]
    subs = {sid: await new_subscriber(worker, sid, tracks) for sid in sub_sids}
    for client in subs.values():
        await wait_for(lambda c=client: len(c.frames) > 3, what=f"{client.sid} decoding")
    return Room(worker, publisher, subs)
