"""RoomService over Twirp, against a fake room backend (no Ray): encodings, grants, errors, requests built."""

import asyncio
import json
import threading
import time
from collections.abc import Callable, Coroutine, MutableMapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import jwt
import pytest
from google.protobuf.message import Message
from livekit import api
from livekit.protocol import models
from livekit.protocol import room as room_pb
from ray.exceptions import RayTaskError
from starlette.applications import Starlette

from actors import limits
from actors.errors import ActorGone, LimitExceededError, NotFoundError, RoomClosedError
from actors.settings import MediaSettings, RoomSettings
from gateway import twirp
from gateway.config import ServerConfig

CONFIG = ServerConfig(
    api_keys={"devkey": "secret"}, room=RoomSettings(empty_timeout=300, departure_timeout=20)
)
URL = "/twirp/livekit.RoomService/"


@dataclass
class FakeRoom:
    """The Room actor's RoomService surface, in memory."""

    info_: models.Room
    participants: dict[str, models.ParticipantInfo] = field(default_factory=dict)
    sent: list[tuple[bytes, bool, list[str], list[str]]] = field(default_factory=list)
    updates: list[dict[str, Any]] = field(default_factory=list)
    subscriptions: list[tuple[str, list[str], bool]] = field(default_factory=list)
    deleted: bool = False
    closing: bool = False  # refuses calls, as a Room does between closing and leaving its host
    ends_on_delete: bool = False  # the room left its host before the DeleteRoom reached it

    def add(self, identity: str) -> models.ParticipantInfo:
        info = models.ParticipantInfo(sid=f"PA_{identity}", identity=identity)
        self.participants[identity] = info
        return info

    def _get(self, identity: str) -> models.ParticipantInfo:
        if identity not in self.participants:
            raise NotFoundError(f"participant {identity} not found")
        return self.participants[identity]

    async def info(self) -> models.Room:
        if self.closing:
            raise RoomClosedError(f"room {self.info_.name} is closing")
        return self.info_

    async def list_participants(self) -> list[models.ParticipantInfo]:
        return list(self.participants.values())

    async def get_participant(self, identity: str) -> models.ParticipantInfo:
        return self._get(identity)

    async def remove_participant(self, identity: str) -> None:
        del self.participants[self._get(identity).identity]

    async def update_participant(
        self,
        identity: str,
        metadata: str | None = None,
        name: str | None = None,
        attributes: dict[str, str] | None = None,
        permission: models.ParticipantPermission | None = None,
    ) -> models.ParticipantInfo:
        info = self._get(identity)
        self.updates.append(
            {"metadata": metadata, "name": name, "attributes": attributes, "permission": permission}
        )
        if metadata is not None:
            info.metadata = metadata
        if name is not None:
            info.name = name
        if permission is not None:
            info.permission.CopyFrom(permission)
        return info

    async def update_metadata(self, metadata: str) -> models.Room:
        if metadata == "too big":
            raise LimitExceededError("metadata is larger than allowed")
        self.info_.metadata = metadata
        return self.info_

    async def send_data(
        self, packet: bytes, reliable: bool, destination_sids: list[str], destination_identities: list[str]
    ) -> None:
        self.sent.append((packet, reliable, destination_sids, destination_identities))

    async def delete(self) -> None:
        self.deleted = True
        if self.ends_on_delete:
            raise ActorGone(f"{self.info_.sid} is not on media:test/0")

    async def mute_published_track(self, identity: str, track_sid: str, muted: bool) -> models.TrackInfo:
        self._get(identity)
        return models.TrackInfo(sid=track_sid, muted=muted)

    async def update_subscriptions(self, identity: str, track_sids: list[str], subscribe: bool) -> None:
        self._get(identity)
        self.subscriptions.append((identity, track_sids, subscribe))


class FakeHandle:
    """A room's ActorRef: `call` reaches the room from another process, its errors wrapped as Ray wraps
    the errors of the host's `deliver`."""

    def __init__(self, room: FakeRoom) -> None:
        self.room = room

    async def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        fn: Callable[..., Coroutine[Any, Any, Any]] = getattr(self.room, method)
        try:
            return await fn(*args, **kwargs)
        except Exception as exc:
            raise RayTaskError("deliver", "Traceback (fake)", exc).as_instanceof_cause() from None


