"""The TrackForwarder: one published track's control state, hosted by its publisher's MediaWorker, beside
the track's packets.

It owns who subscribes, the track's mute state, and which MediaWorkers need a copy: the publisher's worker
forwards to its local subscribers itself and relays one copy to every other worker that has subscribers.
The RTP itself never passes through this actor. The Room numbers its commands (messages from another
process arrive out of order).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from livekit.protocol import models

from actors.errors import ActorGone, RaysfuError, unwrap
from actors.hosting import ActorRef, call_worker
from actors.inbox import SequencedInbox
from actors.naming import track_label

if TYPE_CHECKING:
    from actors.worker import MediaWorker

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Subscribe:
    sub_sid: str
    participant: ActorRef
    worker: str


@dataclass(frozen=True)
class Unsubscribe:
    sub_sid: str
    notify: bool  # False when the subscriber's session is already gone


@dataclass(frozen=True)
class SetMuted:
    muted: bool


@dataclass(frozen=True)
class Close:
    pass


Command = Subscribe | Unsubscribe | SetMuted | Close


@dataclass
class _Subscriber:
    participant: ActorRef
    worker: str


class TrackForwarder:
    def __init__(self, host: MediaWorker, room: str, info: models.TrackInfo, publisher_sid: str) -> None:
        self._host = host
        self._room = room
        self._info = info
        self._publisher_sid = publisher_sid
        self._publisher_worker = host.name
        self.ref = ActorRef(host.name, info.sid, track_label(room, info.sid))
        self._subscribers: dict[str, _Subscriber] = {}
        self._relays: set[str] = set()  # receiving workers that get one copy from the publisher's worker
        self._closed = False
        self._commands: SequencedInbox[Command] = SequencedInbox(self._apply, f"{self}:commands")

    def __repr__(self) -> str:
        return f"TrackForwarder({self._room}/{self._info.sid})"

    async def command(self, seq: int, command: Command) -> None:
        await self._commands.put(seq, command)

    async def state(self) -> dict[str, Any]:
        return {
            "track_sid": self._info.sid,
            "muted": self._info.muted,
            "publisher": self._publisher_sid,
            "publisher_worker": self._publisher_worker,
            "subscribers": {sid: s.worker for sid, s in self._subscribers.items()},
            "relays": sorted(self._relays),
        }

    async def _apply(self, command: Command) -> None:
        if self._closed:
            return
        if isinstance(command, Subscribe):
            await self._subscribe(command)
        elif isinstance(command, Unsubscribe):
            await self._unsubscribe(command.sub_sid, command.notify)
        elif isinstance(command, SetMuted):
            self._info.muted = command.muted
            await self._host.set_track_muted(self._info.sid, command.muted)
            for worker in self._relays:  # their copies restart on a keyframe when unmuted
                await _quietly(self._worker(worker, "set_track_muted", self._info.sid, command.muted))
            log.info("%s: %s", self, "muted" if command.muted else "unmuted")
        else:
            await self._close()

    async def _subscribe(self, command: Subscribe) -> None:
        if command.sub_sid in self._subscribers:
            return
        if command.worker != self._publisher_worker and command.worker not in self._relays:
            try:
                await self._start_relay(command.worker)
            except RaysfuError as exc:
                log.warning(
                    "%s: cannot relay to %s, %s not subscribed: %s",
                    self,
                    command.worker,
                    command.sub_sid,
                    unwrap(exc),
                )
                return
        self._subscribers[command.sub_sid] = _Subscriber(command.participant, command.worker)
        log.info("%s: %s subscribes on %s", self, command.sub_sid, command.worker)
        try:
            await command.participant.call("subscribe_track", self._info, self._publisher_sid)
        except ActorGone:
            await self._unsubscribe(command.sub_sid, notify=False)

    async def _start_relay(self, worker: str) -> None:
        """Have the publisher's worker send one copy of the track to `worker`."""
        source = await self._host.relay_source(self._info.sid)
        address = await self._worker(
            worker,
            "expect_relay",
            self._info.sid,
            self._publisher_sid,
            "audio" if self._info.type == models.TrackType.AUDIO else "video",
            self._publisher_worker,
            [layer.rid for layer in self._info.layers if layer.rid],
            source,
        )
        if self._info.muted:
            await self._worker(worker, "set_track_muted", self._info.sid, True)
        await self._host.add_relay(self._info.sid, worker, address)
        self._relays.add(worker)
        log.info("%s: relaying to %s", self, worker)

    async def _unsubscribe(self, sub_sid: str, notify: bool) -> None:
        sub = self._subscribers.pop(sub_sid, None)
        if sub is None:
            return
        log.info("%s: %s unsubscribes", self, sub_sid)
        if notify:
            try:
                await sub.participant.call("unsubscribe_track", self._info.sid)
            except ActorGone:
                pass
        else:
            await _quietly(self._worker(sub.worker, "unsubscribe", sub_sid, self._info.sid))
        if sub.worker in self._relays and not any(s.worker == sub.worker for s in self._subscribers.values()):
            self._relays.discard(sub.worker)
            await self._host.remove_relay(self._info.sid, sub.worker)
            await _quietly(self._worker(sub.worker, "stop_track", self._info.sid))
            log.info("%s: stopped relaying to %s", self, sub.worker)

    async def _close(self) -> None:
        for sub_sid in list(self._subscribers):
            await self._unsubscribe(sub_sid, notify=True)
        await self._host.stop_track(self._info.sid)
        self._closed = True
        self._host.remove(self._info.sid)
        log.info("%s: closed", self)

    def _worker(self, worker: str, method: str, *args: Any) -> Awaitable[Any]:
        """A call to a media worker's own method (this one's, or a relay's), named after this track."""
        return call_worker(worker, method, *args, task=f"{self.ref}.{method}")


async def _quietly(call: Awaitable[Any]) -> None:
    """Await a clean-up call whose target may be gone already (a session or a worker that ended)."""
    try:
        await call
    except RaysfuError as exc:
        log.info("clean-up call failed: %s", unwrap(exc))
