"""RoomService, driven by the real livekit-api client against a running server, watched by real SDK clients.

A token that does not verify is refused with `unauthenticated` (401); a valid token without the grant with
`permission_denied` (403).
"""

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from livekit import api, rtc

from tests.interop.sdk import Connect, Events, Server, wait_for

REFUSED = ("permission_denied", 403)  # a valid token without the needed grant


@pytest.fixture
async def lkapi(server: Server) -> AsyncIterator[api.LiveKitAPI]:
    async with api.LiveKitAPI(server.http_url, server.api_key, server.api_secret) as client:
        yield client


def token_api(server: Server, **grants: Any) -> api.LiveKitAPI:
    """A client holding one pre-signed token with exactly these grants."""
    token = (
        api.AccessToken(server.api_key, server.api_secret)
        .with_identity("service-caller")  # the SDK insists on one for a roomJoin grant
        .with_grants(api.VideoGrants(**grants))
    )
    return api.LiveKitAPI.with_token(token.to_jwt(), server.http_url)


async def two_clients(connect: Connect, room_name: str) -> tuple[rtc.Room, rtc.Room]:
    alice = await connect("alice", room_name)
    bob = await connect("bob", room_name)
    await wait_for(lambda: "bob" in alice.remote_participants and "alice" in bob.remote_participants)
    return alice, bob


async def listed(lkapi: api.LiveKitAPI, room_name: str) -> bool:
    rooms = await lkapi.room.list_rooms(api.ListRoomsRequest(names=[room_name]))
    return any(r.name == room_name for r in rooms.rooms)


async def wait_unlisted(lkapi: api.LiveKitAPI, room_name: str, within: float) -> None:
    for _ in range(int(within / 0.25)):
        if not await listed(lkapi, room_name):
            return
        await asyncio.sleep(0.25)
    raise AssertionError(f"room {room_name} still listed after {within} s")


async def test_create_and_list_rooms(lkapi: api.LiveKitAPI, room_name: str) -> None:
    room = await lkapi.room.create_room(
        api.CreateRoomRequest(name=room_name, metadata="created", max_participants=7, departure_timeout=15)
    )
    assert room.name == room_name and room.sid.startswith("RM_") and room.metadata == "created"
    assert (room.max_participants, room.departure_timeout) == (7, 15)
    again = await lkapi.room.create_room(api.CreateRoomRequest(name=room_name))
    assert again.sid == room.sid  # CreateRoom of an existing room answers that room
    only = await lkapi.room.list_rooms(api.ListRoomsRequest(names=[room_name]))
    assert [r.sid for r in only.rooms] == [room.sid]
    everything = await lkapi.room.list_rooms(api.ListRoomsRequest())
    assert room.sid in {r.sid for r in everything.rooms}
    await lkapi.room.delete_room(api.DeleteRoomRequest(room=room_name))


async def test_delete_room_right_after_create_room(lkapi: api.LiveKitAPI, room_name: str) -> None:
    """An empty room ends its actor as soon as DeleteRoom closed it, which could beat the answer (1 pair in
    10 answered not_found): each of these DeleteRooms must succeed."""
    names = [f"{room_name}-{i}" for i in range(20)]

    async def create_then_delete(name: str) -> None:
        await lkapi.room.create_room(api.CreateRoomRequest(name=name))
        await lkapi.room.delete_room(api.DeleteRoomRequest(room=name))

    await asyncio.gather(*(create_then_delete(name) for name in names))
    assert not (await lkapi.room.list_rooms(api.ListRoomsRequest(names=names))).rooms


async def test_create_room_right_after_deleting_it(
    lkapi: api.LiveKitAPI, connect: Connect, room_name: str
) -> None:
    """The deleted room keeps its name through its sessions' grace period: CreateRoom waits, then answers a
    new room (not the closing one's not_found)."""
    old = await lkapi.room.create_room(api.CreateRoomRequest(name=room_name))
    alice = await connect("alice", room_name)
    gone = Events(alice, "disconnected")
    await lkapi.room.delete_room(api.DeleteRoomRequest(room=room_name))
    new = await lkapi.room.create_room(api.CreateRoomRequest(name=room_name))
    assert new.name == room_name and new.sid != old.sid
    (reason,) = await gone.wait("disconnected")
    assert reason == rtc.DisconnectReason.ROOM_DELETED
    await lkapi.room.delete_room(api.DeleteRoomRequest(room=room_name))