class FakeBackend:
    def __init__(self) -> None:
        self.rooms: dict[str, FakeRoom] = {}
        self.created: list[tuple[str, RoomSettings, str]] = []

    async def open_room(
        self, name: str, settings: RoomSettings, media: MediaSettings, metadata: str = ""
    ) -> FakeHandle:
        return self.add_room(name, settings, metadata)

    def add_room(self, name: str, settings: RoomSettings | None = None, metadata: str = "") -> FakeHandle:
        settings = settings or RoomSettings()
        if name not in self.rooms:
            self.created.append((name, settings, metadata))
            self.rooms[name] = FakeRoom(
                models.Room(
                    sid=f"RM_{name}",
                    name=name,
                    metadata=metadata,
                    empty_timeout=settings.empty_timeout,
                    departure_timeout=settings.departure_timeout,
                    max_participants=settings.max_participants,
                )
            )
        return FakeHandle(self.rooms[name])

    async def lookup_room(self, name: str) -> FakeHandle | None:
        return FakeHandle(self.rooms[name]) if name in self.rooms else None

    async def list_rooms(self, names: list[str] | None = None) -> list[models.Room]:
        return [r.info_ for n, r in self.rooms.items() if not names or n in names]


@dataclass
class Reply:
    status_code: int
    headers: dict[str, str]
    content: bytes

    def json(self) -> Any:
        return json.loads(self.content)


