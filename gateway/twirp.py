"""LiveKit's RoomService over Twirp: `POST /twirp/livekit.RoomService/<Method>`.

Requests are protobuf (what livekit-api sends) or Twirp JSON; the answer uses the request's encoding, and
errors are always Twirp JSON `{"code", "msg"}`. Each method checks the grant LiveKit checks, then calls the
Room (found through actors.registry). A refused grant is answered as LiveKit answers it: code
`unauthenticated` (HTTP 401), message "permissions denied: ..." (LiveKit's twirpAuthError), so clients
written against LiveKit see the same error.
"""

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any, Protocol

from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message
from livekit.protocol import models
from livekit.protocol import room as room_pb
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from actors import limits, protocol
from actors.errors import ActorGone
from actors.settings import MediaSettings, RoomSettings
from gateway import auth
from gateway.config import ServerConfig
from gateway.errors import TwirpError, actor_error, twirp_error
from gateway.retry import retry_while_closing

log = logging.getLogger(__name__)

SERVICE = "livekit.RoomService"
PROTOBUF = "application/protobuf"
JSON = "application/json"
# A token that does not verify is `unauthenticated`; a valid token without the grant is `permission_denied`.
# (LiveKit answers both with `unauthenticated`; the distinction tells a user which of the two to fix.)
AUTH_CODES = {401: "unauthenticated", 403: "permission_denied"}


class RoomBackend(Protocol):
    """What the handlers need from actors.registry (the module itself is the default; tests pass a fake).
    A room is reached through its ActorRef: `await ref.call("method", *args)`."""

    async def open_room(
        self, name: str, settings: RoomSettings, media: MediaSettings, metadata: str = ""
    ) -> Any: ...

    async def lookup_room(self, name: str) -> Any: ...

    async def list_rooms(self, names: list[str] | None = None) -> list[models.Room]: ...


@dataclass(frozen=True)
class Call:
    """One authenticated RoomService call."""

    config: ServerConfig
    backend: RoomBackend
    claims: auth.Claims

    async def room(self, name: str) -> Any:
        """The room's ActorRef; not_found when there is no such room."""
        handle = await self.backend.lookup_room(name)
        if handle is None:
            raise TwirpError("not_found", "requested room does not exist")
        return handle


Handler = Callable[[Call, Any], Awaitable[Message]]


def _check_fields(
    name: str | None = None, metadata: str | None = None, attributes: dict[str, str] | None = None
) -> None:
    reason = limits.check_participant_fields(name, metadata, attributes)
    if reason:
        raise TwirpError("invalid_argument", reason)


async def create_room(call: Call, req: room_pb.CreateRoomRequest) -> Message:
    auth.check_room_create(call.claims)
    if not req.name:
        raise TwirpError("invalid_argument", "no room name")
    if len(req.name) > limits.MAX_NAME:
        raise TwirpError("invalid_argument", f"room name is longer than {limits.MAX_NAME} characters")
    _check_fields(metadata=req.metadata)
    overrides = {
        key: value
        for key in ("empty_timeout", "departure_timeout", "max_participants")
        if (value := getattr(req, key))
    }
    settings = replace(call.config.room, **overrides)

    async def info(handle: Any) -> Message:
        room: Message = await handle.call("info")
        return room

    return await retry_while_closing(
        req.name,
        lambda: call.backend.open_room(req.name, settings, call.config.media, req.metadata),
        info,
    )


async def list_rooms(call: Call, req: room_pb.ListRoomsRequest) -> Message:
    auth.check_room_list(call.claims)
    rooms = await call.backend.list_rooms(list(req.names) or None)
    return room_pb.ListRoomsResponse(rooms=rooms)


async def delete_room(call: Call, req: room_pb.DeleteRoomRequest) -> Message:
    auth.check_room_create(call.claims)
    handle = await call.room(req.room)
    try:
        await handle.call("delete")
    except ActorGone:
        pass  # it closed (and left its host) between the lookup and the call
    return room_pb.DeleteRoomResponse()


