"""The gateway's traffic with each media worker that hosts its sessions, multiplexed per gateway-host pair.

Up: the clients' signalling, batched per host (whatever arrives while a call is in flight goes in the next
one). Down: one long-poll per host drains that host's outbox for this gateway, for all its sessions at once
(actors.outbox). A host that dies fails its poll: every session on it is told at once.
"""

import asyncio
import logging
import os
import secrets
from dataclasses import dataclass, field
from typing import Protocol

from livekit.protocol import rtc

from actors.errors import ActorGone
from actors.hosting import ActorRef, call_worker
from actors.outbox import Batch
from actors.tasks import spawn

log = logging.getLogger(__name__)

POLL_TIMEOUT = 10.0  # seconds a poll waits for a message (hosts end sessions of gateways silent for 30 s)
RETRY_DELAY = 0.5  # after a poll that failed for another reason than the host's death


class Receiver(Protocol):
    """A session, as the links see it."""

    def deliver(self, data: bytes | None) -> None:
        """A message for the client, in order; None: the session ended, close the socket."""

    def host_lost(self) -> None:
        """The host of the session's Participant died."""


@dataclass
class _Uplink:
    pending: list[tuple[str, str, int, rtc.SignalRequest]] = field(default_factory=list)
    labels: set[str] = field(default_factory=set)
    flushing: bool = False


class HostLinks:
    def __init__(self, node: str) -> None:
        self.node = node
        self.gateway = f"gateway:{node}/{os.getpid()}-{secrets.token_hex(3)}"
        # Keyed by the WebSocket's key: the participant's sid for its first, another for each resume.
        self._receivers: dict[str, Receiver] = {}
        self._hosts: dict[str, str] = {}  # key -> the host of its participant
        self._up: dict[str, _Uplink] = {}
        self._down: dict[str, asyncio.Future[object]] = {}

    def register(self, key: str, receiver: Receiver) -> None:
        """Before the join (or resume): whatever the host has for `key` from then on reaches `receiver`."""
        self._receivers[key] = receiver

    def attach(self, key: str, participant: ActorRef) -> None:
        """The session's Participant is hosted on `participant.host`: poll that host."""
        self._hosts[key] = participant.host
        if participant.host not in self._down:
            self._down[participant.host] = spawn(self._poll(participant.host), f"{self.gateway}: polling")

    def unregister(self, key: str) -> None:
        self._receivers.pop(key, None)
        self._hosts.pop(key, None)

    def signal(self, participant: ActorRef, key: str, seq: int, request: rtc.SignalRequest) -> None:
        up = self._up.setdefault(participant.host, _Uplink())
        up.pending.append((participant.address, key, seq, request))
        up.labels.add(participant.label)
        if not up.flushing:
            up.flushing = True
            spawn(self._flush(participant.host, up), f"{self.gateway}: signalling {participant.host}")

    async def _flush(self, host: str, up: _Uplink) -> None:
        try:
            while up.pending:
                batch, labels = up.pending, up.labels
                up.pending, up.labels = [], set()
                name = f"{next(iter(labels))}.signal" if len(labels) == 1 else f"{host}.signal"
                try:
                    await call_worker(host, "signal", batch, task=name)
                except ActorGone:
                    return  # the poll notices and ends the sessions
        finally:
            up.flushing = False

    async def _poll(self, host: str) -> None:
        epoch, cursor = 0, 0
        while True:
            try:
                batch: Batch = await call_worker(
                    host, "poll", self.gateway, epoch, cursor, POLL_TIMEOUT, task=f"{self.gateway}.poll"
                )
            except ActorGone:
                break
            except Exception as exc:  # a Ray error that is not the host's death: try again
                log.warning("%s: poll of %s failed: %r", self.gateway, host, exc)
                await asyncio.sleep(RETRY_DELAY)
                continue
            epoch, cursor = batch.epoch, batch.cursor
            for key, data in batch.messages:
                receiver = self._receivers.get(key)
                if receiver is not None:
                    receiver.deliver(data)
        log.warning("%s: media worker %s is gone; ending its sessions", self.gateway, host)
        del self._down[host]
        for key in [key for key, h in self._hosts.items() if h == host]:
            receiver = self._receivers.get(key)
            if receiver is not None:
                receiver.host_lost()
