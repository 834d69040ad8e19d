"""The Room: membership, room metadata, timeouts, placement and participant updates.

One Room per open room, hosted by one MediaWorker (its home, chosen by the RoomRegistry when the room
opens; actors.registry). The Room owns its participants' lifecycle: it places each new session on a worker,
has that worker host its Participant, hears when the session ends, and removes it from the room.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast

from livekit.protocol import models, rtc

from actors import ids, limits, logs, placement, protocol
from actors.directory import Directory, Member
from actors.errors import (
    ActorGone,
    InvalidRequestError,
    LimitExceededError,
    NotFoundError,
    PermissionDeniedError,
    RoomClosedError,
)
from actors.events import ParticipantsChanged, QualityChanged, RoomChanged, RoomEvent, SpeakersChanged
from actors.forwarder import Close, Command, SetAllowed, SetMuted, Subscribe, Unsubscribe
from actors.hosting import ActorRef, call_worker, tell_many
from actors.inbox import Sequencer
from actors.naming import participant_label, room_label, track_label
from actors.participant import JoinParams
from actors.settings import MediaSettings, RoomSettings
from actors.tasks import spawn

if TYPE_CHECKING:
    from actors.worker import MediaWorker

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass
class Seat:
    info: models.ParticipantInfo
    handle: ActorRef  # the Participant
    worker: str
    auto_subscribe: bool = True
    joining_since: float = field(default_factory=time.monotonic)  # when the Room took the join
    active: bool = False  # one of its peer connections has connected (LiveKit's ACTIVE)
    # Its subscription permission as a publisher, by subscriber identity; None: everyone may subscribe.
    track_permissions: dict[str, rtc.TrackPermission] | None = None

    @property
    def hidden(self) -> bool:
        return bool(self.info.permission.hidden)

    @property
    def can_subscribe(self) -> bool:
        return bool(self.info.permission.can_subscribe)

    def subscription(self) -> Subscribe:
        """The command that subscribes this participant to a track."""
        permission = self.info.permission
        return Subscribe(
            self.info.sid,
            self.handle,
            self.worker,
            self.info.identity,
            exempt=bool(permission.recorder),
            hidden=bool(permission.hidden),
        )

    def allowed_subscribers(self, track_sid: str) -> frozenset[str] | None:
        """Who may subscribe to this participant's track (None: everyone)."""
        if self.track_permissions is None:
            return None
        return frozenset(
            identity
            for identity, p in self.track_permissions.items()
            if p.all_tracks or track_sid in p.track_sids
        )


@dataclass(frozen=True)
class Track:
    publisher: str  # identity
    forwarder: ActorRef


@dataclass(frozen=True)
class Joined:
    participant: ActorRef  # its address is the participant's sid
    response: bytes  # the serialized SignalResponse with the JoinResponse, for the gateway to send first


@dataclass(frozen=True)
class _Report(Generic[T]):
    seq: int  # numbered by the worker: a report that arrives after a newer one is ignored
    values: dict[str, T]  # participant sid -> what was measured


@dataclass
class _Counters:
    sequencer: Sequencer = field(default_factory=Sequencer)
    directory_version: int = 0


