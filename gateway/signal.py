"""The `/rtc` WebSocket: LiveKit's protobuf signalling, turned into messages to the session's Participant.

The gateway stays stateless about rooms: it authenticates, seats the session through the Room, then
passes client requests to the Participant (numbered, so that it can restore their order) and the
Participant's messages back to the client, both through the links to the Participant's host
(gateway.links). Pings are answered here, without a Ray call.
"""

import asyncio
import logging
import secrets
import time
from typing import Any

from google.protobuf.message import DecodeError
from livekit.protocol import models, rtc
from starlette.responses import PlainTextResponse
from starlette.websockets import WebSocket, WebSocketDisconnect

from actors import ids, limits, protocol
from actors.errors import ActorGone, LimitExceededError, NotFoundError, RaysfuError, RoomClosedError, unwrap
from actors.media.ratelog import RateLimitedLog
from actors.participant import JoinParams
from actors.registry import lookup_room, open_room
from actors.room import Joined
from gateway.auth import (
    AuthError,
    Claims,
    check_join,
    participant_permission,
    token_from_request,
    verify_token,
)
from gateway.config import ServerConfig
from gateway.joinrequest import JoinRequestError, parse_join_request, sdk_name
from gateway.links import HostLinks
from gateway.retry import retry_while_closing

log = logging.getLogger(__name__)
_ratelog = RateLimitedLog(log)
ABORT = "raysfu.abort"  # the ASGI scope extension whose "abort" drops the connection (gateway.server)


def join_params(claims: Claims, query: Any, sid: str = "", gateway: str = "", node: str = "") -> JoinParams:
    """A `/rtc` join: the client's settings are URL parameters."""
    return JoinParams(
        identity=claims.identity,
        name=claims.name,
        metadata=claims.metadata,
        attributes=dict(claims.attributes),
        permission=participant_permission(claims.video),
        kind=protocol.participant_kind(claims.kind),
        protocol=_version(query.get("protocol")),
        client_protocol=_version(query.get("client_protocol")),
        auto_subscribe=query.get("auto_subscribe", "1") not in ("0", "false"),
        sdk=str(query.get("sdk", "")),
        sid=sid,
        gateway=gateway,
        node=node,
    )


def join_params_v1(
    claims: Claims, request: rtc.JoinRequest, sid: str = "", gateway: str = "", node: str = ""
) -> JoinParams:
    """A `/rtc/v1` join: the client's settings are in its JoinRequest, and it has one peer connection.
    Metadata and attributes it asks for replace the token's (non-empty attributes are added), which needs
    canUpdateOwnMetadata (401 otherwise), as in LiveKit."""
    metadata, attributes = claims.metadata, dict(claims.attributes)
    if request.metadata or request.participant_attributes:
        if not claims.video.can_update_own_metadata:
            raise AuthError(401, "no permission to set its own metadata or attributes")
        metadata = request.metadata or metadata
        attributes.update({k: v for k, v in request.participant_attributes.items() if v})
    too_large = limits.check_participant_fields(metadata=metadata, attributes=attributes)
    if too_large is not None:
        raise JoinRequestError(too_large)
    info = request.client_info
    return JoinParams(
        identity=claims.identity,
        name=claims.name,
        metadata=metadata,
        attributes=attributes,
        permission=participant_permission(claims.video),
        kind=protocol.participant_kind(claims.kind),
        protocol=info.protocol,
        client_protocol=info.client_protocol,
        auto_subscribe=request.connection_settings.auto_subscribe,
        sdk=sdk_name(info),
        sid=sid,
        gateway=gateway,
        node=node,
        single_pc=True,
    )


def _version(value: str | None) -> int:
    """A protocol version from the URL; what is not a number counts as 0 (LiveKit ignores it too)."""
    try:
        return int(value or 0)
    except ValueError:
        return 0


async def seat(config: ServerConfig, room: str, params: JoinParams) -> Joined:
    """Join `room`, creating it if needed (waiting while a closing room still holds the name)."""

    async def join(handle: Any) -> Joined:
        joined: Joined = await handle.call("join", params)
        return joined

    return await retry_while_closing(
        room, lambda: open_room(room, config.room, config.media, node=params.node), join
    )


