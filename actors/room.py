"""The Room actor: membership, room metadata, timeouts, placement and participant updates.

One actor per room, named `room:<name>`, created atomically by whoever needs it first (a join or CreateRoom:
Ray's named-actor registry makes two simultaneous first joins yield one room). The Room owns its participants'
lifecycle: it creates each Participant actor, watches it, and removes and kills it when its session ends.
"""

# Annotations stay strings: Ray pickles actor classes by value, and protobuf enum types do not pickle.
from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, cast

import ray
from livekit.protocol import models
from ray.actor import ActorHandle

from actors import ids, limits, logs, placement
from actors.directory import Directory, Member
from actors.errors import LimitExceededError, NotFoundError, PermissionDeniedError, RoomClosedError
from actors.events import ParticipantsChanged, RoomChanged, RoomEvent
from actors.forwarder import Close, Command, SetMuted, Subscribe, Unsubscribe, create_forwarder
from actors.inbox import Sequencer
from actors.naming import NAMESPACE, participant_actor, room_actor, track_actor
from actors.participant import JoinParams, create_participant, join_response
from actors.settings import MediaSettings, RoomSettings

log = logging.getLogger(__name__)

# How long a closing Participant may take to hand its last messages to the gateway before it is killed.
PARTICIPANT_GRACE = 5.0
EXIT_GRACE = 1.0  # seconds an empty closed room lives on, so that the reply to the call that closed it leaves
LOOKUP_ATTEMPTS = 3  # see lookup_room
LOOKUP_RETRY_DELAY = 0.1  # seconds


@dataclass
class Seat:
    info: models.ParticipantInfo
    handle: ActorHandle[Any]
    worker: str
    auto_subscribe: bool = True
    watch: asyncio.Task[None] | None = None

    @property
    def hidden(self) -> bool:
        return bool(self.info.permission.hidden)

    @property
    def can_subscribe(self) -> bool:
        return bool(self.info.permission.can_subscribe)


@dataclass(frozen=True)
class Track:
    publisher: str  # identity
    forwarder: ActorHandle[Any]


@dataclass(frozen=True)
class Joined:
    participant: ActorHandle[Any]
    sid: str
    response: bytes  # the serialized SignalResponse with the JoinResponse, for the gateway to send first


@dataclass
class _Counters:
    sequencer: Sequencer = field(default_factory=Sequencer)
    directory_version: int = 0