async def test_departure_timeout_closes_the_room(
    lkapi: api.LiveKitAPI, connect: Connect, room_name: str
) -> None:
    await lkapi.room.create_room(api.CreateRoomRequest(name=room_name, departure_timeout=1))
    client = await connect("alice", room_name)
    await client.disconnect()
    assert await listed(lkapi, room_name)  # still open right after the last participant left ...
    await wait_unlisted(lkapi, room_name, within=15)  # ... closed about a second later


async def test_empty_timeout_closes_a_room_nobody_joined(lkapi: api.LiveKitAPI, room_name: str) -> None:
    await lkapi.room.create_room(api.CreateRoomRequest(name=room_name, empty_timeout=1))
    await wait_unlisted(lkapi, room_name, within=15)


async def test_delete_room_disconnects_clients(
    lkapi: api.LiveKitAPI, connect: Connect, room_name: str
) -> None:
    alice, bob = await two_clients(connect, room_name)
    gone = [Events(alice, "disconnected"), Events(bob, "disconnected")]
    await lkapi.room.delete_room(api.DeleteRoomRequest(room=room_name))
    for events in gone:
        (reason,) = await events.wait("disconnected")
        assert reason == rtc.DisconnectReason.ROOM_DELETED
    await wait_unlisted(lkapi, room_name, within=10)


async def test_delete_unknown_room_is_not_found(lkapi: api.LiveKitAPI, room_name: str) -> None:
    with pytest.raises(api.ServerError) as info:
        await lkapi.room.delete_room(api.DeleteRoomRequest(room=room_name))
    assert (info.value.code, info.value.status) == ("not_found", 404)


async def test_list_and_get_participants(lkapi: api.LiveKitAPI, connect: Connect, room_name: str) -> None:
    alice, _ = await two_clients(connect, room_name)
    listed_ = await lkapi.room.list_participants(api.ListParticipantsRequest(room=room_name))
    assert sorted(p.identity for p in listed_.participants) == ["alice", "bob"]
    info = await lkapi.room.get_participant(api.RoomParticipantIdentity(room=room_name, identity="alice"))
    assert info.sid == alice.local_participant.sid and info.identity == "alice"
    with pytest.raises(api.ServerError) as error:
        await lkapi.room.get_participant(api.RoomParticipantIdentity(room=room_name, identity="nobody"))
    assert error.value.code == "not_found"


async def test_unknown_room_has_no_participants(lkapi: api.LiveKitAPI, room_name: str) -> None:
    empty = await lkapi.room.list_participants(api.ListParticipantsRequest(room=room_name))
    assert list(empty.participants) == []  # as LiveKit, rather than not_found
    with pytest.raises(api.ServerError) as info:
        await lkapi.room.get_participant(api.RoomParticipantIdentity(room=room_name, identity="alice"))
    assert info.value.code == "not_found"


async def test_remove_participant(lkapi: api.LiveKitAPI, connect: Connect, room_name: str) -> None:
    alice, bob = await two_clients(connect, room_name)
    kicked, left = Events(alice, "disconnected"), Events(bob, "participant_disconnected")
    await lkapi.room.remove_participant(api.RoomParticipantIdentity(room=room_name, identity="alice"))
    (reason,) = await kicked.wait("disconnected")
    assert reason == rtc.DisconnectReason.PARTICIPANT_REMOVED
    await left.wait("participant_disconnected", lambda p: p.identity == "alice")
    with pytest.raises(api.ServerError) as info:
        await lkapi.room.remove_participant(api.RoomParticipantIdentity(room=room_name, identity="alice"))
    assert info.value.code == "not_found"


async def test_update_participant_reaches_other_clients(
    lkapi: api.LiveKitAPI, connect: Connect, room_name: str
) -> None:
    alice, bob = await two_clients(connect, room_name)
    seen_by_bob = Events(
        bob, "participant_metadata_changed", "participant_name_changed", "participant_attributes_changed"
    )
    seen_by_alice = Events(alice, "participant_metadata_changed")
    info = await lkapi.room.update_participant(
        api.UpdateParticipantRequest(
            room=room_name,
            identity="alice",
            metadata="status: away",
            name="Alice A.",
            attributes={"color": "red"},
        )
    )
    assert (info.metadata, info.name, dict(info.attributes)) == ("status: away", "Alice A.", {"color": "red"})
    await seen_by_bob.wait(
        "participant_metadata_changed", lambda p, old, new: p.identity == "alice" and new == "status: away"
    )
    await seen_by_bob.wait(
        "participant_name_changed", lambda p, old, new: p.identity == "alice" and new == "Alice A."
    )
    await seen_by_bob.wait(
        "participant_attributes_changed",
        lambda changed, p: p.identity == "alice" and changed == {"color": "red"},
    )
    await seen_by_alice.wait("participant_metadata_changed", lambda p, old, new: new == "status: away")
    assert bob.remote_participants["alice"].metadata == "status: away"
    # An empty attribute value deletes the attribute; empty metadata and name leave them as they are.
    info = await lkapi.room.update_participant(
        api.UpdateParticipantRequest(room=room_name, identity="alice", attributes={"color": ""})
    )
    assert (info.metadata, info.name, dict(info.attributes)) == ("status: away", "Alice A.", {})
    await wait_for(lambda: bob.remote_participants["alice"].attributes == {})