class Client:
    """Plain ASGI calls into the app (no HTTP client library needed)."""

    def __init__(self, app: Starlette) -> None:
        self.app = app

    def post(self, path: str, content: bytes | str = b"", **kwargs: Any) -> Reply:
        return self.request("POST", path, content, **kwargs)

    def get(self, path: str, **kwargs: Any) -> Reply:
        return self.request("GET", path, b"", **kwargs)

    def request(
        self,
        method: str,
        path: str,
        content: bytes | str,
        headers: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
    ) -> Reply:
        return asyncio.run(self._request(method, path, content, headers or {}, params or {}))

    async def _request(
        self, method: str, path: str, content: bytes | str, headers: dict[str, str], params: dict[str, str]
    ) -> Reply:
        body = content.encode() if isinstance(content, str) else content
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": urlencode(params).encode(),
            "root_path": "",
            "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()]
            + [(b"content-length", str(len(body)).encode())],
            "client": ("127.0.0.1", 1234),
            "server": ("127.0.0.1", 7880),
        }
        chunks = [body[i : i + 65536] for i in range(0, len(body), 65536)] or [b""]
        messages = [
            {"type": "http.request", "body": c, "more_body": i < len(chunks) - 1}
            for i, c in enumerate(chunks)
        ]
        sent: list[MutableMapping[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return messages.pop(0) if messages else {"type": "http.disconnect"}

        async def send(message: MutableMapping[str, Any]) -> None:
            sent.append(message)

        await self.app(scope, receive, send)
        start = sent[0]
        return Reply(
            start["status"],
            {k.decode(): v.decode() for k, v in start["headers"]},
            b"".join(m.get("body", b"") for m in sent[1:]),
        )


def token(**grants: Any) -> str:
    sdk = api.AccessToken("devkey", "secret").with_identity("admin")
    return sdk.with_grants(api.VideoGrants(**grants)).to_jwt()


def app(backend: FakeBackend) -> Client:
    return Client(Starlette(routes=twirp.routes(CONFIG, backend)))


@pytest.fixture
def backend() -> FakeBackend:
    fake = FakeBackend()
    fake.add_room("r1").room.add("alice")
    fake.created.clear()
    return fake


@pytest.fixture
def client(backend: FakeBackend) -> Client:
    return app(backend)


def call(
    client: Client, method: str, request: Message, reply_cls: type[Message] | None, **grants: Any
) -> Any:
    """A protobuf call as livekit-api makes it; the decoded reply, or the Twirp error body."""
    response = client.post(
        URL + method,
        content=request.SerializeToString(),
        headers={"Content-Type": "application/protobuf", "Authorization": f"Bearer {token(**grants)}"},
    )
    if response.status_code != 200:
        assert response.headers["content-type"] == "application/json"
        return response.status_code, response.json()
    assert reply_cls is not None and response.headers["content-type"] == "application/protobuf"
    return reply_cls.FromString(response.content)


ADMIN = {"room_admin": True, "room": "r1"}


def test_create_room_overrides_non_zero_settings(client: Client, backend: FakeBackend) -> None:
    request = room_pb.CreateRoomRequest(name="new", departure_timeout=2, max_participants=3, metadata="m")
    room = call(client, "CreateRoom", request, models.Room, room_create=True)
    assert (room.name, room.metadata, room.departure_timeout, room.empty_timeout) == ("new", "m", 2, 300)
    assert backend.created == [
        ("new", RoomSettings(empty_timeout=300, departure_timeout=2, max_participants=3), "m")
    ]


def test_create_room_refusals(client: Client) -> None:
    status, body = call(client, "CreateRoom", room_pb.CreateRoomRequest(name="x"), None, room_list=True)
    assert (status, body["code"]) == (403, "permission_denied") and "roomCreate" in body["msg"]
    status, body = call(client, "CreateRoom", room_pb.CreateRoomRequest(), None, room_create=True)
    assert (status, body["code"]) == (400, "invalid_argument")
    long_name = room_pb.CreateRoomRequest(name="x" * (limits.MAX_NAME + 1))
    assert call(client, "CreateRoom", long_name, None, room_create=True)[1]["code"] == "invalid_argument"


def test_list_rooms_with_names_filter(client: Client, backend: FakeBackend) -> None:
    backend.add_room("r2")
    everything = call(
        client, "ListRooms", room_pb.ListRoomsRequest(), room_pb.ListRoomsResponse, room_list=True
    )
    assert sorted(r.name for r in everything.rooms) == ["r1", "r2"]
    only = call(
        client, "ListRooms", room_pb.ListRoomsRequest(names=["r2"]), room_pb.ListRoomsResponse, room_list=True
    )
    assert [r.name for r in only.rooms] == ["r2"]
    assert call(client, "ListRooms", room_pb.ListRoomsRequest(), None, room_create=True)[0] == 403


def test_delete_room(client: Client, backend: FakeBackend) -> None:
    reply = call(
        client,
        "DeleteRoom",
        room_pb.DeleteRoomRequest(room="r1"),
        room_pb.DeleteRoomResponse,
        room_create=True,
    )
    assert reply == room_pb.DeleteRoomResponse() and backend.rooms["r1"].deleted
    status, body = call(client, "DeleteRoom", room_pb.DeleteRoomRequest(room="nope"), None, room_create=True)
    assert (status, body["code"]) == (404, "not_found")
    assert call(client, "DeleteRoom", room_pb.DeleteRoomRequest(room="r1"), None, **ADMIN)[0] == 403


def test_delete_room_whose_actor_ends_before_answering(client: Client, backend: FakeBackend) -> None:
    """A Room ends its actor as soon as it has closed; that can beat its answer to the DeleteRoom that closed
    it (one CreateRoom/DeleteRoom pair in ten, in a CI run), and the room is deleted all the same."""
    backend.rooms["r1"].ends_on_delete = True
    request = room_pb.DeleteRoomRequest(room="r1")
    reply = call(client, "DeleteRoom", request, room_pb.DeleteRoomResponse, room_create=True)
    assert reply == room_pb.DeleteRoomResponse() and backend.rooms["r1"].deleted


def test_create_room_while_a_room_of_that_name_closes(client: Client, backend: FakeBackend) -> None:
    """A closing room keeps its name until its actor ends: CreateRoom waits for it, then creates the room."""
    closing = backend.rooms["r1"]
    closing.closing = True
    threading.Timer(0.3, backend.rooms.pop, ["r1"]).start()  # its actor ends
    room = call(client, "CreateRoom", room_pb.CreateRoomRequest(name="r1"), models.Room, room_create=True)
    assert room.name == "r1" and backend.rooms["r1"] is not closing


def test_admin_methods_need_room_admin_for_that_room(client: Client) -> None:
    request = room_pb.ListParticipantsRequest(room="r1")
    for grants in ({"room_admin": True, "room": "r2"}, {"room_join": True, "room": "r1"}, {}):
        status, body = call(client, "ListParticipants", request, None, **grants)
        assert (status, body["code"]) == (403, "permission_denied") and "permissions denied" in body["msg"]


def test_participants(client: Client, backend: FakeBackend) -> None:
    listed = call(
        client,
        "ListParticipants",
        room_pb.ListParticipantsRequest(room="r1"),
        room_pb.ListParticipantsResponse,
        **ADMIN,
    )
    assert [p.identity for p in listed.participants] == ["alice"]
    alice = room_pb.RoomParticipantIdentity(room="r1", identity="alice")
    assert call(client, "GetParticipant", alice, models.ParticipantInfo, **ADMIN).sid == "PA_alice"
    assert call(client, "RemoveParticipant", alice, room_pb.RemoveParticipantResponse, **ADMIN) is not None
    assert backend.rooms["r1"].participants == {}
    status, body = call(client, "GetParticipant", alice, None, **ADMIN)
    assert (status, body) == (404, {"code": "not_found", "msg": "participant alice not found"})


def test_unknown_room(client: Client) -> None:
    grants = {"room_admin": True, "room": "nope"}
    empty = call(
        client,
        "ListParticipants",
        room_pb.ListParticipantsRequest(room="nope"),
        room_pb.ListParticipantsResponse,
        **grants,
    )
    assert list(empty.participants) == []  # as LiveKit: an unknown room has no participants
    who = room_pb.RoomParticipantIdentity(room="nope", identity="alice")
    for method in ("GetParticipant", "RemoveParticipant"):
        assert call(client, method, who, None, **grants) == (
            404,
            {"code": "not_found", "msg": "requested room does not exist"},
        )


def test_update_participant_passes_only_what_changes(client: Client, backend: FakeBackend) -> None:
    request = room_pb.UpdateParticipantRequest(
        room="r1", identity="alice", metadata="hello", attributes={"k": ""}
    )
    info = call(client, "UpdateParticipant", request, models.ParticipantInfo, **ADMIN)
    assert info.metadata == "hello"
    permission = models.ParticipantPermission(can_subscribe=True)
    request = room_pb.UpdateParticipantRequest(room="r1", identity="alice", name="Al", permission=permission)
    call(client, "UpdateParticipant", request, models.ParticipantInfo, **ADMIN)
    assert backend.rooms["r1"].updates == [
        {"metadata": "hello", "name": None, "attributes": {"k": ""}, "permission": None},
        {"metadata": None, "name": "Al", "attributes": None, "permission": permission},
    ]


def test_update_participant_limits(client: Client, backend: FakeBackend) -> None:
    big = "x" * (limits.MAX_METADATA + 1)
    request = room_pb.UpdateParticipantRequest(room="r1", identity="alice", metadata=big)
    assert call(client, "UpdateParticipant", request, None, **ADMIN)[1]["code"] == "invalid_argument"
    assert backend.rooms["r1"].updates == []


def test_update_room_metadata(client: Client) -> None:
    room = call(
        client,
        "UpdateRoomMetadata",
        room_pb.UpdateRoomMetadataRequest(room="r1", metadata="new"),
        models.Room,
        **ADMIN,
    )
    assert room.metadata == "new"
    # A limit the actor enforces arrives wrapped in RayTaskError and is answered as LiveKit would.
    request = room_pb.UpdateRoomMetadataRequest(room="r1", metadata="too big")
    assert call(client, "UpdateRoomMetadata", request, None, **ADMIN) == (
        400,
        {"code": "invalid_argument", "msg": "metadata is larger than allowed"},
    )


def test_send_data_builds_a_server_user_packet(client: Client, backend: FakeBackend) -> None:
    nonce = bytes(range(16))
    request = room_pb.SendDataRequest(
        room="r1",
        data=b"hi",
        kind=models.DataPacket.LOSSY,
        destination_identities=["alice"],
        topic="t",
        nonce=nonce,
    )
    assert call(client, "SendData", request, room_pb.SendDataResponse, **ADMIN) == room_pb.SendDataResponse()
    [(raw, reliable, sids, identities)] = backend.rooms["r1"].sent
    assert (reliable, sids, identities) == (False, [], ["alice"])
    packet = models.DataPacket.FromString(raw)
    assert packet.kind == models.DataPacket.LOSSY and packet.participant_identity == ""
    assert (packet.user.payload, packet.user.topic, packet.user.nonce) == (b"hi", "t", nonce)
    assert list(packet.user.destination_identities) == ["alice"] and packet.user.participant_identity == ""
    reliable_request = room_pb.SendDataRequest(room="r1", data=b"x", kind=models.DataPacket.RELIABLE)
    call(client, "SendData", reliable_request, room_pb.SendDataResponse, **ADMIN)
    assert backend.rooms["r1"].sent[1][1] is True


def test_send_data_refusals(client: Client) -> None:
    bad_nonce = room_pb.SendDataRequest(room="r1", data=b"hi", nonce=b"short")
    assert call(client, "SendData", bad_nonce, None, **ADMIN)[1]["code"] == "invalid_argument"
    too_big = room_pb.SendDataRequest(room="r1", data=b"x" * (limits.MAX_DATA_PACKET + 1))
    assert call(client, "SendData", too_big, None, **ADMIN)[1]["code"] == "invalid_argument"


def test_mute_published_track_and_update_subscriptions(client: Client, backend: FakeBackend) -> None:
    mute = room_pb.MuteRoomTrackRequest(room="r1", identity="alice", track_sid="TR_a", muted=True)
    reply = call(client, "MutePublishedTrack", mute, room_pb.MuteRoomTrackResponse, **ADMIN)
    assert (reply.track.sid, reply.track.muted) == ("TR_a", True)
    request = room_pb.UpdateSubscriptionsRequest(
        room="r1",
        identity="alice",
        track_sids=["TR_a"],
        participant_tracks=[models.ParticipantTracks(participant_sid="PA_b", track_sids=["TR_b"])],
        subscribe=True,
    )
    call(client, "UpdateSubscriptions", request, room_pb.UpdateSubscriptionsResponse, **ADMIN)
    assert backend.rooms["r1"].subscriptions == [("alice", ["TR_a", "TR_b"], True)]
    mute.identity = "bob"
    assert call(client, "MutePublishedTrack", mute, None, **ADMIN)[0] == 404


def test_json_encoding(client: Client) -> None:
    response = client.post(
        URL + "GetParticipant",
        content=json.dumps({"room": "r1", "identity": "alice"}),
        headers={
            "Content-Type": "application/json; charset=utf-8",
            "Authorization": f"Bearer {token(**ADMIN)}",
        },
    )
    assert response.status_code == 200 and response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["identity"] == "alice" and body["sid"] == "PA_alice" and body["metadata"] == ""


def test_token_in_query_parameter(client: Client) -> None:
    response = client.post(
        URL + "ListRooms",
        params={"access_token": token(room_list=True)},
        content=b"",
        headers={"Content-Type": "application/protobuf"},
    )
    assert response.status_code == 200


def test_bad_tokens(client: Client) -> None:
    now = int(time.time())
    expired = jwt.encode({"iss": "devkey", "nbf": now - 900, "exp": now - 600}, "secret", algorithm="HS256")
    for auth_header, reason in (
        (None, "missing access token"),
        (f"Bearer {expired}", "token expired"),
        (f"Bearer {api.AccessToken('devkey', 'wrong').to_jwt()}", "invalid signature"),
    ):
        headers = {"Content-Type": "application/protobuf"} | (
            {"Authorization": auth_header} if auth_header else {}
        )
        response = client.post(URL + "ListRooms", content=b"", headers=headers)
        assert (response.status_code, response.json()) == (401, {"code": "unauthenticated", "msg": reason})


def test_routes_and_bodies(client: Client) -> None:
    headers = {"Content-Type": "application/protobuf", "Authorization": f"Bearer {token(room_list=True)}"}
    assert client.post(URL + "Nope", headers=headers).json()["code"] == "bad_route"
    assert client.post("/twirp/livekit.Egress/ListEgress", headers=headers).status_code == 404
    assert client.get(URL + "ListRooms", headers=headers).json()["code"] == "bad_route"
    text = headers | {"Content-Type": "text/plain"}
    assert client.post(URL + "ListRooms", headers=text).json()["code"] == "bad_route"
    garbage = client.post(URL + "ListRooms", content=b"\xff\xff\xff", headers=headers)
    assert (garbage.status_code, garbage.json()["code"]) == (400, "malformed")
    bad_json = client.post(
        URL + "ListRooms", content=b"{", headers=headers | {"Content-Type": "application/json"}
    )
    assert bad_json.json()["code"] == "malformed"
    huge = client.post(URL + "ListRooms", content=b"\0" * (limits.MAX_SIGNAL_MESSAGE + 1), headers=headers)
    assert (huge.status_code, huge.json()["code"]) == (429, "resource_exhausted")


def test_unexpected_error_is_internal_and_hides_details(backend: FakeBackend) -> None:
    async def explode(names: list[str] | None = None) -> list[models.Room]:
        raise RuntimeError("secret detail")

    backend.list_rooms = explode  # type: ignore[method-assign]
    reply = call(app(backend), "ListRooms", room_pb.ListRoomsRequest(), None, room_list=True)
    assert reply == (500, {"code": "internal", "msg": "internal error"})
