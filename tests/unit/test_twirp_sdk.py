"""The real livekit-api RoomServiceClient against the Twirp routes (fake rooms, real HTTP on loopback)."""

import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator

import pytest
import uvicorn
from livekit import api
from livekit.protocol import models
from livekit.protocol import room as room_pb
from starlette.applications import Starlette

from gateway import twirp
from tests.unit.test_twirp import CONFIG, FakeBackend


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def backend() -> FakeBackend:
    return FakeBackend()


@pytest.fixture(scope="module")
def url(backend: FakeBackend) -> Iterator[str]:
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            Starlette(routes=twirp.routes(CONFIG, backend)), host="127.0.0.1", port=port, log_level="warning"
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(5)


@pytest.fixture
async def lkapi(url: str) -> AsyncIterator[api.LiveKitAPI]:
    client = api.LiveKitAPI(url, "devkey", "secret")
    yield client
    await client.aclose()


async def test_room_lifecycle_through_the_sdk(lkapi: api.LiveKitAPI, backend: FakeBackend) -> None:
    room = await lkapi.room.create_room(api.CreateRoomRequest(name="sdk", departure_timeout=3, metadata="m"))
    assert (room.name, room.metadata, room.departure_timeout) == ("sdk", "m", 3)
    backend.rooms["sdk"].add("alice")
    listed = await lkapi.room.list_rooms(api.ListRoomsRequest(names=["sdk"]))
    assert [r.name for r in listed.rooms] == ["sdk"]
    info = await lkapi.room.update_participant(
        api.UpdateParticipantRequest(room="sdk", identity="alice", metadata="hi", attributes={"a": "1"})
    )
    assert info.metadata == "hi"
    await lkapi.room.send_data(
        api.SendDataRequest(room="sdk", data=b"x", topic="t", destination_identities=["alice"])
    )
    [(raw, reliable, _, identities)] = backend.rooms["sdk"].sent
    packet = models.DataPacket.FromString(raw)
    assert reliable and identities == ["alice"] and len(packet.user.nonce) == 16  # the SDK sets a nonce
    participants = await lkapi.room.list_participants(api.ListParticipantsRequest(room="sdk"))
    assert [p.identity for p in participants.participants] == ["alice"]
    await lkapi.room.delete_room(api.DeleteRoomRequest(room="sdk"))
    assert backend.rooms["sdk"].deleted


async def test_errors_through_the_sdk(url: str, lkapi: api.LiveKitAPI, backend: FakeBackend) -> None:
    backend.add_room("known")
    with pytest.raises(api.ServerError) as info:
        await lkapi.room.get_participant(api.RoomParticipantIdentity(room="known", identity="ghost"))
    assert (info.value.code, info.value.status) == ("not_found", 404)
    async with api.LiveKitAPI(url, "devkey", "wrong-secret") as bad:
        with pytest.raises(api.ServerError) as info:
            await bad.room.list_rooms(room_pb.ListRoomsRequest())
    assert (info.value.code, info.value.message) == ("unauthenticated", "invalid signature")
    no_admin = api.AccessToken("devkey", "secret").with_grants(api.VideoGrants(room_list=True)).to_jwt()
    async with api.LiveKitAPI.with_token(no_admin, url) as limited:
        assert (await limited.room.list_rooms(api.ListRoomsRequest())).rooms
        with pytest.raises(api.ServerError) as info:
            await limited.room.list_participants(api.ListParticipantsRequest(room="known"))
    assert info.value.code == "permission_denied" and "roomAdmin" in info.value.message
