"""The TrackForwarder: one published track's control state, hosted by its publisher's MediaWorker, beside
the track's packets.

It owns who subscribes, the track's mute state, and which MediaWorkers need a copy: the publisher's worker
forwards to its local subscribers itself and relays one copy to every other worker that has subscribers.
It also applies the publisher's subscription permission (LiveKit's SubscriptionPermission): a subscription
that is not allowed stays wanted but gets no media, and its subscriber is told (SubscriptionPermissionUpdate);
a permission taken away unsubscribes, one given back subscribes again. For a video track it tells the
publisher which simulcast layers its subscribers need (actors/dynacast.py), from what each subscriber's
Participant reports.
The RTP itself never passes through this actor. The Room numbers its commands (messages from another
process arrive out of order).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from livekit.protocol import models

from actors.dynacast import Dynacast
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
    identity: str
    exempt: bool = False  # a recorder: the publisher's subscription permission does not apply (as in LiveKit)
    hidden: bool = False  # a hidden subscriber does not count as the track's first subscription


@dataclass(frozen=True)
class Unsubscribe:
    sub_sid: str
    notify: bool  # False when the subscriber's session is already gone


@dataclass(frozen=True)
class SetMuted:
    muted: bool


@dataclass(frozen=True)
class SetAllowed:
    """Who the publisher allows to subscribe to this track: identities, or None for everyone."""

    identities: frozenset[str] | None


@dataclass(frozen=True)
class Close:
    pass


Command = Subscribe | Unsubscribe | SetMuted | SetAllowed | Close


class TrackForwarder:
    def __init__(self, host: MediaWorker, room: str, info: models.TrackInfo, publisher: ActorRef) -> None:
        self._host = host
        self._room = room
        self._info = info
        self._publisher = publisher  # its Participant, on this host
        self._publisher_sid = publisher.address
        self._publisher_worker = host.name
        self.ref = ActorRef(host.name, info.sid, track_label(room, info.sid))
        self._subscribers: dict[str, Subscribe] = {}
        self._allowed: frozenset[str] | None = None  # None: everyone may subscribe
        self._denied: dict[str, Subscribe] = {}  # wanted, not allowed; each subscriber was told so
        self._ever_subscribed = False
        self._relays: set[str] = set()  # receiving workers that get one copy from the publisher's worker
        self._closed = False
        # Which layers the subscribers need (video only), from their reports: (subscriber, report number).
        self._dynacast = Dynacast(self._tell_quality) if info.type == models.TrackType.VIDEO else None
        self._reports: dict[str, int] = {}
        self._commands: SequencedInbox[Command] = SequencedInbox(self._apply, f"{self}:commands")

    def __repr__(self) -> str:
        return f"TrackForwarder({self._room}/{self._info.sid})"

    async def command(self, seq: int, command: Command) -> None:
        await self._commands.put(seq, command)

    async def subscriber_quality(self, sub_sid: str, report: int, quality: int) -> None:
        """From a subscriber's Participant: the highest quality its subscription now asks for (reports are
        numbered per Participant; one overtaken by a later one is dropped)."""
        if self._dynacast is None or sub_sid not in self._subscribers:
            return
        if report <= self._reports.get(sub_sid, -1):
            return
        self._reports[sub_sid] = report
        self._dynacast.set(sub_sid, quality)

    def _tell_quality(self, quality: int) -> None:
        """Dynacast's news for the publisher, which is not told while the track is muted (as in LiveKit)."""
        if not self._info.muted and not self._closed:
            self._publisher.tell("subscribed_quality", self._info.sid, self._info.mime_type, quality)

    async def state(self) -> dict[str, Any]:
        return {
            "track_sid": self._info.sid,
            "muted": self._info.muted,
            "publisher": self._publisher_sid,
            "publisher_worker": self._publisher_worker,
            "subscribers": {sid: s.worker for sid, s in self._subscribers.items()},
            "denied": sorted(self._denied),
            "relays": sorted(self._relays),
            "dynacast": None if self._dynacast is None else self._dynacast.committed,
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
            if not command.muted and self._dynacast is not None:
                self._dynacast.commit()  # what it was not told while muted
        elif isinstance(command, SetAllowed):
            await self._set_allowed(command.identities)
        else:
            await self._close()

    def _is_allowed(self, sub: Subscribe) -> bool:
        return self._allowed is None or sub.exempt or sub.identity in self._allowed

    async def _set_allowed(self, identities: frozenset[str] | None) -> None:
        """The publisher changed its subscription permission: revoke and restore subscriptions to match."""
        self._allowed = identities
        for sub in [s for s in self._subscribers.values() if not self._is_allowed(s)]:
            log.info("%s: %s may no longer subscribe", self, sub.sub_sid)
            await self._unsubscribe(sub.sub_sid, notify=True)
            self._deny(sub)
        for sub in [s for s in self._denied.values() if self._is_allowed(s)]:
            del self._denied[sub.sub_sid]
            self._tell_permission(sub, True)
            await self._subscribe(sub)

    def _deny(self, sub: Subscribe) -> None:
        if sub.sub_sid not in self._denied:
            self._denied[sub.sub_sid] = sub
            self._tell_permission(sub, False)

    def _tell_permission(self, sub: Subscribe, allowed: bool) -> None:
        sub.participant.tell("subscription_permission_changed", self._publisher_sid, self._info.sid, allowed)

    async def _subscribe(self, command: Subscribe) -> None:
        if command.sub_sid in self._subscribers:
            return
        if not self._is_allowed(command):
            log.info("%s: %s is not allowed to subscribe", self, command.sub_sid)
            self._deny(command)
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
        self._subscribers[command.sub_sid] = command
        log.info("%s: %s subscribes on %s", self, command.sub_sid, command.worker)
        try:
            added = await command.participant.call(
                "subscribe_track", self._info, self._publisher_sid, self.ref
            )
        except ActorGone:
            await self._unsubscribe(command.sub_sid, notify=False)
            return
        if added and not command.hidden and not self._ever_subscribed:
            self._ever_subscribed = True  # LiveKit tells the publisher once, at the first subscription
            self._publisher.tell("track_subscribed", self._info.sid)

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
            source,
        )
        if self._info.muted:
            await self._worker(worker, "set_track_muted", self._info.sid, True)
        await self._host.add_relay(self._info.sid, worker, address)
        self._relays.add(worker)
        log.info("%s: relaying to %s", self, worker)

    async def _unsubscribe(self, sub_sid: str, notify: bool) -> None:
        self._denied.pop(sub_sid, None)
        sub = self._subscribers.pop(sub_sid, None)
        if sub is None:
            return
        self._reports.pop(sub_sid, None)
        if self._dynacast is not None:
            self._dynacast.remove(sub_sid)
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
        if self._dynacast is not None:  # the publisher hears no more of this track
            self._dynacast.close()
            self._dynacast = None
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