async def list_participants(call: Call, req: room_pb.ListParticipantsRequest) -> Message:
    auth.check_room_admin(call.claims, req.room)
    handle = await call.backend.lookup_room(req.room)
    # LiveKit lists no participants, rather than not_found, for a room that does not exist.
    participants = [] if handle is None else await handle.call("list_participants")
    return room_pb.ListParticipantsResponse(participants=participants)


async def get_participant(call: Call, req: room_pb.RoomParticipantIdentity) -> Message:
    auth.check_room_admin(call.claims, req.room)
    info: Message = await (await call.room(req.room)).call("get_participant", req.identity)
    return info


async def remove_participant(call: Call, req: room_pb.RoomParticipantIdentity) -> Message:
    auth.check_room_admin(call.claims, req.room)
    await (await call.room(req.room)).call("remove_participant", req.identity)
    return room_pb.RemoveParticipantResponse()


async def update_participant(call: Call, req: room_pb.UpdateParticipantRequest) -> Message:
    """As LiveKit: empty name or metadata means unchanged; an attribute with an empty value is deleted."""
    auth.check_room_admin(call.claims, req.room)
    attributes = dict(req.attributes)
    _check_fields(req.name, req.metadata, attributes)
    handle = await call.room(req.room)
    info: Message = await handle.call(
        "update_participant",
        req.identity,
        metadata=req.metadata or None,
        name=req.name or None,
        attributes=attributes or None,
        permission=req.permission if req.HasField("permission") else None,
    )
    return info


async def update_room_metadata(call: Call, req: room_pb.UpdateRoomMetadataRequest) -> Message:
    auth.check_room_admin(call.claims, req.room)
    _check_fields(metadata=req.metadata)
    info: Message = await (await call.room(req.room)).call("update_metadata", req.metadata)
    return info


def data_packet(req: room_pb.SendDataRequest) -> models.DataPacket:
    """The packet the SDKs receive: a user packet with no sender (server-originated), as LiveKit builds it."""
    return models.DataPacket(
        kind=req.kind,
        destination_identities=req.destination_identities,
        user=models.UserPacket(
            payload=req.data,
            destination_sids=req.destination_sids,
            destination_identities=req.destination_identities,
            topic=req.topic,
            nonce=req.nonce,
        ),
    )


async def send_data(call: Call, req: room_pb.SendDataRequest) -> Message:
    auth.check_room_admin(call.claims, req.room)
    if len(req.nonce) not in (0, 16):
        raise TwirpError("invalid_argument", f"nonce should be 16 bytes or not present, got {len(req.nonce)}")
    packet = data_packet(req).SerializeToString()
    if len(packet) > limits.MAX_DATA_PACKET:
        raise TwirpError("invalid_argument", f"data packet is larger than {limits.MAX_DATA_PACKET} bytes")
    await (await call.room(req.room)).call(
        "send_data",
        packet,
        req.kind == models.DataPacket.RELIABLE,
        list(req.destination_sids),
        list(req.destination_identities),
    )
    return room_pb.SendDataResponse()


async def mute_published_track(call: Call, req: room_pb.MuteRoomTrackRequest) -> Message:
    auth.check_room_admin(call.claims, req.room)
    handle = await call.room(req.room)
    track = await handle.call("mute_published_track", req.identity, req.track_sid, req.muted)
    return room_pb.MuteRoomTrackResponse(track=track)


async def update_subscriptions(call: Call, req: room_pb.UpdateSubscriptionsRequest) -> Message:
    auth.check_room_admin(call.claims, req.room)
    track_sids = protocol.subscription_track_sids(req)
    await (await call.room(req.room)).call("update_subscriptions", req.identity, track_sids, req.subscribe)
    return room_pb.UpdateSubscriptionsResponse()


METHODS: dict[str, tuple[type[Message], Handler]] = {
    "CreateRoom": (room_pb.CreateRoomRequest, create_room),
    "ListRooms": (room_pb.ListRoomsRequest, list_rooms),
    "DeleteRoom": (room_pb.DeleteRoomRequest, delete_room),
    "ListParticipants": (room_pb.ListParticipantsRequest, list_participants),
    "GetParticipant": (room_pb.RoomParticipantIdentity, get_participant),
    "RemoveParticipant": (room_pb.RoomParticipantIdentity, remove_participant),
    "UpdateParticipant": (room_pb.UpdateParticipantRequest, update_participant),
    "UpdateRoomMetadata": (room_pb.UpdateRoomMetadataRequest, update_room_metadata),
    "SendData": (room_pb.SendDataRequest, send_data),
    "MutePublishedTrack": (room_pb.MuteRoomTrackRequest, mute_published_track),
    "UpdateSubscriptions": (room_pb.UpdateSubscriptionsRequest, update_subscriptions),
}