async def test_update_participant_permission(lkapi: api.LiveKitAPI, connect: Connect, room_name: str) -> None:
    await two_clients(connect, room_name)
    permission = api.ParticipantPermission(can_subscribe=True, can_publish=False, can_publish_data=False)
    info = await lkapi.room.update_participant(
        api.UpdateParticipantRequest(room=room_name, identity="alice", permission=permission)
    )
    assert not info.permission.can_publish and not info.permission.can_publish_data
    fetched = await lkapi.room.get_participant(api.RoomParticipantIdentity(room=room_name, identity="alice"))
    assert fetched.permission == info.permission


async def test_update_participant_unknown_is_not_found(
    lkapi: api.LiveKitAPI, connect: Connect, room_name: str
) -> None:
    await connect("alice", room_name)
    with pytest.raises(api.ServerError) as info:
        await lkapi.room.update_participant(
            api.UpdateParticipantRequest(room=room_name, identity="nobody", metadata="x")
        )
    assert info.value.code == "not_found"


async def test_update_room_metadata(lkapi: api.LiveKitAPI, connect: Connect, room_name: str) -> None:
    alice, _ = await two_clients(connect, room_name)
    changed = Events(alice, "room_metadata_changed")
    room = await lkapi.room.update_room_metadata(api.UpdateRoomMetadataRequest(room=room_name, metadata="v2"))
    assert room.metadata == "v2" and room.name == room_name
    await changed.wait("room_metadata_changed", lambda old, new: new == "v2")
    assert alice.metadata == "v2"


async def test_update_room_metadata_of_unknown_room(lkapi: api.LiveKitAPI, room_name: str) -> None:
    with pytest.raises(api.ServerError) as info:
        await lkapi.room.update_room_metadata(api.UpdateRoomMetadataRequest(room=room_name, metadata="v2"))
    assert info.value.code == "not_found"


async def test_send_data_to_everyone_and_to_identities(
    lkapi: api.LiveKitAPI, connect: Connect, room_name: str
) -> None:
    alice, bob = await two_clients(connect, room_name)
    to_alice, to_bob = Events(alice, "data_received"), Events(bob, "data_received")
    # Reliable data is ordered: once alice has the broadcast sent second, she would have had the first packet.
    await lkapi.room.send_data(
        api.SendDataRequest(
            room=room_name,
            data=b"for bob",
            kind=api.DataPacket.Kind.RELIABLE,
            topic="private",
            destination_identities=["bob"],
        )
    )
    await lkapi.room.send_data(
        api.SendDataRequest(room=room_name, data=b"for all", kind=api.DataPacket.Kind.RELIABLE, topic="news")
    )
    (to_bob_first,) = await to_bob.wait("data_received", lambda p: p.data == b"for bob")
    assert to_bob_first.topic == "private" and to_bob_first.participant is None  # sent by the server
    await to_bob.wait("data_received", lambda p: p.data == b"for all")
    (broadcast,) = await to_alice.wait("data_received", lambda p: p.data == b"for all")
    assert broadcast.topic == "news" and broadcast.participant is None
    assert [p.data for (p,) in to_alice.args("data_received")] == [b"for all"]


async def test_send_data_to_unknown_room(lkapi: api.LiveKitAPI, room_name: str) -> None:
    with pytest.raises(api.ServerError) as info:
        await lkapi.room.send_data(api.SendDataRequest(room=room_name, data=b"x"))
    assert info.value.code == "not_found"


