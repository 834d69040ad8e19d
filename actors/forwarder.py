"""The TrackForwarder actor: one published track's control state.

It owns who subscribes, the track's mute state, and which MediaWorkers need a copy: the publisher's worker
forwards to its local subscribers itself and relays one copy to every other worker that has subscribers.
The RTP itself never passes through this actor. The Room numbers its commands (async actors reorder calls).
"""

# Annotations stay strings: Ray pickles actor classes by value, and protobuf enum types do not pickle.
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import ray
from livekit.protocol import models
from ray.actor import ActorHandle

from actors import logs
from actors.errors import RaysfuError, unwrap
from actors.inbox import SequencedInbox
from actors.naming import NAMESPACE
from actors.placement import actor_options, node_of_worker

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Subscribe:
    sub_sid: str
    participant: ActorHandle[Any]
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
    participant: ActorHandle[Any]
    worker: str


class TrackForwarder:
    def __init__(self, room: str, info: models.TrackInfo, publisher_sid: str, publisher_worker: str) -> None:
        logs.configure()
        self._room = room
        self._info = info
        self._publisher_sid = publisher_sid
        self._publisher_worker = publisher_worker
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
            await _worker(self._publisher_worker).set_track_muted.remote(self._info.sid, command.muted)
            for worker in self._relays:  # their copies restart on a keyframe when unmuted
                await _quietly(_worker(worker).set_track_muted.remote(self._info.sid, command.muted))
            log.info("%s: %s", self, "muted" if command.muted else "unmuted")
        else:
            await self._close()

    async def _subscribe(self, command: Subscribe) -> None:
        if command.sub_sid in self._subscribers:
            return
        if command.worker != self._publisher_worker and command.worker not in self._relays:
            try:
                await self._start_relay(command.worker)
            except (RaysfuError, ray.exceptions.RayError) as exc:
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
            await command.participant.subscribe_track.remote(self._info, self._publisher_sid)
        except ray.exceptions.RayActorError:
            await self._unsubscribe(command.sub_sid, notify=False)

    async def _start_relay(self, worker: str) -> None:
        """Have the publisher's worker send one copy of the track to `worker`."""
        source_worker = _worker(self._publisher_worker)
        source = await source_worker.relay_source.remote(self._info.sid)
        address = await _worker(worker).expect_relay.remote(
            self._info.sid,
            self._publisher_sid,
            "audio" if self._info.type == models.TrackType.AUDIO else "video",
            self._publisher_worker,
            [layer.rid for layer in self._info.layers if layer.rid],
            source,
        )
        if self._info.muted:
            await _worker(worker).set_track_muted.remote(self._info.sid, True)
        await source_worker.add_relay.remote(self._info.sid, worker, address)
        self._relays.add(worker)
        log.info("%s: relaying to %s", self, worker)

    async def _unsubscribe(self, sub_sid: str, notify: bool) -> None:
        sub = self._subscribers.pop(sub_sid, None)
        if sub is None:
            return
        log.info("%s: %s unsubscribes", self, sub_sid)
        if notify:
            try:
                await sub.participant.unsubscribe_track.remote(self._info.sid)
            except ray.exceptions.RayActorError:
                pass
        else:
            await _quietly(_worker(sub.worker).unsubscribe.remote(sub_sid, self._info.sid))
        if sub.worker in self._relays and not any(s.worker == sub.worker for s in self._subscribers.values()):
            self._relays.discard(sub.worker)
            await _quietly(_worker(self._publisher_worker).remove_relay.remote(self._info.sid, sub.worker))
            await _quietly(_worker(sub.worker).stop_track.remote(self._info.sid))
            log.info("%s: stopped relaying to %s", self, sub.worker)

    async def _close(self) -> None:
        for sub_sid in list(self._subscribers):
            await self._unsubscribe(sub_sid, notify=True)
        await _quietly(_worker(self._publisher_worker).stop_track.remote(self._info.sid))
        self._closed = True
        log.info("%s: closed", self)


async def _quietly(call: Any) -> None:
    """Await a clean-up call whose target may be gone already (a session or actor that ended)."""
    try:
        await call
    except (RaysfuError, ray.exceptions.RayError) as exc:
        log.info("clean-up call failed: %s", unwrap(exc))


def _worker(name: str) -> ActorHandle[Any]:
    return ray.get_actor(name, namespace=NAMESPACE)


TrackForwarderActor = ray.remote(TrackForwarder)


def create_forwarder(
    name: str, room: str, info: models.TrackInfo, publisher_sid: str, publisher_worker: str
) -> ActorHandle[Any]:
    """A TrackForwarder on the node of the publisher's media worker."""
    options = actor_options(name, node_of_worker(publisher_worker), max_concurrency=100)
    return TrackForwarderActor.options(**options).remote(  # type: ignore[return-value]
        room, info, publisher_sid, publisher_worker
    )