class Session:
    """One client's WebSocket, from accept to close."""

    def __init__(
        self, ws: WebSocket, links: HostLinks, label: str, key: str, messages_per_second: float = 0.0
    ) -> None:
        """`key`: what the links route this socket's messages by; `messages_per_second`: the client's
        signalling rate limit (limits.RateLimit; 0 = none)."""
        self._ws = ws
        self._links = links
        self._label = label
        self._key = key
        self._rate = limits.RateLimit(messages_per_second)
        self._outgoing: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._backlog = 0  # bytes in _outgoing
        self._cut = False  # cut off for not reading: what is left for it is dropped
        self._send_lock = asyncio.Lock()
        self._seq = 0
        self._closing = False

    def __repr__(self) -> str:
        return f"Session({self._label})"

    def deliver(self, data: bytes | None) -> None:
        if self._cut:
            return
        if data is not None:
            self._backlog += len(data)
            if self._backlog > limits.MAX_SIGNAL_BACKLOG:
                self._cut_off(f"{self._backlog} bytes of signalling wait for a client that is not reading")
                return
        self._outgoing.put_nowait(data)

    def host_lost(self) -> None:
        """The Participant's media worker died: the client must rejoin (it is placed elsewhere)."""
        leave = protocol.leave(models.DisconnectReason.STATE_MISMATCH)
        self._outgoing.put_nowait(leave.SerializeToString())
        self._outgoing.put_nowait(None)

    async def run(
        self, joined: Joined, first: list[rtc.SignalRequest] | None = None, resumed: bool = False
    ) -> None:
        """Accept, send the JoinResponse (or a resume's ReconnectResponse; then pass on the requests `first`
        that came with a /rtc/v1 JoinRequest), then relay until either side ends; the seated session ends
        with the socket, including when the client gave up while its join was being seated (an SDK's join
        timeout on a loaded server): accepting then fails, and a session nobody holds must not stay. A
        socket that just drops leaves the session to be resumed (Participant.signal_closed)."""
        self._participant = joined.participant
        reason = models.DisconnectReason.SIGNAL_CLOSE
        pump: asyncio.Task[None] | None = None
        try:
            try:
                await self._ws.accept()
            except (OSError, RuntimeError, WebSocketDisconnect):  # uvicorn's ClientDisconnected is an OSError
                log.info("%s: the client left before its join was answered", self)
                reason = models.DisconnectReason.JOIN_FAILURE
                return
            await self._send(joined.response)
            if not resumed:
                self._participant.tell("start")
            for request in first or ():
                self._forward(request)
            pump = asyncio.get_running_loop().create_task(self._pump())
            while not self._closing:
                message = await self._ws.receive()
                if message["type"] == "websocket.disconnect":
                    break
                if await self._on_frame(message) == "leave":
                    reason = models.DisconnectReason.CLIENT_INITIATED
        except WebSocketDisconnect:
            pass
        finally:
            if pump is not None:
                pump.cancel()
            if not self._closing:
                await self._end(reason)

    async def leave(self, reason: models.DisconnectReason) -> None:
        """Server-initiated end (shutdown): tell the client, end the session, close the socket."""
        if self._closing:
            return
        self._closing = True
        await self._send(protocol.leave(reason).SerializeToString())
        await self._end(reason)
        await self._close(1001)

    async def _end(self, reason: models.DisconnectReason) -> None:
        try:
            if reason == models.DisconnectReason.SIGNAL_CLOSE:
                await self._participant.call("signal_closed", self._key)
            else:
                await self._participant.call("close", reason, False)
        except ActorGone:
            pass

    async def _on_frame(self, message: Any) -> str | None:
        if not self._rate.take():
            self._warn("flood", "signalling faster than its limit (limit.signal_messages_per_second)")
            await self.leave(models.DisconnectReason.STATE_MISMATCH)
            return None
        data = message.get("bytes")
        if data is None:
            self._refuse("text", "expected a binary protobuf SignalRequest, got a text frame")
            return None
        if len(data) > limits.MAX_SIGNAL_MESSAGE:
            self._warn("oversized", f"message of {len(data)} bytes is over {limits.MAX_SIGNAL_MESSAGE}")
            await self.leave(models.DisconnectReason.STATE_MISMATCH)
            return None
        try:
            req = rtc.SignalRequest.FromString(data)
        except DecodeError:
            self._refuse("malformed", "malformed SignalRequest")
            return None
        kind: str | None = req.WhichOneof("message")
        if kind == "ping_req":
            pong = rtc.Pong(last_ping_timestamp=req.ping_req.timestamp, timestamp=int(time.time() * 1000))
            await self._send(rtc.SignalResponse(pong_resp=pong).SerializeToString())
        elif kind == "ping":
            await self._send(rtc.SignalResponse(pong=int(time.time() * 1000)).SerializeToString())
        elif kind is None:
            self._refuse("unknown", "SignalRequest without a known message")
        else:
            self._forward(req)
        return kind

    def _forward(self, req: rtc.SignalRequest) -> None:
        self._links.signal(self._participant, self._key, self._seq, req)
        self._seq += 1

    async def _pump(self) -> None:
        """The Participant's messages to the client, in order, until the session ends (a None)."""
        while (data := await self._outgoing.get()) is not None:
            self._backlog -= len(data)
            await self._send(data)
        self._closing = True
        await self._close(1000)

    async def _send(self, data: bytes) -> None:
        async with self._send_lock:
            try:
                async with asyncio.timeout(limits.SIGNAL_SEND_TIMEOUT):
                    await self._ws.send_bytes(data)
            except TimeoutError:
                self._cut_off(f"the socket took no data for {limits.SIGNAL_SEND_TIMEOUT:g} s")
            except (RuntimeError, WebSocketDisconnect, OSError):
                pass  # the client is gone; the reader notices

    def _cut_off(self, why: str) -> None:
        """A client that stopped reading: drop what waits for it and the connection itself (the reader then
        ends the session as on any lost connection)."""
        if self._cut:
            return
        self._cut = True
        _ratelog.warning("slow", "%s: cut off: %s", self, why)
        while not self._outgoing.empty():
            self._outgoing.get_nowait()
        self._backlog = 0
        abort = self._ws.scope.get("extensions", {}).get(ABORT, {}).get("abort")
        if abort is not None:
            abort()

    async def _close(self, code: int) -> None:
        try:
            await self._ws.close(code)
        except (RuntimeError, OSError):
            pass

    def _refuse(self, key: str, message: str) -> None:
        self._warn(key, message)
        response = rtc.RequestResponse(reason=rtc.RequestResponse.INVALID_REQUEST, message=message)
        asyncio.get_running_loop().create_task(
            self._send(rtc.SignalResponse(request_response=response).SerializeToString())
        )

    def _warn(self, key: str, message: str) -> None:
        """Bad input from this client: a warning, once per cause (`key`) in an interval, for all sessions."""
        _ratelog.warning(key, "%s: %s", self, message)