async def test_mute_and_subscriptions_unknown_targets(
    lkapi: api.LiveKitAPI, connect: Connect, room_name: str
) -> None:
    await connect("alice", room_name)
    for identity, track in (("nobody", "TR_nothing"), ("alice", "TR_nothing")):
        with pytest.raises(api.ServerError) as info:
            await lkapi.room.mute_published_track(
                api.MuteRoomTrackRequest(room=room_name, identity=identity, track_sid=track, muted=True)
            )
        assert info.value.code == "not_found"
    with pytest.raises(api.ServerError) as info:
        await lkapi.room.update_subscriptions(
            api.UpdateSubscriptionsRequest(
                room=room_name, identity="nobody", track_sids=["TR_x"], subscribe=False
            )
        )
    assert info.value.code == "not_found"


ADMIN_CALLS: list[tuple[str, Callable[[api.LiveKitAPI, str], Awaitable[Any]]]] = [
    ("ListParticipants", lambda c, r: c.room.list_participants(api.ListParticipantsRequest(room=r))),
    (
        "GetParticipant",
        lambda c, r: c.room.get_participant(api.RoomParticipantIdentity(room=r, identity="a")),
    ),
    (
        "RemoveParticipant",
        lambda c, r: c.room.remove_participant(api.RoomParticipantIdentity(room=r, identity="a")),
    ),
    (
        "UpdateParticipant",
        lambda c, r: c.room.update_participant(
            api.UpdateParticipantRequest(room=r, identity="a", metadata="m")
        ),
    ),
    ("UpdateRoomMetadata", lambda c, r: c.room.update_room_metadata(api.UpdateRoomMetadataRequest(room=r))),
    ("SendData", lambda c, r: c.room.send_data(api.SendDataRequest(room=r, data=b"x"))),
    (
        "MutePublishedTrack",
        lambda c, r: c.room.mute_published_track(
            api.MuteRoomTrackRequest(room=r, identity="a", track_sid="TR_a")
        ),
    ),
    (
        "UpdateSubscriptions",
        lambda c, r: c.room.update_subscriptions(api.UpdateSubscriptionsRequest(room=r, identity="a")),
    ),
]


@pytest.mark.parametrize(("method", "request_"), ADMIN_CALLS, ids=[m for m, _ in ADMIN_CALLS])
@pytest.mark.parametrize(
    "grants",
    [
        {"room_join": True, "room": "ROOM"},  # a participant's token
        {"room_admin": True, "room": "elsewhere"},  # admin of another room
        {"room_create": True, "room_list": True},  # room-level grants are not admin grants
    ],
    ids=["join-only", "other-room", "create-list"],
)
async def test_admin_methods_refused_without_room_admin(
    server: Server,
    lkapi: api.LiveKitAPI,
    room_name: str,
    method: str,
    request_: Callable[[api.LiveKitAPI, str], Awaitable[Any]],
    grants: dict[str, Any],
) -> None:
    await lkapi.room.create_room(
        api.CreateRoomRequest(name=room_name)
    )  # the refusal is about the grant alone
    grants = {k: (room_name if v == "ROOM" else v) for k, v in grants.items()}
    async with token_api(server, **grants) as client:
        with pytest.raises(api.ServerError) as info:
            await request_(client, room_name)
    assert (info.value.code, info.value.status) == REFUSED, method


async def test_room_level_methods_refused_without_their_grant(server: Server, room_name: str) -> None:
    async with token_api(server, room_admin=True, room=room_name, room_list=True) as client:
        with pytest.raises(api.ServerError) as info:
            await client.room.create_room(api.CreateRoomRequest(name=room_name))
        assert (info.value.code, info.value.status) == REFUSED
        with pytest.raises(api.ServerError) as info:
            await client.room.delete_room(api.DeleteRoomRequest(room=room_name))
        assert (info.value.code, info.value.status) == REFUSED
    async with token_api(server, room_create=True) as client:
        with pytest.raises(api.ServerError) as info:
            await client.room.list_rooms(api.ListRoomsRequest())
        assert (info.value.code, info.value.status) == REFUSED


async def test_bad_credentials_refused(server: Server) -> None:
    async with api.LiveKitAPI(server.http_url, server.api_key, "not-the-secret") as client:
        with pytest.raises(api.ServerError) as info:
            await client.room.list_rooms(api.ListRoomsRequest())
    assert (info.value.code, info.value.status) == ("unauthenticated", 401)
    assert "signature" in info.value.message
    async with api.LiveKitAPI(server.http_url, "unknown-key", server.api_secret) as client:
        with pytest.raises(api.ServerError) as info:
            await client.room.list_rooms(api.ListRoomsRequest())
    assert (info.value.code, info.value.status) == ("unauthenticated", 401)
