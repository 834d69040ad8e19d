"""The Participant actor: one signalling session's state machine.

The gateway numbers the client's requests and the Room numbers its events; both go through a
SequencedInbox because async Ray actors run calls out of order. Messages for the client wait in an
outbox that the gateway drains with one long-poll at a time, which keeps them in order too.
"""

# Annotations stay strings: Ray pickles actor classes by value, and protobuf enum types do not pickle.
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import ray
from livekit.protocol import models, rtc
from ray.actor import ActorHandle

from actors import ids, logs
from actors.errors import InvalidRequestError, LimitExceededError, PermissionDeniedError, RaysfuError, unwrap
from actors.events import ParticipantsChanged, RoomChanged, RoomEvent
from actors.inbox import SequencedInbox
from actors.naming import NAMESPACE
from actors.placement import actor_options, node_of_worker, worker_node_label

log = logging.getLogger(__name__)

SERVER_VERSION = "1.9.0"  # the SDKs gate features (RPC needs >= 1.8.0) on LiveKit's server version
PROTOCOL = 16
PING_INTERVAL = 5
PING_TIMEOUT = 15
# A gateway that stops polling this long is gone (crashed or partitioned): end the session.
GATEWAY_TIMEOUT = 30.0
# After the session ends, how long the gateway may take to fetch the last messages (e.g. a LeaveRequest).
DRAIN_TIMEOUT = 3.0
# A subscriber that does not answer an offer within this time is not waited for any longer (it must not stall
# the negotiations that follow).
ANSWER_TIMEOUT = 10.0
# The grant's canPublishSources names, as the TrackSource each allows.
SOURCES = {
    "camera": models.TrackSource.CAMERA,
    "microphone": models.TrackSource.MICROPHONE,
    "screen_share": models.TrackSource.SCREEN_SHARE,
    "screen_share_audio": models.TrackSource.SCREEN_SHARE_AUDIO,
}


@dataclass(frozen=True)
class JoinParams:
    identity: str
    name: str = ""
    metadata: str = ""
    attributes: dict[str, str] = field(default_factory=dict)
    permission: models.ParticipantPermission = field(default_factory=models.ParticipantPermission)
    kind: int = 0  # models.ParticipantInfo.Kind
    client_protocol: int = 0
    auto_subscribe: bool = True
    sdk: str = ""


@dataclass(frozen=True)
class Poll:
    messages: list[bytes]  # serialized SignalResponses, in order
    cursor: int  # pass back to the next poll
    closed: bool  # the session ended: send `messages`, then close the WebSocket