class Room:
    def __init__(self, name: str, settings: RoomSettings, media: MediaSettings, metadata: str = "") -> None:
        logs.configure()
        now = time.time()
        self._info = models.Room(
            sid=ids.room_sid(),
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
        self._close_task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._arm_close(settings.empty_timeout, "empty timeout")
        log.info("room %s (%s) created", name, self._info.sid)

    def __repr__(self) -> str:
        return f"Room({self._info.name})"

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
        async with self._lock:
            self._check_open()
            older = self._seats.get(params.identity)
            active = len(self._seats) - (1 if older else 0)
            if self._info.max_participants and active >= self._info.max_participants:
                raise LimitExceededError(f"room {self._info.name} is full ({self._info.max_participants})")
            if older is not None:
                log.info("%s: %s joins again, removing the older session", self._info.name, params.identity)
                await self._remove_seat(older, models.DisconnectReason.DUPLICATE_IDENTITY, notify=True)
            worker = await self._place()
            sid = ids.participant_sid()
            # Registered on the worker now, not when the Participant actor starts: placement reads the
            # workers' loads, and joins arriving together must see each other's places.
            await ray.get_actor(worker, namespace=NAMESPACE).add_participant.remote(
                self._info.name, sid, params.identity
            )
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
            handle = create_participant(
                name=participant_actor(self._info.name, params.identity, sid),
                worker=worker,
                room=ray.get_runtime_context().current_actor,
                room_name=self._info.name,
                info=info,
                params=params,
            )
            seat = Seat(info=info, handle=handle, worker=worker, auto_subscribe=params.auto_subscribe)
            self._seats[params.identity] = seat
            self._ever_joined = True
            self._cancel_close()
            seat.watch = self._spawn(self._watch(seat))
            self._workers_used.add(worker)
            self._push_directory()
            if not seat.hidden:
                self._broadcast(ParticipantsChanged((info,)), exclude=sid)
            if seat.auto_subscribe and seat.can_subscribe:
                for track_sid in self._tracks:
                    self._command(track_sid, Subscribe(sid, handle, worker))
            log.info("%s: %s joined as %s on %s", self._info.name, params.identity, sid, worker)
            return Joined(handle, sid, join_response(self._room_info(), info, others, worker))

    async def _place(self) -> str:
        workers = placement.list_workers()
        loads = await asyncio.gather(
            *(ray.get_actor(w, namespace=NAMESPACE).load.remote() for w in workers), return_exceptions=True
        )
        candidates: list[placement.Candidate] = []
        for worker, load in zip(workers, loads, strict=True):
            if isinstance(load, int):
                candidates.append(placement.Candidate(worker, load))
            else:
                log.warning("media worker %s did not answer: %s", worker, load)
        members = Counter(s.worker for s in self._seats.values())
        return placement.choose_worker(candidates, members, self._media.participants_per_worker)

    async def _watch(self, seat: Seat) -> None:
        """Wait for the session to end (or its actor to die), then remove it from the room."""
        reason: models.DisconnectReason = models.DisconnectReason.UNKNOWN_REASON
        try:
            reason = await seat.handle.wait_closed.remote()
        except ray.exceptions.RayActorError:
            log.warning("%s: participant %s died", self._info.name, seat.info.identity)
            await self._release_media(seat)
        except asyncio.CancelledError:
            return
        async with self._lock:
            if self._seats.get(seat.info.identity) is seat:
                await self._remove_seat(seat, reason, notify=False)
        self._kill(seat.handle)

    async def _remove_seat(self, seat: Seat, reason: models.DisconnectReason, notify: bool) -> None:
        """Take a seat out of the room and tell the others. Called with the lock held."""
        del self._seats[seat.info.identity]
        for track_sid, track in list(self._tracks.items()):
            if track.publisher == seat.info.identity:
                self._close_track(track_sid)
            else:
                self._command(track_sid, Unsubscribe(seat.info.sid, notify=False))
        if notify:
            try:
                await seat.handle.close.remote(reason, True)
            except ray.exceptions.RayActorError:
                await self._release_media(seat)
            if seat.watch is not None:
                seat.watch.cancel()
            self._spawn(self._kill_later(seat.handle))
        gone = models.ParticipantInfo()
        gone.CopyFrom(seat.info)
        gone.state = models.ParticipantInfo.DISCONNECTED
        gone.disconnect_reason = reason
        gone.version += 1
        self._info.num_participants = len(self._seats)
        self._push_directory()
        if not seat.hidden:
            self._broadcast(ParticipantsChanged((gone,)))
        log.info(
            "%s: %s (%s) left: %s",
            self._info.name,
            seat.info.identity,
            seat.info.sid,
            models.DisconnectReason.Name(reason),
        )
        if not self._seats and not self._closed:
            self._arm_close(self._info.departure_timeout, "departure timeout")

    async def _release_media(self, seat: Seat) -> None:
        try:
            await ray.get_actor(seat.worker, namespace=NAMESPACE).remove_participant.remote(seat.info.sid)
        except (ray.exceptions.RayActorError, ValueError):
            log.warning("%s: could not release %s on %s", self._info.name, seat.info.sid, seat.worker)

    async def _kill_later(self, handle: ActorHandle[Any]) -> None:
        try:
            await asyncio.wait_for(handle.wait_closed.remote(), PARTICIPANT_GRACE)
        except (TimeoutError, ray.exceptions.RayActorError):
            pass
        self._kill(handle)

    @staticmethod
    def _kill(handle: ActorHandle[Any]) -> None:
        try:
            ray.kill(handle, no_restart=True)
        except ValueError:
            pass

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
                gone = models.ParticipantInfo()
                gone.CopyFrom(info)
                gone.state = models.ParticipantInfo.DISCONNECTED
                self._broadcast(ParticipantsChanged((gone,)), exclude=info.sid)
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
                ray.get_actor(w, namespace=NAMESPACE).send_data.remote(
                    self._info.name, packet, reliable, sids
                )
                for w, sids in per_worker.items()
            )
        )

    # ----- tracks ---------------------------------------------------------------------------------------

    async def track_published(self, identity: str, info: models.TrackInfo) -> None:
        """The publisher's media is bound: announce the track and subscribe the auto-subscribers."""
        async with self._lock:
            seat = self._seat(identity)
            seat.info.tracks.append(info)
            seat.info.is_publisher = True
            forwarder = create_forwarder(
                track_actor(self._info.name, info.sid), self._info.name, info, seat.info.sid, seat.worker
            )
            self._tracks[info.sid] = Track(publisher=identity, forwarder=forwarder)
            self._announce(seat)
            for other in self._seats.values():
                if other is not seat and other.auto_subscribe and other.can_subscribe:
                    self._command(info.sid, Subscribe(other.info.sid, other.handle, other.worker))
            log.info("%s: %s published %s (%s)", self._info.name, identity, info.sid, info.mime_type)

    async def track_unpublished(self, identity: str, track_sid: str) -> None:
        async with self._lock:
            seat = self._seat(identity)
            kept = [t for t in seat.info.tracks if t.sid != track_sid]
            if len(kept) == len(seat.info.tracks):
                raise NotFoundError(f"track {track_sid} not found")
            del seat.info.tracks[:]
            seat.info.tracks.extend(kept)
            self._close_track(track_sid)
            self._announce(seat)
            log.info("%s: %s unpublished %s", self._info.name, identity, track_sid)

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
        try:
            await applied
        except ray.exceptions.RayActorError:
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
                    Subscribe(seat.info.sid, seat.handle, seat.worker)
                    if subscribe
                    else Unsubscribe(seat.info.sid, notify=True)
                )
                self._command(track_sid, command)

    def _command(self, track_sid: str, command: Command) -> ray.ObjectRef[None]:
        """Send the track's forwarder its next command; await the result to know it was applied."""
        seq = self._counters.sequencer.next(track_sid)
        ref: ray.ObjectRef[None] = self._tracks[track_sid].forwarder.command.remote(seq, command)
        return ref

    def _close_track(self, track_sid: str) -> None:
        """Close the track's forwarder (it unsubscribes everyone and stops the media), then its actor."""
        seq = self._counters.sequencer.next(track_sid)
        forwarder = self._tracks.pop(track_sid).forwarder

        async def close() -> None:
            try:
                await forwarder.command.remote(seq, Close())
            except ray.exceptions.RayActorError:
                pass
            self._kill(forwarder)

        self._spawn(close())

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
        for worker in self._workers_used:
            try:
                await ray.get_actor(worker, namespace=NAMESPACE).close_room.remote(self._info.name)
            except (ray.exceptions.RayActorError, ValueError):
                pass
        log.info("room %s (%s) closed: %s", self._info.name, self._info.sid, why)
        # Give the kicked sessions their grace period (an empty room: its caller the time to get the reply,
        # which killing this process at once could lose), then remove this actor (its name becomes free).
        self._spawn(self._exit_after(PARTICIPANT_GRACE if seats else EXIT_GRACE))

    async def _exit_after(self, delay: float) -> None:
        await asyncio.sleep(delay)
        self._kill(ray.get_runtime_context().current_actor)

    def _arm_close(self, seconds: int, why: str) -> None:
        self._cancel_close()

        async def close_later() -> None:
            await asyncio.sleep(seconds)
            self._close_task = None
            await self._close(models.DisconnectReason.ROOM_CLOSED, why)

        self._close_task = self._spawn(close_later())

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

    def _notify(self, seat: Seat, event: RoomEvent) -> None:
        seq = self._counters.sequencer.next(seat.info.sid)
        seat.handle.room_event.remote(seq, event)

    def _broadcast(self, event: RoomEvent, exclude: str = "") -> None:
        for seat in self._seats.values():
            if seat.info.sid != exclude:
                self._notify(seat, event)

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
            ray.get_actor(worker, namespace=NAMESPACE).update_directory.remote(directory)

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task


