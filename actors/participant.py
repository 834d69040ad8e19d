"""The Participant: one signalling session's state machine, hosted by the MediaWorker holding its peer
connections (actors.hosting).

The gateway numbers the client's requests and the Room numbers its events; both go through a
SequencedInbox, because messages from other processes arrive as concurrent Ray calls, out of order.
Messages for the client wait in the host's outbox for the session's gateway (actors.outbox), which the
gateway drains for all its sessions on this host with one long-poll at a time; that keeps them in order too.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from livekit.protocol import models, rtc

from actors import ids, logs, protocol
from actors.dynacast import subscribed_qualities
from actors.errors import (
    ActorGone,
    CandidateError,
    LimitExceededError,
    NotFoundError,
    PermissionDeniedError,
    RaysfuError,
    unwrap,
)
from actors.events import ParticipantsChanged, QualityChanged, RoomChanged, RoomEvent, SpeakersChanged
from actors.hosting import ActorRef
from actors.inbox import SequencedInbox
from actors.media.ratelog import RateLimitedLog
from actors.naming import participant_label
from actors.tasks import spawn
from actors.track_settings import TrackSettings

if TYPE_CHECKING:
    from actors.worker import MediaWorker

log = logging.getLogger(__name__)
_ratelog = RateLimitedLog(log)  # requests refused for what a client did, once per cause

# A session whose WebSocket dropped while one of its peer connections is connected waits for the client to
# resume it (LiveKit's); once no peer connection is connected it ends after this long, as LiveKit's
# disconnect timer does.
RESUME_GRACE = 5.0
WATCH_INTERVAL = 0.5  # seconds between looks at a detached session's peer connections


@dataclass(frozen=True)
class JoinParams:
    identity: str
    name: str = ""
    metadata: str = ""
    attributes: dict[str, str] = field(default_factory=dict)
    permission: models.ParticipantPermission = field(default_factory=models.ParticipantPermission)
    kind: int = 0  # models.ParticipantInfo.Kind
    protocol: int = 0  # the signalling protocol version the client speaks (`protocol` in its URL)
    client_protocol: int = 0
    auto_subscribe: bool = True
    sdk: str = ""
    sid: str = ""  # chosen by the gateway, which routes the session's messages by it (the first socket's)
    gateway: str = ""  # the gateway holding the client's WebSocket (its outbox on the host)
    node: str = ""  # the gateway's node label: the participant is placed there while it has room
    single_pc: bool = False  # joined on /rtc/v1: one peer connection, offered by the client only


class Participant:
    def __init__(
        self,
        host: MediaWorker,
        room: ActorRef,
        room_name: str,
        info: models.ParticipantInfo,
        params: JoinParams,
    ) -> None:
        self._host = host
        self._room = room
        self._room_name = room_name
        self.ref = ActorRef(host.name, info.sid, participant_label(self._room_name, info.identity))
        self._info = info
        self._params = params
        # The client's WebSocket: its gateway, and the key the gateway routes its messages by (the sid for
        # the first; a resume through any gateway brings another). None while the session has none.
        self._socket: tuple[str, str] | None = (params.gateway, info.sid)
        self._closed_reason: models.DisconnectReason | None = None
        self._closed = asyncio.Event()
        self._offer_id = 0
        self._started = asyncio.Event()  # the subscriber transport exists on the worker
        self._negotiation: asyncio.Task[None] | None = None
        self._renegotiate = False
        # With one PC: a client offer is being answered / one was answered (see _negotiate).
        self._answering = False
        self._answered = False
        self._ice_restart = False  # the next subscriber offer restarts ICE (a resume)
        self._placed: set[str] = set()  # with one PC: subscribed tracks on an m-line at the last answer
        self._pending: dict[str, models.TrackInfo] = {}  # AddTrackRequest cid -> announced, not yet bound
        self._published: dict[str, models.TrackInfo] = {}  # track sid -> bound to a publisher m-line
        self._published_cids: dict[str, str] = {}  # track sid -> the client's cid of it
        self._subscribed: dict[str, int] = {}  # track sid -> TrackType, of what this participant receives
        self._publishers: dict[str, str] = {}  # track sid -> its publisher's sid, of what it receives
        self._forwarders: dict[str, ActorRef] = {}  # track sid -> its TrackForwarder, of what it receives
        self._track_settings = TrackSettings(self._apply_track_settings, f"{self}")
        self._quality_reports = 0  # numbers this participant's reports to the forwarders (dynacast)
        # The room's active speakers and everybody's connection quality, as the room last said: what a new
        # subscription's publisher is announced with (as in LiveKit).
        self._speaking: dict[str, models.SpeakerInfo] = {}
        self._qualities: dict[str, rtc.ConnectionQualityInfo] = {}
        # Subscriptions over limit.subscription_limit_*, waiting for a free slot of their kind (as in
        # LiveKit): track sid -> (its info, its publisher's sid, its forwarder), in arrival order.
        self._waiting: dict[str, tuple[models.TrackInfo, str, ActorRef]] = {}
        self._signals: SequencedInbox[rtc.SignalRequest] = SequencedInbox(self._on_signal, f"{self}:signal")
        self._events: SequencedInbox[RoomEvent] = SequencedInbox(self._on_room_event, f"{self}:events")

    def __repr__(self) -> str:
        return f"Participant({self._room_name}/{self._info.identity} {self._info.sid})"

    @property
    def sid(self) -> str:
        return self._info.sid

    @property
    def room(self) -> ActorRef:
        return self._room

    def microphone_tracks(self) -> list[str]:
        """The sids of its published microphone tracks: what its speaking level is measured on."""
        return [sid for sid, info in self._published.items() if info.source == models.TrackSource.MICROPHONE]

    # ----- lifecycle -----------------------------------------------------------------------------------

    async def start(self) -> None:
        """Set up the subscriber transport (the room registered this participant on its worker): the
        server's offer follows the JoinResponse. With one PC the client offers first, and always."""
        self._started.set()
        if not self._params.single_pc:
            self._negotiate()

    async def close(self, reason: models.DisconnectReason, notify: bool, by_room: bool = False) -> None:
        """End the session; with `notify`, the client is told why with a LeaveRequest. Unless the room ended
        it (`by_room`), the room is told."""
        if self._closed_reason is not None:
            return
        self._closed_reason = reason
        if notify:
            self._send(protocol.leave(reason))
        self._drop_socket()
        if self._negotiation is not None:
            self._negotiation.cancel()
        self._track_settings.close()
        self._host.remove(self._info.sid)
        await self._host.remove_participant(self._info.sid)
        self._closed.set()
        if not by_room:
            self._room.tell("participant_closed", self._info.identity, self._info.sid, reason)
        log.info(
            "%s: session closed (%s)",
            self,
            models.DisconnectReason.Name(reason),
            extra=logs.fields(
                self._room_name, self._info.identity
            ),  # also when no message is being delivered
        )

    async def gateway_lost(self, gateway: str) -> None:
        """The host heard nothing from `gateway` for too long (see MediaWorker): it holds no socket now."""
        if self._socket is not None and self._socket[0] == gateway:
            log.warning("%s: gateway %s stopped polling", self, gateway)
            await self.signal_closed(self._socket[1])

    async def signal_closed(self, key: str) -> None:
        """The client's WebSocket `key` dropped (not a leave). As in LiveKit, a session none of whose peer
        connections ever connected ends; else it waits for the client to resume it (`resume`), until none
        of them has been connected for RESUME_GRACE."""
        if self._closed_reason is not None or self._socket is None or self._socket[1] != key:
            return  # a socket that a resume replaced
        if not self._host.peers_connected(self._info.sid, ever=True):
            await self.close(models.DisconnectReason.SIGNAL_CLOSE, False)
            return
        log.info("%s: signal connection lost; waiting for the client to resume", self)
        self._socket = None
        spawn(self._await_resume(), f"{self!r}: waiting for a resume")

    async def _await_resume(self) -> None:
        loop = asyncio.get_running_loop()
        disconnected_since: float | None = None
        while self._socket is None and self._closed_reason is None:
            if self._host.peers_connected(self._info.sid):
                disconnected_since = None
            elif disconnected_since is None:
                disconnected_since = loop.time()
            elif loop.time() - disconnected_since >= RESUME_GRACE:
                log.info("%s: not resumed, and its peer connections are down: closing", self)
                await self.close(models.DisconnectReason.SIGNAL_CLOSE, False)
                return
            await asyncio.sleep(WATCH_INTERVAL)

    async def resume(
        self, gateway: str, key: str, participants: list[models.ParticipantInfo], room: models.Room
    ) -> bytes:
        """The client reconnected its signalling (`reconnect=1`) on WebSocket `key` of `gateway`: the session
        goes on there. Returns the ReconnectResponse for the gateway to send first; then, as LiveKit does,
        everybody's info and the room's, and a subscriber offer that restarts ICE (the client restarts it
        on the publisher PC and sends its SyncState). NotFoundError when the session cannot go on: ended,
        or its peer connections failed (aioice cannot restart a closed connection): the client then
        joins anew."""
        if self._closed_reason is not None:
            raise NotFoundError(f"participant {self._info.sid} has left")
        if self._host.peers_failed(self._info.sid):
            await self.close(models.DisconnectReason.STATE_MISMATCH, False)
            raise NotFoundError(f"participant {self._info.sid}'s peer connections failed")
        self._drop_socket()  # an older socket still open: LiveKit closes it too
        self._socket = (gateway, key)
        self._host.outboxes.expect(gateway)
        self._signals = SequencedInbox(self._on_signal, f"{self}:signal:{key}")
        log.info("%s: resumed through %s", self, gateway)
        self._send(rtc.SignalResponse(update=rtc.ParticipantUpdate(participants=participants)))
        self._send(rtc.SignalResponse(room_update=rtc.RoomUpdate(room=room)))
        if not self._params.single_pc:  # with one PC the client's own ICE-restart offer comes next
            self._negotiate(ice_restart=True)
        return protocol.reconnect_response(self._host.name, self._host.last_reliable_sequence(self._info.sid))

    async def worker_lost(self, worker: str) -> None:
        """A media worker died. If it was the room's home, the session cannot go on without its room: the
        client is told to reconnect (LiveKit's LeaveRequest RECONNECT), which rejoins a rebuilt room."""
        if worker == self._room.host and self._closed_reason is None:
            self._send(protocol.leave(models.DisconnectReason.STATE_MISMATCH, reconnect=True))
            await self.close(models.DisconnectReason.STATE_MISMATCH, False, by_room=True)

    # ----- messages from the gateway and the room ------------------------------------------------------

    async def signal(self, seq: int, request: rtc.SignalRequest, key: str = "") -> None:
        """Request `seq` of WebSocket `key` (numbered per socket; those of a socket a resume replaced are
        dropped)."""
        if self._socket is not None and key in ("", self._socket[1]):
            await self._signals.put(seq, request)

    async def room_event(self, seq: int, event: RoomEvent) -> None:
        await self._events.put(seq, event)

    # ----- client requests -----------------------------------------------------------------------------

    async def _on_signal(self, req: rtc.SignalRequest) -> None:
        if self._closed_reason is not None:
            return
        kind = req.WhichOneof("message")
        try:
            if kind == "offer":
                await self._on_publisher_offer(req.offer)
            elif kind == "answer":
                await self._host.subscriber_answer(self._info.sid, req.answer.sdp)
            elif kind == "trickle":
                await self._on_trickle(req.trickle)
            elif kind == "add_track":
                self._on_add_track(req.add_track)
            elif kind == "mute":
                await self._on_mute(req.mute)
            elif kind == "subscription":
                await self._on_subscription(req.subscription)
            elif kind == "track_setting":
                await self._on_track_setting(req.track_setting)
            elif kind == "update_metadata":
                await self._update_metadata(req.update_metadata)
            elif kind == "subscription_permission":
                await self._room.call(
                    "update_subscription_permission", self._info.identity, req.subscription_permission
                )
            elif kind == "leave":
                await self.close(models.DisconnectReason.CLIENT_INITIATED, False)
            elif kind == "update_audio_track":
                update_audio = req.update_audio_track
                self._check_own_track(update_audio.track_sid, update_audio_track=update_audio)
            elif kind == "update_video_track":
                update_video = req.update_video_track
                self._check_own_track(update_video.track_sid, update_video_track=update_video)
            elif kind == "sync_state":
                await self._on_sync_state(req.sync_state)
            elif kind == "update_layers":
                pass  # accepted; raysfu has no layer hints yet
            else:
                self._refuse(
                    kind or "empty", rtc.RequestResponse.UNSUPPORTED_TYPE, f"unsupported request {kind}"
                )
        except RaysfuError as exc:  # raised here or by another actor (a Ray error then subclasses the cause)
            self._refuse(kind or "", rtc.RequestResponse.INVALID_REQUEST, str(unwrap(exc)))

    async def _on_sync_state(self, state: rtc.SyncState) -> None:
        """A resuming client's view (LiveKit's onSyncState): every track it says it publishes must be one
        this session knows, with its TrackInfo, else the client must join anew (a LeaveRequest RECONNECT);
        its subscriptions that differ from auto-subscribe are applied."""
        known = set(self._published) | {info.sid for info in self._pending.values()}
        for publication in state.publish_tracks:
            if not publication.HasField("track") or publication.track.sid not in known:
                sid = publication.track.sid or publication.cid
                self._log_once("sync_state", "resume with unknown track %s: a full reconnect", sid)
                self._send(protocol.leave(models.DisconnectReason.STATE_MISMATCH, reconnect=True))
                await self.close(models.DisconnectReason.STATE_MISMATCH, False)
                return
        for track_sid in state.track_sids_disabled:
            if track_sid in self._subscribed:
                await self._host.set_subscription_settings(self._info.sid, track_sid, True, 0, 0, 0)
        await self._on_subscription(state.subscription)

    # ----- publishing ----------------------------------------------------------------------------------

    def _on_add_track(self, req: rtc.AddTrackRequest) -> None:
        """Announce a track the client is about to publish; it is bound to an m-line by the next offer."""
        permission = self._info.permission
        refusal = rtc.RequestResponse.NOT_ALLOWED
        reason = ""
        if not permission.can_publish:
            reason = "this participant may not publish"
        elif permission.can_publish_sources and req.source not in permission.can_publish_sources:
            reason = f"this participant may not publish {models.TrackSource.Name(req.source).lower()}"
        elif req.type not in (models.TrackType.AUDIO, models.TrackType.VIDEO):
            refusal, reason = (
                rtc.RequestResponse.UNSUPPORTED_TYPE,
                "only audio and video tracks are published",
            )
        elif req.sid and req.sid not in self._published:  # another codec of a published track (LiveKit)
            refusal, reason = rtc.RequestResponse.NOT_FOUND, f"track {req.sid} not found"
        elif req.cid in self._pending or req.cid in self._published_cids.values():
            reason = f"track {req.cid} is already published"
        limit = self._host.limits.max_published_tracks
        if limit and len(self._pending) + len(self._published) >= limit:  # LiveKit's too many pending tracks
            refusal, reason = (
                rtc.RequestResponse.LIMIT_EXCEEDED,
                f"too many tracks, rejecting new track, limit: {limit}",
            )
        if reason:
            self._log_once("add_track", "refused track %s: %s", req.cid, reason)
            self._answer(rtc.RequestResponse(reason=refusal, message=reason, add_track=req))
            return
        info = models.TrackInfo(
            sid=ids.track_sid(),
            type=req.type,
            name=req.name,
            source=req.source,
            muted=req.muted,
            width=req.width,
            height=req.height,
            simulcast=len(req.layers) > 1,
            layers=req.layers,
            disable_dtx=req.disable_dtx,
            stereo=req.stereo,
            stream=req.stream,
            mime_type=_mime_hint(req),
        )
        self._pending[req.cid] = info
        self._send(rtc.SignalResponse(track_published=rtc.TrackPublishedResponse(cid=req.cid, track=info)))

    async def _on_publisher_offer(self, offer: rtc.SessionDescription) -> None:
        pending = {cid: info.sid for cid, info in self._pending.items()}
        self._renegotiate = False  # with one PC, this offer's answer carries every change made so far
        self._answering = True
        try:
            answer = await self._host.publisher_offer(self._info.sid, offer.sdp, pending)
        finally:
            self._answering = False
        description = rtc.SessionDescription(
            type="answer", sdp=answer.sdp, id=offer.id, mid_to_track_id=answer.mid_to_track_id
        )
        self._send(rtc.SignalResponse(answer=description))
        if self._params.single_pc:
            self._answered = True
            self._request_media_sections(force=self._renegotiate)
            # A subscription that waited for an m-line has its down track only now: its settings (and
            # what it needs of the publisher, for dynacast) apply to it now.
            placed = {t for t in answer.mid_to_track_id.values() if t in self._subscribed}
            for track_sid in placed - self._placed:
                await self._track_settings.bind(track_sid)
            self._placed = placed
        for bound in answer.bound:
            info = self._pending.pop(bound.cid)
            info.mid = bound.mid
            info.mime_type = bound.mime_type
            self._published[info.sid] = info
            self._published_cids[info.sid] = bound.cid
            await self._room.call("track_published", self._info.identity, info)
        for track_sid in answer.ended:
            self._published_cids.pop(track_sid, None)
            if self._published.pop(track_sid, None) is not None:
                await self._room.call("track_unpublished", self._info.identity, track_sid)

    async def _on_mute(self, req: rtc.MuteTrackRequest) -> None:
        pending = self._pending_track(req.sid)
        if pending is not None:
            pending.muted = req.muted  # announced as muted (or not) when it is bound
        elif req.sid in self._published:
            await self._room.call("mute_published_track", self._info.identity, req.sid, req.muted)
        else:
            self._not_found(req.sid, mute=req)

    def _check_own_track(self, track_sid: str, **request: Any) -> None:
        """A publisher's change to a track's audio features or video size: accepted for its own tracks
        (raysfu does not use them yet), NOT_FOUND for any other, as in LiveKit."""
        if track_sid not in self._published and self._pending_track(track_sid) is None:
            self._not_found(track_sid, **request)

    def _pending_track(self, track_sid: str) -> models.TrackInfo | None:
        return next((info for info in self._pending.values() if info.sid == track_sid), None)

    def _not_found(self, track_sid: str, **request: Any) -> None:
        """LiveKit's answer to a request about a track this participant does not publish."""
        self._log_once("track_not_found", "no track %s", track_sid)
        message = f"track {track_sid} is not published by this participant"
        self._answer(rtc.RequestResponse(reason=rtc.RequestResponse.NOT_FOUND, message=message, **request))

    async def _on_trickle(self, req: rtc.TrickleRequest) -> None:
        try:
            await self._host.add_ice_candidate(self._info.sid, req.target, req.candidateInit)
        except CandidateError as exc:  # LiveKit's answer to a candidate it cannot decode
            self._log_once("trickle", "refused candidate: %s", unwrap(exc))
            response = rtc.RequestResponse(
                reason=rtc.RequestResponse.UNCLASSIFIED_ERROR, message=str(unwrap(exc)), trickle=req
            )
            self._answer(response)

    # ----- subscribing ---------------------------------------------------------------------------------

    async def _on_subscription(self, req: rtc.UpdateSubscription) -> None:
        sids = protocol.subscription_track_sids(req)
        if sids:
            if not req.subscribe:
                for sid in sids:
                    self._track_settings.forget(sid)
            await self._room.call("update_subscriptions", self._info.identity, sids, req.subscribe)

    async def _on_track_setting(self, req: rtc.UpdateTrackSettings) -> None:
        """Kept per track and applied as LiveKit does (actors/track_settings.py), also for a track whose
        subscription is still on its way."""
        for track_sid in dict.fromkeys(req.track_sids):
            settings = rtc.UpdateTrackSettings()
            settings.CopyFrom(req)
            del settings.track_sids[:]
            self._track_settings.update(track_sid, settings)

    async def _apply_track_settings(self, track_sid: str, settings: rtc.UpdateTrackSettings) -> None:
        """Set a subscription's down track to the settings, and tell the track's forwarder what the
        subscription now needs of the publisher (dynacast)."""
        s = settings
        quality = await self._host.set_subscription_settings(
            self._info.sid, track_sid, s.disabled, int(s.quality), s.width, s.height
        )
        forwarder = self._forwarders.get(track_sid)
        if quality is not None and forwarder is not None:
            self._quality_reports += 1
            forwarder.tell("subscriber_quality", self._info.sid, self._quality_reports, quality)

    async def subscribed_quality(self, track_sid: str, mime_type: str, quality: int) -> None:
        """From the forwarder of a track this participant publishes: the highest quality its subscribers
        need (dynacast), which LiveKit's SDKs act on when they publish with `dynacast`."""
        if track_sid not in self._published or self._closed_reason is not None:
            return
        qualities = subscribed_qualities(quality)
        codec = rtc.SubscribedCodec(codec=mime_type.lower().removeprefix("video/"), qualities=qualities)
        update = rtc.SubscribedQualityUpdate(
            track_sid=track_sid, subscribed_qualities=qualities, subscribed_codecs=[codec]
        )
        self._send(rtc.SignalResponse(subscribed_quality_update=update))

    async def subscribe_track(self, info: models.TrackInfo, publisher_sid: str, forwarder: ActorRef) -> bool:
        """From the track's forwarder: start receiving it (a new subscriber offer follows). False when it
        was not added now (the session ended, or it waits for a free slot of the subscription limit)."""
        started = asyncio.ensure_future(self._started.wait())
        closed = asyncio.ensure_future(self._closed.wait())
        await asyncio.wait((started, closed), return_when=asyncio.FIRST_COMPLETED)
        started.cancel()
        closed.cancel()
        if self._closed_reason is not None or info.sid in self._subscribed or info.sid in self._waiting:
            return False
        if self._at_subscription_limit(info.type):
            self._waiting[info.sid] = (info, publisher_sid, forwarder)
            self._log_once(
                f"subscription_limit:{info.type}", "subscription limit reached; %s waits", info.sid
            )
            return False
        self._subscribed[info.sid] = info.type  # before the await: counted by the next limit check
        new_publisher = not self._concerns(publisher_sid)
        self._publishers[info.sid] = publisher_sid
        self._forwarders[info.sid] = forwarder
        try:
            await self._host.subscribe(self._info.sid, info.sid, publisher_sid)
        except BaseException:
            del self._subscribed[info.sid]
            del self._publishers[info.sid]
            del self._forwarders[info.sid]
            raise
        await self._track_settings.bind(info.sid)
        self._negotiate()
        if new_publisher:
            self._announce_publisher(publisher_sid)
        return True

    async def subscription_permission_changed(
        self, publisher_sid: str, track_sid: str, allowed: bool
    ) -> None:
        """From a track's forwarder: this participant may (again) or may no longer subscribe to it."""
        update = rtc.SubscriptionPermissionUpdate(
            participant_sid=publisher_sid, track_sid=track_sid, allowed=allowed
        )
        self._send(rtc.SignalResponse(subscription_permission_update=update))

    async def track_subscribed(self, track_sid: str) -> None:
        """From the forwarder of a track this participant publishes: somebody subscribed to it, the first
        time (LiveKit's TrackSubscribed, which the SDKs report as the local track being subscribed)."""
        if self._decodes_newer_messages:
            self._send(rtc.SignalResponse(track_subscribed=rtc.TrackSubscribed(track_sid=track_sid)))

    async def unsubscribe_track(self, track_sid: str) -> None:
        if self._waiting.pop(track_sid, None) is not None:
            return
        if self._closed_reason is not None or track_sid not in self._subscribed:
            return
        kind = self._subscribed.pop(track_sid)
        self._publishers.pop(track_sid, None)
        self._forwarders.pop(track_sid, None)
        self._track_settings.unbind(track_sid)
        await self._host.unsubscribe(self._info.sid, track_sid)
        self._negotiate()
        waiting = next((sid for sid, (info, _, _) in self._waiting.items() if info.type == kind), None)
        if waiting is not None:
            await self.subscribe_track(*self._waiting.pop(waiting))

    def _at_subscription_limit(self, kind: int) -> bool:
        """LiveKit's limit.subscription_limit_video / _audio (0: none) reached for tracks of this kind."""
        limits = self._host.limits
        by_kind: dict[int, int] = {
            models.TrackType.VIDEO: limits.subscription_limit_video,
            models.TrackType.AUDIO: limits.subscription_limit_audio,
        }
        limit = by_kind.get(kind, 0)
        return bool(limit) and sum(1 for k in self._subscribed.values() if k == kind) >= limit

    def _negotiate(self, ice_restart: bool = False) -> None:
        """Ask for a subscriber offer. Requests that come while one is being made are served by one more
        offer; the peers (actors.media.peer) make each offer only once the previous one was answered.
        None is made while the session has no WebSocket: a resume asks for one.
        With one PC the client offers: it is asked to (LiveKit's MediaSectionsRequirement, for as many
        more m-lines as the subscriptions need), unless the answer to its offer under way, or to its first
        one, will carry the change or ask for the offer itself; its resume re-offers (an ICE restart)."""
        self._renegotiate = True
        if self._params.single_pc:
            if self._answered and not self._answering and self._socket is not None:
                self._renegotiate = False
                self._request_media_sections(force=True)
            return
        self._ice_restart = self._ice_restart or ice_restart
        if self._negotiation is None or self._negotiation.done():
            self._negotiation = asyncio.get_running_loop().create_task(self._negotiation_loop())

    def _request_media_sections(self, force: bool) -> None:
        """With one PC: ask the client for the m-lines the subscriptions still need; with `force` even
        for none, which makes it offer again (as LiveKit asks for a renegotiation)."""
        spawn(self._send_media_sections_requirement(force), f"{self!r}: media sections requirement")

    async def _send_media_sections_requirement(self, force: bool) -> None:
        try:
            audios, videos = await self._host.media_sections_requirement(self._info.sid)
        except (NotFoundError, ActorGone):  # the session's peers went first: a teardown race
            return
        if (force or audios or videos) and self._closed_reason is None:
            requirement = rtc.MediaSectionsRequirement(num_audios=audios, num_videos=videos)
            self._send(rtc.SignalResponse(media_sections_requirement=requirement))
            log.info(
                "%s: asked for an offer with %d more audio and %d more video m-lines", self, audios, videos
            )

    async def _negotiation_loop(self) -> None:
        while self._renegotiate and self._closed_reason is None and self._socket is not None:
            self._renegotiate = False
            ice_restart, self._ice_restart = self._ice_restart, False
            try:
                await self._send_subscriber_offer(ice_restart)
            except (NotFoundError, ActorGone) as exc:  # the session's peers went first: a teardown race
                log.info("%s: no subscriber offer, the session is ending: %s", self, unwrap(exc))
                return
            except RaysfuError as exc:
                if self._closed_reason is None:
                    log.error("%s: subscriber offer failed: %s", self, unwrap(exc))
                return
            log.info("%s: subscriber offer %d sent", self, self._offer_id)

    async def _update_metadata(self, update: rtc.UpdateParticipantMetadata) -> None:
        response = rtc.RequestResponse(request_id=update.request_id, update_metadata=update)
        try:
            await self._room.call(
                "update_participant",
                self._info.identity,
                metadata=update.metadata if update.metadata else None,
                name=update.name if update.name else None,
                attributes=dict(update.attributes) if update.attributes else None,
                by_self=True,
            )
            response.reason = rtc.RequestResponse.OK
        except PermissionDeniedError as exc:
            response.reason = rtc.RequestResponse.NOT_ALLOWED
            response.message = str(unwrap(exc))
            self._log_once("update_metadata", "refused update: %s", response.message)
        except LimitExceededError as exc:
            response.reason = rtc.RequestResponse.LIMIT_EXCEEDED
            response.message = str(unwrap(exc))
            self._log_once("update_metadata_limit", "refused update: %s", response.message)
        self._answer(response)

    def _refuse(self, kind: str, reason: rtc.RequestResponse.Reason, message: str) -> None:
        self._log_once(kind, "refused %s: %s", kind, message)
        self._answer(rtc.RequestResponse(reason=reason, message=message))

    def _answer(self, response: rtc.RequestResponse) -> None:
        """Send a RequestResponse as LiveKit does: an OK only to clients of protocol 15 and later (older
        ones take silence for success), none to those that cannot decode it."""
        if self._decodes_newer_messages and (
            response.reason != rtc.RequestResponse.OK or self._params.protocol > 14
        ):
            self._send(rtc.SignalResponse(request_response=response))

    @property
    def _decodes_newer_messages(self) -> bool:
        """Rust SDKs before protocol 10 fail on RequestResponse and TrackSubscribed (LiveKit's clientinfo)."""
        return self._params.sdk != "rust" or self._params.protocol >= 10

    def _log_once(self, key: str, fmt: str, *args: object) -> None:
        """A refusal this client caused: a warning, once per cause (`key`, a fixed name) in an interval."""
        _ratelog.warning(key, "%s: " + fmt, self, *args)

    # ----- room events ---------------------------------------------------------------------------------

    async def _on_room_event(self, event: RoomEvent) -> None:
        if self._closed_reason is not None:
            return
        if isinstance(event, ParticipantsChanged):
            for p in event.participants:
                if p.sid == self._info.sid:
                    self._info.CopyFrom(p)
            self._send(rtc.SignalResponse(update=rtc.ParticipantUpdate(participants=event.participants)))
        elif isinstance(event, RoomChanged):
            self._send(rtc.SignalResponse(room_update=rtc.RoomUpdate(room=event.room)))
        elif isinstance(event, SpeakersChanged):
            for speaker in event.speakers:
                if speaker.active:
                    self._speaking[speaker.sid] = speaker
                else:
                    self._speaking.pop(speaker.sid, None)
            speakers = [s for s in event.speakers if self._concerns(s.sid)]
            if speakers:
                self._send(rtc.SignalResponse(speakers_changed=rtc.SpeakersChanged(speakers=speakers)))
        elif isinstance(event, QualityChanged):
            self._qualities = {q.participant_sid: q for q in event.qualities}
            updates = [q for q in event.qualities if self._concerns(q.participant_sid)]
            if updates:
                self._send(
                    rtc.SignalResponse(connection_quality=rtc.ConnectionQualityUpdate(updates=updates))
                )

    def _announce_publisher(self, sid: str) -> None:
        """The first subscription to a publisher: tell the client whether it speaks and how well it is
        connected, not waiting for the next change."""
        speaker = self._speaking.get(sid)
        if speaker is not None:
            self._send(rtc.SignalResponse(speakers_changed=rtc.SpeakersChanged(speakers=[speaker])))
        info = self._qualities.get(sid)
        if info is not None:
            self._send(rtc.SignalResponse(connection_quality=rtc.ConnectionQualityUpdate(updates=[info])))

    def _concerns(self, sid: str) -> bool:
        """Whether news of participant `sid` is for this one: itself, or a publisher it subscribes to."""
        return sid == self._info.sid or sid in self._publishers.values()

    # ----- helpers -------------------------------------------------------------------------------------

    async def _send_subscriber_offer(self, ice_restart: bool = False) -> None:
        sdp = await self._host.subscriber_offer(self._info.sid, ice_restart)
        self._offer_id += 1
        self._send(rtc.SignalResponse(offer=rtc.SessionDescription(type="offer", sdp=sdp, id=self._offer_id)))

    def _send(self, message: rtc.SignalResponse) -> None:
        """To the client; dropped while it has no WebSocket (a resume sends it what it needs anew)."""
        if self._socket is not None:
            self._host.outboxes.put(*self._socket, message.SerializeToString())

    def _drop_socket(self) -> None:
        """Have the gateway close the client's WebSocket (after what was sent before)."""
        if self._socket is not None:
            self._host.outboxes.put(*self._socket, None)
            self._socket = None


def _mime_hint(req: rtc.AddTrackRequest) -> str:
    """The codec the client announces (the negotiated one replaces it once the m-line is bound)."""
    if req.type == models.TrackType.AUDIO:
        return "audio/opus"
    for codec in req.simulcast_codecs:
        if codec.codec:
            return f"video/{codec.codec.upper()}"
    return "video/VP8"