class Sessions:
    """The sessions this gateway holds, so that a shutdown can tell every client."""

    def __init__(self, node: str = "local") -> None:
        self._active: set[Session] = set()
        self.links = HostLinks(node)

    def __len__(self) -> int:
        return len(self._active)

    async def shutdown(self) -> None:
        await asyncio.gather(
            *(s.leave(models.DisconnectReason.SERVER_SHUTDOWN) for s in list(self._active)),
            return_exceptions=True,
        )

    async def serve(self, ws: WebSocket, config: ServerConfig, v1: bool = False) -> None:
        """One client's session; `v1`: on `/rtc/v1`, where its settings come in a JoinRequest (with the
        tracks to announce and its first offer, answered right after the join) and it has one peer
        connection."""
        path = "/rtc/v1" if v1 else "/rtc"
        token = token_from_request(ws.headers, ws.query_params)
        sid = ids.participant_sid()
        request: rtc.JoinRequest | None = None
        try:
            claims = verify_token(token or "", config.api_keys)
            room = check_join(claims)
            if v1:
                request = parse_join_request(ws.query_params.get("join_request"))
                params = join_params_v1(claims, request, sid, self.links.gateway, self.links.node)
            else:
                params = join_params(claims, ws.query_params, sid, self.links.gateway, self.links.node)
        except AuthError as exc:
            await ws.send_denial_response(PlainTextResponse(exc.reason, status_code=exc.status))
            return
        except JoinRequestError as exc:
            log.info("refused (400) on %s: %s", path, exc)
            await ws.send_denial_response(PlainTextResponse(str(exc), status_code=400))
            return
        if request is not None and request.reconnect:  # v1: the resume is in the JoinRequest
            first = (
                [rtc.SignalRequest(sync_state=request.sync_state)] if request.HasField("sync_state") else []
            )
            await self._resume(
                ws, config, claims, room, request.participant_sid, first + initial_requests(request)
            )
            return
        if request is None and ws.query_params.get("reconnect") == "1":
            await self._resume(ws, config, claims, room, str(ws.query_params.get("sid", "")), [])
            return
        first = [] if request is None else initial_requests(request)
        label = f"{room}/{claims.identity} {sid}"
        log.info("%s: joining on %s", label, path)
        session = Session(ws, self.links, label, sid, config.media.limits.signal_messages_per_second)
        self.links.register(sid, session)  # before the join: the participant's first messages follow it
        try:
            try:
                joined = await seat(config, room, params)
            except (LimitExceededError, RaysfuError) as exc:
                status = 429 if isinstance(exc, LimitExceededError) else 503
                log.warning("join of %s to %s refused: %s", claims.identity, room, unwrap(exc))
                await ws.send_denial_response(PlainTextResponse(str(unwrap(exc)), status_code=status))
                return
            self.links.attach(sid, joined.participant)
            self._active.add(session)
            await session.run(joined, first)
        finally:
            self._active.discard(session)
            self.links.unregister(sid)

    async def _resume(
        self,
        ws: WebSocket,
        config: ServerConfig,
        claims: Claims,
        room: str,
        sid: str,
        first: list[rtc.SignalRequest],
    ) -> None:
        """A reconnect (`reconnect=1` on /rtc, `JoinRequest.reconnect` on /rtc/v1): the client's signalling
        dropped and it resumes session `sid`, through this gateway or another; `first`: what its JoinRequest
        carried (its SyncState, an offer). A session that is gone is answered as LiveKit does:
        LeaveRequest(STATE_MISMATCH, RECONNECT), which makes the SDK join anew at once."""
        key = f"{sid}/{secrets.token_hex(4)}"
        label = f"{room}/{claims.identity} {sid} (resumed)"
        session = Session(ws, self.links, label, key, config.media.limits.signal_messages_per_second)
        self.links.register(key, session)  # before the resume: its first messages follow it
        try:
            try:
                handle = await lookup_room(room)
                if handle is None:
                    raise NotFoundError(f"room {room} is not open")
                joined: Joined = await handle.call("resume", claims.identity, sid, self.links.gateway, key)
            except (NotFoundError, RoomClosedError, ActorGone) as exc:
                log.info("resume of %s (%s) in %s refused: %s", claims.identity, sid, room, unwrap(exc))
                await ws.accept()
                leave = protocol.leave(models.DisconnectReason.STATE_MISMATCH, reconnect=True)
                await ws.send_bytes(leave.SerializeToString())
                await ws.close()
                return
            self.links.attach(key, joined.participant)
            self._active.add(session)
            await session.run(joined, first, resumed=True)
        finally:
            self._active.discard(session)
            self.links.unregister(key)


def initial_requests(request: rtc.JoinRequest) -> list[rtc.SignalRequest]:
    """What a JoinRequest asks for beyond the join, as the requests the client would send next: its tracks'
    AddTrackRequests, then its first offer (in LiveKit's order)."""
    first = [rtc.SignalRequest(add_track=track) for track in request.add_track_requests]
    if request.HasField("publisher_offer"):
        first.append(rtc.SignalRequest(offer=request.publisher_offer))
    return first