class Room:
    def __init__(
        self, host: MediaWorker, name: str, settings: RoomSettings, media: MediaSettings, metadata: str = ""
    ) -> None:
        now = time.time()
        sid = ids.room_sid()
        self._host = host
        self.ref = ActorRef(host.name, sid, room_label(name))
        self._info = models.Room(
            sid=sid,
            name=name,
            empty_timeout=settings.empty_timeout,
            departure_timeout=settings.departure_timeout,
            max_participants=settings.max_participants,
            creation_time=int(now),
            creation_time_ms=int(now * 1000),
            metadata=metadata,
        )
        self._media = media
        self._seats: dict[str, Seat] = {}  # identity -> seat
        self._tracks: dict[str, Track] = {}  # track sid -> its publisher and TrackForwarder
        self._lock = asyncio.Lock()
        self._counters = _Counters()
        self._closed = False
        self._ever_joined = False
        self._workers_used: set[str] = set()
        self._close_task: asyncio.Future[object] | None = None
        # What the workers hosting its participants measure (MediaWorker._report_speakers, _report_quality):
        # each worker's latest report of its own participants, and what the participants were last told.
        self._speaker_reports: dict[str, _Report[float]] = {}
        self._speakers: dict[str, float] = {}  # sid -> level, the active speakers
        self._quality_reports: dict[str, _Report[tuple[int, float]]] = {}
        self._qualities: dict[str, int] = {}  # sid -> models.ConnectionQuality
        self._arm_close(settings.empty_timeout, "empty timeout")
        host.webhooks.notify("room_started", self._room_info())
        log.info("room %s (%s) created", name, self._info.sid, extra=logs.fields(name))

    def __repr__(self) -> str:
        return f"Room({self._info.name})"

    @property
    def name(self) -> str:
        return self._info.name

    # ----- queries -----------------------------------------------------------------------------------

    async def info(self) -> models.Room:
        self._check_open()
        return self._room_info()

    async def list_participants(self) -> list[models.ParticipantInfo]:
        self._check_open()
        return [s.info for s in self._seats.values()]

    async def get_participant(self, identity: str) -> models.ParticipantInfo:
        return self._seat(identity).info

    # ----- joining and leaving -----------------------------------------------------------------------

    async def join(self, params: JoinParams) -> Joined:
        """Seat a new session: replaces an older session of the same identity (DUPLICATE_IDENTITY)."""
        joining_since = time.monotonic()
        async with self._lock:
            self._check_open()
            older = self._seats.get(params.identity)
            active = len(self._seats) - (1 if older else 0)
            if self._info.max_participants and active >= self._info.max_participants:
                raise LimitExceededError(f"room {self._info.name} is full ({self._info.max_participants})")
            if older is not None:
                log.info(
                    "%s: %s joins again, removing the older session",
                    self._info.name,
                    params.identity,
                    extra=logs.fields(self._info.name, params.identity),
                )
                await self._remove_seat(older, models.DisconnectReason.DUPLICATE_IDENTITY, notify=True)
            worker = await self._place(params.node)
            sid = params.sid or ids.participant_sid()
            info = models.ParticipantInfo(
                sid=sid,
                identity=params.identity,
                name=params.name,
                metadata=params.metadata,
                state=models.ParticipantInfo.ACTIVE,
                joined_at=int(time.time()),
                joined_at_ms=int(time.time() * 1000),
                version=1,
                permission=params.permission,
                kind=cast(models.ParticipantInfo.Kind, params.kind),
                client_protocol=params.client_protocol,
            )
            info.attributes.update(params.attributes)
            others = [s.info for s in self._seats.values() if not s.hidden]
            self._info.num_participants = len(self._seats) + 1
            handle: ActorRef = await call_worker(
                worker,
                "host_participant",
                self.ref,
                self._info.name,
                info,
                params,
                task=f"{participant_label(self._info.name, params.identity)}.join",
            )
            seat = Seat(info, handle, worker, params.auto_subscribe, joining_since)
            self._seats[params.identity] = seat
            self._ever_joined = True
            self._cancel_close()
            self._use_worker(worker)
            self._push_directory()
            if not seat.hidden:
                self._broadcast(ParticipantsChanged((info,)), exclude=sid)
            self._brief(seat)
            if seat.auto_subscribe and seat.can_subscribe:
                for track_sid in self._tracks:
                    self._command(track_sid, seat.subscription())
            log.info(
                "%s: %s joined as %s on %s",
                self._info.name,
                params.identity,
                sid,
                worker,
                extra=logs.fields(self._info.name, params.identity),
            )
            return Joined(
                handle, protocol.join_response(self._room_info(), info, others, worker, params.single_pc)
            )

    async def resume(self, identity: str, sid: str, gateway: str, key: str) -> Joined:
        """A client resumes its session `sid` (`reconnect=1`) through `gateway`: LiveKit finds it by identity;
        the sid must match too (a session replaced by a full rejoin is gone). The others see nothing.
        NotFoundError when the session is gone (the gateway answers as LiveKit does)."""
        async with self._lock:
            self._check_open()
            seat = self._seats.get(identity)
            if seat is None or seat.info.sid != sid:
                raise NotFoundError(f"no session {sid} of {identity} in {self._info.name}")
            participants = [s.info for s in self._seats.values() if not s.hidden or s is seat]
            try:
                response: bytes = await seat.handle.call(
                    "resume", gateway, key, participants, self._room_info()
                )
            except ActorGone:
                raise NotFoundError(f"session {sid} of {identity} is gone") from None
            log.info("%s: %s (%s) resumed", self._info.name, identity, sid)
            return Joined(seat.handle, response)

    async def _place(self, node: str) -> str:
        """The worker for a new participant. The home worker's load is read here, exactly; the others'
        through a call each (joins that arrive together are placed one at a time, under the room's lock)."""
        workers = [w for w in await placement.live_workers() if not self._host.is_lost(w)]
        others = await placement.worker_loads([w for w in workers if w != self._host.name])
        candidates = [self._host.measured_load(), *others]
        members = Counter(s.worker for s in self._seats.values())
        return placement.choose_worker(candidates, members, self._media, home=self._host.name, node=node)

    def _use_worker(self, worker: str) -> None:
        if worker not in self._workers_used:
            self._workers_used.add(worker)
            self._host.watch(worker)

    async def participant_active(self, identity: str, sid: str) -> None:
        """From the participant's worker: one of its peer connections connected. LiveKit counts a
        participant as joined from then on (its participant_joined webhook), not from its JoinRequest."""
        seat = self._seats.get(identity)
        if seat is None or seat.info.sid != sid or seat.active:
            return
        seat.active = True
        self._host.metrics.observe_join(time.monotonic() - seat.joining_since)
        self._host.webhooks.notify("participant_joined", self._room_info(), seat.info)

    async def participant_closed(self, identity: str, sid: str, reason: models.DisconnectReason) -> None:
        """From the Participant: its session ended (the client left, its socket closed, its gateway died)."""
        async with self._lock:
            seat = self._seats.get(identity)
            if seat is not None and seat.info.sid == sid:
                await self._remove_seat(seat, reason, notify=False)

    async def worker_lost(self, worker: str) -> None:
        """A media worker died: its participants are gone, and so are the tracks they published."""
        async with self._lock:
            self._speaker_reports.pop(worker, None)
            self._quality_reports.pop(worker, None)
            for seat in [s for s in self._seats.values() if s.worker == worker]:
                await self._remove_seat(seat, models.DisconnectReason.UNKNOWN_REASON, notify=False)
            self._workers_used.discard(worker)

    async def _remove_seat(self, seat: Seat, reason: models.DisconnectReason, notify: bool) -> None:
        """Take a seat out of the room and tell the others. Called with the lock held."""
        del self._seats[seat.info.identity]
        for published in seat.info.tracks:
            self._track_webhook("track_unpublished", seat, published)
        for track_sid, track in list(self._tracks.items()):
            if track.publisher == seat.info.identity:
                self._close_track(track_sid)
            else:
                self._command(track_sid, Unsubscribe(seat.info.sid, notify=False))
        if notify:
            try:
                await seat.handle.call("close", reason, True, True)
            except ActorGone:
                pass
        self._qualities.pop(seat.info.sid, None)
        self._send_speaker_changes()
        gone = protocol.disconnected(seat.info, reason)
        self._info.num_participants = len(self._seats)
        left = "participant_left" if seat.active else "participant_connection_aborted"  # as LiveKit
        self._host.webhooks.notify(left, self._room_info(), gone)
        self._push_directory()
        if not seat.hidden:
            self._broadcast(ParticipantsChanged((gone,)))
        log.info(
            "%s: %s (%s) left: %s",
            self._info.name,
            seat.info.identity,
            seat.info.sid,
            models.DisconnectReason.Name(reason),
            extra=logs.fields(self._info.name, seat.info.identity),
        )
        if not self._seats and not self._closed:
            self._arm_close(self._info.departure_timeout, "departure timeout")

    # ----- changes from participants and the room service ---------------------------------------------

    async def update_participant(
        self,
        identity: str,
        metadata: str | None = None,
        name: str | None = None,
        attributes: dict[str, str] | None = None,
        permission: models.ParticipantPermission | None = None,
        by_self: bool = False,
    ) -> models.ParticipantInfo:
        """Change a participant. `by_self`: the participant asked itself, so canUpdateOwnMetadata applies."""
        async with self._lock:
            seat = self._seat(identity)
            if by_self and not seat.info.permission.can_update_metadata:
                raise PermissionDeniedError(
                    "this participant may not update its own metadata, name or attributes"
                )
            merged = dict(seat.info.attributes)
            for key, value in (attributes or {}).items():
                if value:
                    merged[key] = value
                else:
                    merged.pop(key, None)  # an empty value deletes the attribute, as in LiveKit
            reason = limits.check_participant_fields(name, metadata, merged)
            if reason:
                raise LimitExceededError(reason)
            info = seat.info
            if metadata is not None:
                info.metadata = metadata
            if name is not None:
                info.name = name
            if attributes is not None:
                info.attributes.clear()
                info.attributes.update(merged)
            was_hidden = seat.hidden
            if permission is not None:
                info.permission.CopyFrom(permission)
                self._push_directory()
            info.version += 1
            # The participant itself always hears about its own change; others only while it is visible.
            self._notify(seat, ParticipantsChanged((info,)))
            if not seat.hidden:
                self._broadcast(ParticipantsChanged((info,)), exclude=info.sid)
            elif not was_hidden:
                self._broadcast(ParticipantsChanged((protocol.disconnected(info),)), exclude=info.sid)
            return info

    async def update_metadata(self, metadata: str) -> models.Room:
        self._check_open()
        if len(metadata.encode()) > limits.MAX_METADATA:
            raise LimitExceededError(f"metadata is larger than {limits.MAX_METADATA} bytes")
        self._info.metadata = metadata
        room = self._room_info()
        self._broadcast(RoomChanged(room))
        return room

    async def remove_participant(self, identity: str) -> None:
        async with self._lock:
            await self._remove_seat(
                self._seat(identity), models.DisconnectReason.PARTICIPANT_REMOVED, notify=True
            )

    async def send_data(
        self, packet: bytes, reliable: bool, destination_sids: list[str], destination_identities: list[str]
    ) -> None:
        """Server-originated data (RoomService.SendData): one call per worker hosting a recipient."""
        self._check_open()
        wanted = set(destination_sids) | {
            s.info.sid for i, s in self._seats.items() if i in set(destination_identities)
        }
        per_worker: dict[str, list[str]] = {}
        for seat in self._seats.values():
            if not wanted or seat.info.sid in wanted:
                per_worker.setdefault(seat.worker, []).append(seat.info.sid)
        await asyncio.gather(
            *(
                call_worker(
                    w, "send_data", self._info.name, packet, reliable, sids, task=f"{self.ref}.send_data"
                )
                for w, sids in per_worker.items()
            )
        )

    # ----- speakers and connection quality -------------------------------------------------------------

    async def report_speakers(self, worker: str, seq: int, levels: dict[str, float]) -> None:
        """A worker's active speakers among its participants here (sid -> level), when they change."""
        if _newer(self._speaker_reports, worker, seq):
            self._speaker_reports[worker] = _Report(seq, levels)
            self._send_speaker_changes()

    async def report_quality(self, worker: str, seq: int, qualities: dict[str, tuple[int, float]]) -> None:
        """A worker's (quality, MOS) of its participants here, when one is new or its quality changed:
        as in LiveKit, everybody then hears everybody's current quality that concerns them."""
        if not _newer(self._quality_reports, worker, seq):
            return
        self._quality_reports[worker] = _Report(seq, qualities)
        current = self._merged(self._quality_reports)
        changed = any(self._qualities.get(sid) != q for sid, (q, _) in current.items())
        self._qualities = {sid: q for sid, (q, _) in current.items()}
        if changed:
            self._broadcast(self._quality_event())

    def _quality_event(self) -> QualityChanged:
        return QualityChanged(
            tuple(
                rtc.ConnectionQualityInfo(participant_sid=sid, quality=cast(Any, q), score=score)
                for sid, (q, score) in self._merged(self._quality_reports).items()
            )
        )

    def _brief(self, seat: Seat) -> None:
        """A newcomer's Participant learns who speaks and how everybody is connected, to tell its client as
        it subscribes to them (it tells nothing of anybody else)."""
        if self._speakers:
            speakers = sorted(self._speakers.items(), key=lambda item: -item[1])
            self._notify(
                seat,
                SpeakersChanged(tuple(models.SpeakerInfo(sid=s, level=v, active=True) for s, v in speakers)),
            )
        if self._qualities:
            self._notify(seat, self._quality_event())

    def _send_speaker_changes(self) -> None:
        """Tell everybody whose level changed (loudest first) and who stopped speaking (level 0)."""
        current = self._merged(self._speaker_reports)
        changed = [
            models.SpeakerInfo(sid=sid, level=level, active=True)
            for sid, level in sorted(current.items(), key=lambda item: -item[1])
            if self._speakers.get(sid) != level
        ]
        changed += [
            models.SpeakerInfo(sid=sid, level=0, active=False) for sid in self._speakers if sid not in current
        ]
        self._speakers = current
        if changed:
            self._broadcast(SpeakersChanged(tuple(changed)))

    def _merged(self, reports: dict[str, _Report[T]]) -> dict[str, T]:
        """The workers' reports as one, of the participants still seated."""
        seated = {s.info.sid for s in self._seats.values()}
        return {sid: v for r in reports.values() for sid, v in r.values.items() if sid in seated}

    # ----- tracks ---------------------------------------------------------------------------------------

    async def track_published(self, identity: str, info: models.TrackInfo) -> None:
        """The publisher's media is bound: announce the track and subscribe the auto-subscribers."""
        async with self._lock:
            seat = self._seat(identity)
            seat.info.tracks.append(info)
            seat.info.is_publisher = True
            forwarder: ActorRef = await call_worker(
                seat.worker,
                "host_forwarder",
                self._info.name,
                info,
                seat.handle,
                task=f"{track_label(self._info.name, info.sid)}.open",
            )
            self._tracks[info.sid] = Track(publisher=identity, forwarder=forwarder)
            self._track_webhook("track_published", seat, info)
            if info.muted:  # announced muted (AddTrackRequest, or a mute while it was pending)
                self._command(info.sid, SetMuted(True))
            if seat.track_permissions is not None:  # before any subscription
                self._command(info.sid, SetAllowed(seat.allowed_subscribers(info.sid)))
            self._announce(seat)
            for other in self._seats.values():
                if other is not seat and other.auto_subscribe and other.can_subscribe:
                    self._command(info.sid, other.subscription())
            log.info(
                "%s: %s published %s (%s)",
                self._info.name,
                identity,
                info.sid,
                info.mime_type,
                extra=logs.fields(self._info.name, identity, info.sid),
            )

    async def track_unpublished(self, identity: str, track_sid: str) -> None:
        async with self._lock:
            seat = self._seat(identity)
            gone = [t for t in seat.info.tracks if t.sid == track_sid]
            if not gone:
                raise NotFoundError(f"track {track_sid} not found")
            self._track_webhook("track_unpublished", seat, gone[0])
            kept = [t for t in seat.info.tracks if t.sid != track_sid]
            del seat.info.tracks[:]
            seat.info.tracks.extend(kept)
            self._close_track(track_sid)
            self._announce(seat)
            log.info(
                "%s: %s unpublished %s",
                self._info.name,
                identity,
                track_sid,
                extra=logs.fields(self._info.name, identity, track_sid),
            )

    async def mute_published_track(self, identity: str, track_sid: str, muted: bool) -> models.TrackInfo:
        """Mute or unmute a publication (its publisher's MuteTrackRequest, or the room service).

        The bytes stop (or resume) before the others are told, so nothing arrives after they hear of a mute.
        """
        async with self._lock:
            seat = self._seat(identity)
            track = next((t for t in seat.info.tracks if t.sid == track_sid), None)
            if track is None:
                raise NotFoundError(f"track {track_sid} not found")
            if track.muted == muted:
                return track
            track.muted = muted
            applied = self._command(track_sid, SetMuted(muted))
            log.info(
                "%s: %s %s %s",
                self._info.name,
                identity,
                "muted" if muted else "unmuted",
                track_sid,
                extra=logs.fields(self._info.name, identity, track_sid),
            )
        try:
            await applied
        except ActorGone:
            log.warning("%s: the forwarder of %s is gone", self._info.name, track_sid)
        async with self._lock:
            if self._seats.get(identity) is seat:
                self._announce(seat)
        return track

    async def update_subscriptions(self, identity: str, track_sids: list[str], subscribe: bool) -> None:
        async with self._lock:
            seat = self._seat(identity)
            if subscribe and not seat.can_subscribe:
                raise PermissionDeniedError(f"{identity} may not subscribe")
            unknown = [sid for sid in track_sids if sid not in self._tracks]
            if unknown:
                raise NotFoundError(f"tracks {', '.join(unknown)} not found")
            for track_sid in track_sids:
                if self._tracks[track_sid].publisher == identity:
                    continue  # nobody subscribes to their own track
                command: Command = (
                    seat.subscription() if subscribe else Unsubscribe(seat.info.sid, notify=True)
                )
                self._command(track_sid, command)

    async def update_subscription_permission(
        self, identity: str, permission: rtc.SubscriptionPermission
    ) -> None:
        """A publisher's SubscriptionPermission, which replaces the one before: who may subscribe to which
        of its tracks (unlisted: nobody). The forwarders apply it to the subscriptions they have."""
        async with self._lock:
            seat = self._seat(identity)
            seat.track_permissions = self._track_permissions(permission)
            for track in seat.info.tracks:
                if track.sid in self._tracks:
                    self._command(track.sid, SetAllowed(seat.allowed_subscribers(track.sid)))

    def _track_permissions(
        self, permission: rtc.SubscriptionPermission
    ) -> dict[str, rtc.TrackPermission] | None:
        """A SubscriptionPermission by subscriber identity (a subscriber named by its sid must be here)."""
        if permission.all_participants:
            return None
        identities = {s.info.sid: identity for identity, s in self._seats.items()}
        parsed: dict[str, rtc.TrackPermission] = {}
        for entry in permission.track_permissions:
            if not entry.participant_identity and not entry.participant_sid:
                raise InvalidRequestError("a track permission needs a participant identity or sid")
            identity = entry.participant_identity or identities.get(entry.participant_sid)
            if identity is None:
                log.warning("%s: track permission for unknown participant %s", self, entry.participant_sid)
                continue
            parsed[identity] = entry
        return parsed

    def _command(self, track_sid: str, command: Command) -> asyncio.Future[Any]:
        """Send the track's forwarder its next command; await the result to know it was applied (a command
        nobody awaits has its failure logged)."""
        seq = self._counters.sequencer.next(track_sid)
        return spawn(self._tracks[track_sid].forwarder.call("command", seq, command), f"{track_sid} command")

    def _close_track(self, track_sid: str) -> None:
        """Close the track's forwarder: it unsubscribes everyone, stops the media and leaves its host."""
        seq = self._counters.sequencer.next(track_sid)
        forwarder = self._tracks.pop(track_sid).forwarder

        async def close() -> None:
            try:
                await forwarder.call("command", seq, Close())
            except ActorGone:
                pass

        spawn(close(), f"closing {forwarder}")

    def _announce(self, seat: Seat) -> None:
        """A participant's state changed: tell it and (while it is visible) everybody else."""
        seat.info.version += 1
        self._notify(seat, ParticipantsChanged((seat.info,)))
        if not seat.hidden:
            self._broadcast(ParticipantsChanged((seat.info,)), exclude=seat.info.sid)

    # ----- closing ------------------------------------------------------------------------------------

    async def delete(self) -> None:
        """RoomService.DeleteRoom: disconnect everyone (ROOM_DELETED) and close."""
        await self._close(models.DisconnectReason.ROOM_DELETED, "deleted")

    async def _close(self, reason: models.DisconnectReason, why: str) -> None:
        async with self._lock:
            if self._closed:
                return
            self._closed = True
            self._cancel_close()
            seats = list(self._seats.values())
            for seat in seats:
                await self._remove_seat(seat, reason, notify=True)
            self._host.webhooks.notify("room_finished", self._room_info())
        for worker in self._workers_used | {self._host.name}:
            try:
                await call_worker(worker, "close_room", self._info.name, task=f"{self.ref}.close")
            except ActorGone:
                pass
        await self._host.room_closed(self)
        log.info(
            "room %s (%s) closed: %s",
            self._info.name,
            self._info.sid,
            why,
            extra=logs.fields(self._info.name),
        )

    def _arm_close(self, seconds: int, why: str) -> None:
        self._cancel_close()

        async def close_later() -> None:
            await asyncio.sleep(seconds)
            self._close_task = None
            await self._close(models.DisconnectReason.ROOM_CLOSED, why)

        self._close_task = spawn(close_later(), f"{self.ref}: {why}")

    def _cancel_close(self) -> None:
        if self._close_task is not None:
            self._close_task.cancel()
            self._close_task = None

    # ----- helpers ------------------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise RoomClosedError(f"room {self._info.name} is closing")

    def _seat(self, identity: str) -> Seat:
        self._check_open()
        seat = self._seats.get(identity)
        if seat is None:
            raise NotFoundError(f"participant {identity} not found in room {self._info.name}")
        return seat

    def _room_info(self) -> models.Room:
        room = models.Room()
        room.CopyFrom(self._info)
        room.num_participants = len(self._seats)
        return room

    def _track_webhook(self, event: str, seat: Seat, track: models.TrackInfo) -> None:
        """A track event, with the room and publisher named only (LiveKit's, without
        room.enable_full_room_in_webhooks)."""
        room = models.Room(sid=self._info.sid, name=self._info.name)
        publisher = models.ParticipantInfo(sid=seat.info.sid, identity=seat.info.identity)
        self._host.webhooks.notify(event, room, publisher, track)

    def _notify(self, seat: Seat, event: RoomEvent) -> None:
        seq = self._counters.sequencer.next(seat.info.sid)
        seat.handle.tell("room_event", seq, event)

    def _broadcast(self, event: RoomEvent, exclude: str = "") -> None:
        """Tell every participant but `exclude`: one Ray call per other worker for all its participants."""
        messages = [
            (seat.handle, (self._counters.sequencer.next(seat.info.sid), event))
            for seat in self._seats.values()
            if seat.info.sid != exclude
        ]
        tell_many(messages, "room_event", f"{self.ref}.broadcast")

    def _push_directory(self) -> None:
        self._counters.directory_version += 1
        directory = Directory(
            room=self._info.name,
            version=self._counters.directory_version,
            members=tuple(
                Member(s.info.sid, s.info.identity, s.worker, bool(s.info.permission.can_publish_data))
                for s in self._seats.values()
            ),
        )
        for worker in self._workers_used:
            spawn(
                call_worker(worker, "update_directory", directory, task=f"{self.ref}.directory"),
                f"{self.ref}: directory to {worker}",
            )


def _newer(reports: dict[str, _Report[Any]], worker: str, seq: int) -> bool:
    last = reports.get(worker)
    return last is None or seq > last.seq
