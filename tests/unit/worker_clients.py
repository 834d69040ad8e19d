"""Helpers (no tests): client aiortc peers that play a LiveKit SDK against a MediaWorker."""

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiortc import RTCConfiguration, RTCDataChannel, RTCPeerConnection, RTCSessionDescription
from livekit.protocol import models

from actors.media.peer import PUBLISHER

TIMEOUT = 10.0

Call = Callable[..., Awaitable[Any]]  # worker method: in-process bound method or a Ray `.remote` wrapper


async def wait_open(channel: RTCDataChannel) -> None:
    if channel.readyState == "open":
        return
    opened = asyncio.Event()
    channel.on("open", opened.set)
    await asyncio.wait_for(opened.wait(), TIMEOUT)


@dataclass
class Subscriber:
    pc: RTCPeerConnection
    inbox: dict[str, asyncio.Queue[bytes]] = field(
        default_factory=lambda: {"_reliable": asyncio.Queue(), "_lossy": asyncio.Queue()}
    )

    async def next(self, label: str = "_reliable") -> models.DataPacket:
        return models.DataPacket.FromString(await asyncio.wait_for(self.inbox[label].get(), TIMEOUT))


async def subscribe(offer: Call, answer: Call, sid: str) -> Subscriber:
    """Answer the worker's subscriber offer; returns once both server-created channels are open."""
    sub = Subscriber(RTCPeerConnection(RTCConfiguration(iceServers=[])))
    channels: list[RTCDataChannel] = []
    both = asyncio.Event()

    @sub.pc.on("datachannel")
    def on_channel(channel: RTCDataChannel) -> None:
        channels.append(channel)
        channel.on("message", lambda message: sub.inbox[channel.label].put_nowait(message))
        if len(channels) == 2:
            both.set()

    await sub.pc.setRemoteDescription(RTCSessionDescription(await offer(sid), "offer"))
    await sub.pc.setLocalDescription(await sub.pc.createAnswer())
    await answer(sid, sub.pc.localDescription.sdp)
    await asyncio.wait_for(both.wait(), TIMEOUT)
    for channel in channels:
        await wait_open(channel)
    return sub


@dataclass
class Publisher:
    pc: RTCPeerConnection
    channels: dict[str, RTCDataChannel]

    def send(self, packet: models.DataPacket, label: str = "_reliable") -> None:
        self.channels[label].send(packet.SerializeToString())


async def publish(offer: Call, add_candidate: Call, sid: str) -> Publisher:
    """Offer a publisher PC with LiveKit's channels, trickling its candidates BEFORE the offer is sent."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    channels = {
        "_reliable": pc.createDataChannel("_reliable", ordered=True),
        "_lossy": pc.createDataChannel("_lossy", ordered=False, maxRetransmits=0),
        "_data_track": pc.createDataChannel("_data_track"),
    }
    await pc.setLocalDescription(await pc.createOffer())
    lines = pc.localDescription.sdp.splitlines()
    candidates = [line[2:] for line in lines if line.startswith("a=candidate:")]
    assert candidates
    for candidate in candidates:
        await add_candidate(
            sid, PUBLISHER, json.dumps({"candidate": candidate, "sdpMid": "0", "sdpMLineIndex": 0})
        )
    await add_candidate(sid, PUBLISHER, json.dumps({"candidate": "", "sdpMid": "0"}))
    stripped = [line for line in lines if not line.startswith(("a=candidate:", "a=end-of-candidates"))]
    answer = (await offer(sid, "\r\n".join(stripped) + "\r\n", {})).sdp
    await pc.setRemoteDescription(RTCSessionDescription(answer, "answer"))
    for channel in channels.values():
        await wait_open(channel)
    return Publisher(pc, channels)


def chat(text: str, sequence: int = 0, **user: Any) -> models.DataPacket:
    return models.DataPacket(
        kind=models.DataPacket.RELIABLE,
        participant_identity="forged",
        sequence=sequence,
        user=models.UserPacket(participant_identity="forged", payload=text.encode(), topic="chat", **user),
    )