RoomActor = ray.remote(Room)


def get_or_create_room(
    name: str, settings: RoomSettings, media: MediaSettings, metadata: str = ""
) -> ActorHandle[Any]:
    """The room's actor, created if it does not exist; atomic across callers (Ray's named-actor registry)."""
    options = placement.actor_options(room_actor(name))
    return RoomActor.options(get_if_exists=True, **options).remote(  # type: ignore[return-value]
        name, settings, media, metadata
    )


def lookup_room(name: str) -> ActorHandle[Any] | None:
    """The open room's actor, or None. Blocks (it asks the GCS): call it off the event loop.

    Ray's name lookup has been seen to miss a live, listed actor (once in a CI run: a DeleteRoom right after
    CreateRoom and ListRooms answered not_found; compare ray-project/ray#41324 and #57690, lookups racing
    from several threads). A miss is therefore checked against the list of named actors and retried.
    """
    actor_name = room_actor(name)
    for attempt in range(LOOKUP_ATTEMPTS):
        try:
            return ray.get_actor(actor_name, namespace=NAMESPACE)
        except ValueError:
            listed = any(
                n["name"] == actor_name for n in ray.util.list_named_actors(all_namespaces=True)
                if n["namespace"] == NAMESPACE
            )  # fmt: skip
            if not listed:
                return None
            log.warning("room %s is listed but its lookup failed (attempt %d)", name, attempt + 1)
            time.sleep(LOOKUP_RETRY_DELAY)
    return None


def _open_rooms(names: list[str] | None) -> list[ActorHandle[Any]]:
    prefix = room_actor("")
    found = [
        n["name"].removeprefix(prefix)
        for n in ray.util.list_named_actors(all_namespaces=True)
        if n["namespace"] == NAMESPACE and n["name"].startswith(prefix)
    ]
    handles = [lookup_room(n) for n in found if not names or n in names]
    return [h for h in handles if h is not None]


async def list_rooms(names: list[str] | None = None) -> list[models.Room]:
    """Every open room (optionally only these names); rooms that are closing are left out."""
    handles = await asyncio.to_thread(_open_rooms, names)  # the lookups block
    infos = await asyncio.gather(*(h.info.remote() for h in handles), return_exceptions=True)
    return [cast(models.Room, i) for i in infos if isinstance(i, models.Room)]