class Participant:
    def __init__(
        self,
        worker: str,
        room: ActorHandle[Any],
        room_name: str,
        info: models.ParticipantInfo,
        params: JoinParams,
    ) -> None:
        logs.configure()
        self._room = room
        self._room_name = room_name
        self._worker_name = worker
        self._worker = ray.get_actor(worker, namespace=NAMESPACE)
        self._info = info
        self._params = params
        self._outbox: list[bytes] = []
        self._outbox_base = 0  # cursor value of _outbox[0]
        self._outbox_changed = asyncio.Event()
        self._closed_reason: models.DisconnectReason | None = None
        self._closed = asyncio.Event()
        self._drained = asyncio.Event()
        self._last_poll = time.monotonic()
        self._offer_id = 0
        self._started = asyncio.Event()  # the subscriber transport exists on the worker
        self._negotiation: asyncio.Task[None] | None = None
        self._renegotiate = False
        self._answered = asyncio.Event()
        self._pending: dict[str, models.TrackInfo] = {}  # AddTrackRequest cid -> announced, not yet bound
        self._published: dict[str, models.TrackInfo] = {}  # track sid -> bound to a publisher m-line
        self._subscribed: set[str] = set()  # track sids this participant receives
        self._warned: set[str] = set()
        self._signals: SequencedInbox[rtc.SignalRequest] = SequencedInbox(self._on_signal, f"{self}:signal")
        self._events: SequencedInbox[RoomEvent] = SequencedInbox(self._on_room_event, f"{self}:events")
        # From creation, not from start(): a session whose gateway never comes (it died, or its client left
        # before the join was answered) ends like one whose gateway went away. Ray runs an async actor's
        # __init__ on its event loop.
        self._watchdog = asyncio.get_running_loop().create_task(self._watch_gateway())

    def __repr__(self) -> str:
        return f"Participant({self._room_name}/{self._info.identity} {self._info.sid})"

    # ----- lifecycle -----------------------------------------------------------------------------------

    async def start(self) -> None:
        """Set up the subscriber transport (the room registered this participant on its worker): the
        server's offer follows the JoinResponse."""
        self._started.set()
        self._negotiate()

    async def close(self, reason: models.DisconnectReason, notify: bool) -> None:
        """End the session; with `notify`, the client is told why with a LeaveRequest."""
        if self._closed_reason is not None:
            return
        self._closed_reason = reason
        if notify:
            self._send(
                rtc.SignalResponse(leave=rtc.LeaveRequest(reason=reason, action=rtc.LeaveRequest.DISCONNECT))
            )
        else:
            self._drained.set()
        self._outbox_changed.set()
        try:
            await self._worker.remove_participant.remote(self._info.sid)
        except ray.exceptions.RayError as exc:
            log.warning("%s: could not release media: %s", self, exc)
        for task in (self._watchdog, self._negotiation):
            if task is not None:
                task.cancel()
        self._closed.set()
        log.info("%s: session closed (%s)", self, models.DisconnectReason.Name(reason))

    async def wait_closed(self) -> models.DisconnectReason:
        """Returns the disconnect reason once the session has ended and its last messages were fetched."""
        await self._closed.wait()
        try:
            await asyncio.wait_for(self._drained.wait(), DRAIN_TIMEOUT)
        except TimeoutError:
            log.info("%s: gateway did not fetch the last messages", self)
        assert self._closed_reason is not None
        return self._closed_reason

    async def _watch_gateway(self) -> None:
        while True:
            await asyncio.sleep(GATEWAY_TIMEOUT / 3)
            if time.monotonic() - self._last_poll > GATEWAY_TIMEOUT:
                log.warning("%s: gateway stopped polling, closing", self)
                await self.close(models.DisconnectReason.SIGNAL_CLOSE, False)
                return

    # ----- gateway interface ---------------------------------------------------------------------------

    async def signal(self, seq: int, request: rtc.SignalRequest) -> None:
        await self._signals.put(seq, request)

    async def room_event(self, seq: int, event: RoomEvent) -> None:
        await self._events.put(seq, event)

    async def poll(self, cursor: int, wait: float) -> Poll:
        """Messages for the client after `cursor`, waiting up to `wait` s for the first one."""
        self._last_poll = time.monotonic()
        # Everything before cursor has been sent: forget it.
        done = min(max(cursor - self._outbox_base, 0), len(self._outbox))
        del self._outbox[:done]
        self._outbox_base += done
        if not self._outbox and self._closed_reason is None:
            self._outbox_changed.clear()
            try:
                await asyncio.wait_for(self._outbox_changed.wait(), wait)
            except TimeoutError:
                pass
        closed = self._closed_reason is not None
        if closed and not self._outbox:
            self._drained.set()
        messages = list(self._outbox)
        return Poll(messages=messages, cursor=self._outbox_base + len(messages), closed=closed)

    # ----- client requests -----------------------------------------------------------------------------

    async def _on_signal(self, req: rtc.SignalRequest) -> None:
        if self._closed_reason is not None:
            return
        kind = req.WhichOneof("message")
        try:
            if kind == "offer":
                await self._on_publisher_offer(req.offer)
            elif kind == "answer":
                await self._worker.subscriber_answer.remote(self._info.sid, req.answer.sdp)
                self._answered.set()
            elif kind == "trickle":
                await self._worker.add_ice_candidate.remote(
                    self._info.sid, req.trickle.target, req.trickle.candidateInit
                )
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
            elif kind == "leave":
                await self.close(models.DisconnectReason.CLIENT_INITIATED, False)
            elif kind in ("subscription_permission", "sync_state", "update_layers", "update_audio_track"):
                pass  # accepted; raysfu has no per-subscriber permissions, resume or layer hints yet
            else:
                self._refuse(
                    kind or "empty", rtc.RequestResponse.UNSUPPORTED_TYPE, f"unsupported request {kind}"
                )
        except RaysfuError as exc:  # raised here or by an actor (Ray's error then subclasses the cause)
            self._refuse(kind or "", rtc.RequestResponse.INVALID_REQUEST, str(unwrap(exc)))

    # ----- publishing ----------------------------------------------------------------------------------

    def _on_add_track(self, req: rtc.AddTrackRequest) -> None:
        """Announce a track the client is about to publish; it is bound to an m-line by the next offer."""
        permission = self._info.permission
        reason = ""
        if not permission.can_publish:
            reason = "this participant may not publish"
        elif permission.can_publish_sources and req.source not in permission.can_publish_sources:
            reason = f"this participant may not publish {models.TrackSource.Name(req.source).lower()}"
        elif req.cid in self._pending or any(t.stream == req.cid for t in self._published.values()):
            reason = f"track {req.cid} is already published"
        if reason:
            self._log_once(f"add_track:{reason}", "refused track %s: %s", req.cid, reason)
            response = rtc.RequestResponse(
                reason=rtc.RequestResponse.NOT_ALLOWED, message=reason, add_track=req
            )
            self._send(rtc.SignalResponse(request_response=response))
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
        answer = await self._worker.publisher_offer.remote(self._info.sid, offer.sdp, pending)
        self._send(
            rtc.SignalResponse(answer=rtc.SessionDescription(type="answer", sdp=answer.sdp, id=offer.id))
        )
        for bound in answer.bound:
            info = self._pending.pop(bound.cid)
            info.mid = bound.mid
            info.mime_type = bound.mime_type
            self._published[info.sid] = info
            await self._room.track_published.remote(self._info.identity, info)
        for track_sid in answer.ended:
            if self._published.pop(track_sid, None) is not None:
                await self._room.track_unpublished.remote(self._info.identity, track_sid)

    async def _on_mute(self, req: rtc.MuteTrackRequest) -> None:
        if req.sid not in self._published:
            raise InvalidRequestError(f"track {req.sid} is not published by this participant")
        await self._room.mute_published_track.remote(self._info.identity, req.sid, req.muted)

    # ----- subscribing ---------------------------------------------------------------------------------

    async def _on_subscription(self, req: rtc.UpdateSubscription) -> None:
        sids = list(req.track_sids) + [sid for p in req.participant_tracks for sid in p.track_sids]
        if sids:
            await self._room.update_subscriptions.remote(self._info.identity, sids, req.subscribe)

    async def _on_track_setting(self, req: rtc.UpdateTrackSettings) -> None:
        for track_sid in req.track_sids:
            if track_sid in self._subscribed:
                await self._worker.set_subscription_settings.remote(
                    self._info.sid, track_sid, req.disabled, int(req.quality), req.width, req.height
                )

    async def subscribe_track(self, info: models.TrackInfo, publisher_sid: str) -> None:
        """From the track's forwarder: start receiving it (a new subscriber offer follows)."""
        started = asyncio.ensure_future(self._started.wait())
        closed = asyncio.ensure_future(self._closed.wait())
        await asyncio.wait((started, closed), return_when=asyncio.FIRST_COMPLETED)
        started.cancel()
        closed.cancel()
        if self._closed_reason is not None or info.sid in self._subscribed:
            return
        await self._worker.subscribe.remote(self._info.sid, info.sid, publisher_sid)
        self._subscribed.add(info.sid)
        self._negotiate()

    async def unsubscribe_track(self, track_sid: str) -> None:
        if self._closed_reason is not None or track_sid not in self._subscribed:
            return
        self._subscribed.discard(track_sid)
        await self._worker.unsubscribe.remote(self._info.sid, track_sid)
        self._negotiate()

    def _negotiate(self) -> None:
        """Ask for a subscriber offer; offers go out one at a time, each after the previous was answered."""
        self._renegotiate = True
        if self._negotiation is None or self._negotiation.done():
            self._negotiation = asyncio.get_running_loop().create_task(self._negotiation_loop())

    async def _negotiation_loop(self) -> None:
        while self._renegotiate and self._closed_reason is None:
            self._renegotiate = False
            self._answered.clear()
            try:
                await self._send_subscriber_offer()
            except (RaysfuError, ray.exceptions.RayError) as exc:
                log.error("%s: subscriber offer failed: %s", self, unwrap(exc))
                return
            log.info("%s: subscriber offer %d sent", self, self._offer_id)
            try:
                await asyncio.wait_for(self._answered.wait(), ANSWER_TIMEOUT)
            except TimeoutError:
                self._log_once(
                    "no-answer", "client did not answer the subscriber offer within %s s", ANSWER_TIMEOUT
                )

    async def _update_metadata(self, update: rtc.UpdateParticipantMetadata) -> None:
        response = rtc.RequestResponse(request_id=update.request_id, update_metadata=update)
        try:
            await self._room.update_participant.remote(
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
        self._send(rtc.SignalResponse(request_response=response))

    def _refuse(self, kind: str, reason: rtc.RequestResponse.Reason, message: str) -> None:
        self._log_once(kind, "refused %s: %s", kind, message)
        self._send(rtc.SignalResponse(request_response=rtc.RequestResponse(reason=reason, message=message)))

    def _log_once(self, key: str, fmt: str, *args: object) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning("%s: " + fmt, self, *args)

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

    # ----- helpers -------------------------------------------------------------------------------------

    async def _send_subscriber_offer(self) -> None:
        sdp = await self._worker.subscriber_offer.remote(self._info.sid)
        self._offer_id += 1
        self._send(rtc.SignalResponse(offer=rtc.SessionDescription(type="offer", sdp=sdp, id=self._offer_id)))

    def _send(self, message: rtc.SignalResponse) -> None:
        self._outbox.append(message.SerializeToString())
        self._outbox_changed.set()


def _mime_hint(req: rtc.AddTrackRequest) -> str:
    """The codec the client announces (the negotiated one replaces it once the m-line is bound)."""
    if req.type == models.TrackType.AUDIO:
        return "audio/opus"
    for codec in req.simulcast_codecs:
        if codec.codec:
            return f"video/{codec.codec.upper()}"
    return "video/VP8"


ParticipantActor = ray.remote(Participant)


def create_participant(
    name: str,
    worker: str,
    room: ActorHandle[Any],
    room_name: str,
    info: models.ParticipantInfo,
    params: JoinParams,
) -> ActorHandle[Any]:
    """A Participant actor on the node of the media worker it controls."""
    options = actor_options(name, node_of_worker(worker))
    return ParticipantActor.options(**options).remote(  # type: ignore[return-value]
        worker, room, room_name, info, params
    )


def join_response(
    room_info: models.Room, info: models.ParticipantInfo, others: list[models.ParticipantInfo], worker: str
) -> bytes:
    """The session's first message (a serialized SignalResponse), sent by the gateway as soon as the room
    seated the participant: the SDKs give up on a join whose JoinResponse takes more than a few seconds,
    and starting the Participant actor's process can take longer than that when many join at once."""
    join = rtc.JoinResponse(
        room=room_info,
        participant=info,
        other_participants=others,
        server_version=SERVER_VERSION,
        subscriber_primary=True,
        ping_interval=PING_INTERVAL,
        ping_timeout=PING_TIMEOUT,
        server_info=models.ServerInfo(
            edition=models.ServerInfo.Standard,
            version=SERVER_VERSION,
            protocol=PROTOCOL,
            node_id=worker_node_label(worker),
            debug_info="raysfu",
        ),
    )
    return rtc.SignalResponse(join=join).SerializeToString()