async def _read_body(request: Request) -> bytes:
    """The body, refused as soon as it passes the signal message limit (never buffered beyond it)."""
    limit = limits.MAX_SIGNAL_MESSAGE
    too_large = TwirpError("resource_exhausted", f"request body is larger than {limit} bytes")
    if int(request.headers.get("content-length") or 0) > limit:
        raise too_large
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise too_large
    return bytes(body)


def _decode(body: bytes, cls: type[Message], as_json: bool) -> Message:
    message = cls()
    try:
        if as_json:
            json_format.Parse(body or b"{}", message, ignore_unknown_fields=True)
        else:
            message.ParseFromString(body)
    except (DecodeError, json_format.ParseError, UnicodeDecodeError) as exc:
        raise TwirpError(
            "malformed", f"the request body is not a valid {cls.DESCRIPTOR.name}: {exc}"
        ) from exc
    return message


def _encode(message: Message, as_json: bool) -> Response:
    if as_json:
        # Twirp's JSON defaults: proto field names, unpopulated fields included.
        text = json_format.MessageToJson(
            message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
        )
        return Response(text, media_type=JSON)
    return Response(message.SerializeToString(), media_type=PROTOBUF)


def _failure(exc: Exception) -> TwirpError:
    if isinstance(exc, TwirpError):
        return exc
    if isinstance(exc, auth.AuthError):
        return TwirpError(AUTH_CODES.get(exc.status, "unauthenticated"), exc.reason)
    found = actor_error(exc)
    if isinstance(found, ActorGone):  # the room closed between the lookup and the call
        return TwirpError("not_found", "requested room does not exist")
    if found is not None:
        return twirp_error(found)
    log.exception("RoomService call failed")
    return TwirpError("internal", "internal error")


async def _handle(request: Request, config: ServerConfig, backend: RoomBackend) -> Response:
    method = request.path_params["method"]
    if request.method != "POST" or request.path_params["service"] != SERVICE or method not in METHODS:
        return _error(TwirpError("bad_route", f"no handler for {request.method} {request.url.path}"))
    content_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if content_type not in (PROTOBUF, JSON):
        return _error(TwirpError("bad_route", f"unexpected Content-Type {content_type!r}"))
    as_json = content_type == JSON
    cls, handler = METHODS[method]
    try:
        claims = auth.verify_token(
            auth.token_from_request(request.headers, request.query_params), config.api_keys
        )
        message = _decode(await _read_body(request), cls, as_json)
        reply = await handler(Call(config, backend, claims), message)
    except auth.AuthError as exc:
        if exc.status == 431:  # as LiveKit's HTTP server, ahead of Twirp: no Twirp error code is 431
            return PlainTextResponse(exc.reason, status_code=431)
        return _error(_failure(exc))
    except Exception as exc:
        return _error(_failure(exc))
    return _encode(reply, as_json)


def _error(exc: TwirpError) -> Response:
    if exc.code not in AUTH_CODES.values():  # auth refusals are logged by gateway.auth
        log.info("RoomService refused (%s): %s", exc.code, exc.msg)
    return JSONResponse(exc.body(), status_code=exc.status)


def routes(config: ServerConfig, backend: RoomBackend | None = None) -> list[BaseRoute]:
    """The Twirp routes; `backend` defaults to the rooms' registry (actors.registry)."""
    if backend is None:
        from actors import registry  # imports the actor tree; deferred so tests can fake it

        backend = registry

    async def endpoint(request: Request) -> Response:
        return await _handle(request, config, backend)

    return [Route("/twirp/{service}/{method}", endpoint, methods=["GET", "POST", "PUT", "DELETE", "PATCH"])]
