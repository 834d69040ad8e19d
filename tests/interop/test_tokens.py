"""Access tokens at the door: `/rtc/validate`, the `/rtc` upgrade, the SDK's `room.connect` and the Twirp
RoomService, against a running server."""

import asyncio
import base64
import json
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import jwt
import pytest
from livekit import api, rtc
from livekit.protocol import room as room_pb
from livekit.protocol import rtc as signal

from gateway.auth import MAX_TOKEN
from tests.interop.sdk import Connect, Events, MintToken, Server

CONNECT_LIMIT = 30  # seconds; the SDK retries a refused connection a few times before raising


def b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def claims(server: Server, room: str, **overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base = {
        "iss": server.api_key,
        "sub": "alice",
        "nbf": now,
        "exp": now + 600,
        "video": {"roomJoin": True, "room": room},
    }
    return base | overrides


def expired(server: Server, room: str) -> str:
    now = int(time.time())  # an hour old: well beyond any clock-skew leeway
    return jwt.encode(
        claims(server, room, nbf=now - 7200, exp=now - 3600), server.api_secret, algorithm="HS256"
    )


def not_yet_valid(server: Server, room: str) -> str:
    now = int(time.time())
    return jwt.encode(
        claims(server, room, nbf=now + 3600, exp=now + 7200), server.api_secret, algorithm="HS256"
    )


def other_secret(server: Server, room: str) -> str:
    return jwt.encode(claims(server, room), "not-the-server-secret-at-all-32b", algorithm="HS256")


def no_join_grant(server: Server, room: str) -> str:
    # LiveKit has no way to ask for another room than the token's: a token without roomJoin is the refusal.
    grants = api.VideoGrants(room_admin=True, room=room)
    return (
        api.AccessToken(server.api_key, server.api_secret).with_identity("alice").with_grants(grants).to_jwt()
    )


def alg_none(server: Server, room: str) -> str:
    return f"{b64({'alg': 'none', 'typ': 'JWT'})}.{b64(claims(server, room))}."


def tampered(server: Server, room: str, **edits: Any) -> str:
    """A good token whose payload was edited (by default: room admin granted), its signature kept."""
    header, _, signature = jwt.encode(claims(server, room), server.api_secret, algorithm="HS256").split(".")
    grant = {"roomJoin": True, "room": room, "roomAdmin": True}
    return f"{header}.{b64(claims(server, room, video=grant, **edits))}.{signature}"


def oversized(server: Server, room: str, size: int = MAX_TOKEN + 1) -> str:
    """A token signed with the right key, whose only fault is its size (metadata padding)."""
    padding = 0
    while True:  # base64 makes each metadata byte 4/3 bytes of token: grow the padding until it is `size`
        token = jwt.encode(claims(server, room, metadata="x" * padding), server.api_secret, algorithm="HS256")
        if len(token) >= size:
            return token
        padding += max(1, (size - len(token)) * 3 // 4)


BAD_TOKENS: list[tuple[str, Callable[[Server, str], str], str]] = [
    ("expired", expired, "expired"),
    ("nbf-in-future", not_yet_valid, "not valid yet"),
    ("other-secret", other_secret, "signature"),
    ("no-join-grant", no_join_grant, "permission"),
    ("alg-none", alg_none, "algorithm"),
    ("tampered", tampered, "signature"),
]


async def validate(server: Server, token: str) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{server.http_url}/rtc/validate", params={"access_token": token}) as response,
    ):
        return response.status, await response.text()


async def test_validate_accepts_a_good_token(server: Server, token: MintToken, room_name: str) -> None:
    status, _ = await validate(server, token("alice", room_name))
    assert status == 200


async def test_validate_accepts_an_sdk_token(server: Server, room_name: str) -> None:
    grants = api.VideoGrants(room_join=True, room=room_name)
    sdk_token = (
        api.AccessToken(server.api_key, server.api_secret).with_identity("bob").with_grants(grants).to_jwt()
    )
    assert (await validate(server, sdk_token))[0] == 200


@pytest.mark.parametrize(
    ("make", "reason"), [(m, r) for _, m, r in BAD_TOKENS], ids=[n for n, _, _ in BAD_TOKENS]
)
async def test_validate_refuses_with_a_readable_reason(
    server: Server, room_name: str, make: Callable[[Server, str], str], reason: str
) -> None:
    status, body = await validate(server, make(server, room_name))
    assert status in (401, 403)
    assert reason in body.lower()


async def test_validate_refuses_a_missing_token(server: Server) -> None:
    async with aiohttp.ClientSession() as session, session.get(f"{server.http_url}/rtc/validate") as response:
        assert response.status == 401


async def test_sdk_connects_with_a_good_token(server: Server, token: MintToken, room_name: str) -> None:
    room = rtc.Room()
    try:
        await asyncio.wait_for(room.connect(server.url, token("alice", room_name)), CONNECT_LIMIT)
        assert room.isconnected() and room.name == room_name
        assert room.local_participant.identity == "alice"
    finally:
        await room.disconnect()


@pytest.mark.parametrize("make", [m for _, m, _ in BAD_TOKENS], ids=[n for n, _, _ in BAD_TOKENS])
async def test_sdk_connect_raises_for_a_bad_token(
    server: Server, room_name: str, make: Callable[[Server, str], str]
) -> None:
    room = rtc.Room()
    try:
        with pytest.raises(rtc.ConnectError):
            await asyncio.wait_for(room.connect(server.url, make(server, room_name)), CONNECT_LIMIT)
        assert not room.isconnected()
    finally:
        await room.disconnect()


async def upgrade_status(server: Server, token: str, in_query: bool = False, query: str = "") -> int:
    """The HTTP status the `/rtc` WebSocket upgrade is refused with (the token in the header or the query)."""
    params = {"access_token": token} if in_query else {}
    headers = {} if in_query else {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        with pytest.raises(aiohttp.WSServerHandshakeError) as info:
            await session.ws_connect(f"{server.url}/rtc?protocol=16{query}", headers=headers, params=params)
    return info.value.status


async def twirp_status(server: Server, token: str) -> tuple[int, str]:
    """ListParticipants over Twirp JSON with `token`, as livekit-api would send it."""
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session,
        session.post(
            f"{server.http_url}/twirp/livekit.RoomService/ListParticipants",
            json={"room": "any"},
            headers={"Authorization": f"Bearer {token}"},
        ) as response,
    ):
        return response.status, await response.text()


async def test_tampered_grant_is_refused_everywhere(server: Server, room_name: str) -> None:
    """Granting oneself room admin by editing the payload: LiveKit's 401 at the upgrade and over Twirp."""
    token = tampered(server, room_name)
    assert await upgrade_status(server, token) == 401
    status, body = await twirp_status(server, token)
    assert status == 401 and json.loads(body)["code"] == "unauthenticated" and "signature" in body
    renamed = tampered(server, room_name, sub="mallory")  # the identity edited instead
    assert (await validate(server, renamed))[0] == 401


async def test_token_joins_its_own_room_whatever_the_client_asks(
    server: Server, token: MintToken, connect: Connect, room_name: str
) -> None:
    """As in LiveKit, the token's room wins over a `room` the client names: a token for room A asking for
    room B is seated in A, and B (where a bystander waits) never sees it."""
    other_room = f"{room_name}-b"
    bystander = await connect("bystander", other_room)
    events = Events(bystander, "participant_connected")
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(
            f"{server.url}/rtc?protocol=16&room={other_room}",
            headers={"Authorization": f"Bearer {token('alice', room_name)}"},
        ) as ws,
    ):
        join = signal.SignalResponse.FromString((await ws.receive()).data)
        assert join.join.room.name == room_name
    await asyncio.sleep(0.5)
    assert events.names() == [] and "alice" not in bystander.remote_participants


async def test_admin_grant_for_another_room_is_refused(
    server: Server, connect: Connect, room_name: str
) -> None:
    """roomAdmin for room A administers A only: RemoveParticipant in B is refused and B is untouched."""
    other_room = f"{room_name}-b"
    bob = await connect("bob", other_room)
    admin_a = api.LiveKitAPI(server.http_url, server.api_key, server.api_secret)
    try:
        grant = api.VideoGrants(room_admin=True, room=room_name)
        token_a = api.AccessToken(server.api_key, server.api_secret).with_grants(grant).to_jwt()
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                f"{server.http_url}/twirp/livekit.RoomService/RemoveParticipant",
                json={"room": other_room, "identity": "bob"},
                headers={"Authorization": f"Bearer {token_a}"},
            ) as response,
        ):
            body = await response.json()
        # LiveKit answers 401 unauthenticated here; raysfu keeps its 403 permission_denied for a valid token
        # without the grant (see gateway/twirp.py), with LiveKit's message.
        assert (response.status, body["code"]) == (403, "permission_denied")
        assert body["msg"].startswith("permissions denied")
        listed = await admin_a.room.list_participants(api.ListParticipantsRequest(room=other_room))
        assert [p.identity for p in listed.participants] == ["bob"] and bob.isconnected()
    finally:
        await admin_a.aclose()


@pytest.mark.parametrize("in_query", [False, True], ids=["header", "query"])
async def test_oversized_token_is_refused_unread(server: Server, room_name: str, in_query: bool) -> None:
    """A validly signed token over MAX_TOKEN: 431 (LiveKit's HTTP server's answer to an oversized header)
    at the upgrade, at /rtc/validate and over Twirp, with the reason."""
    token = oversized(server, room_name)
    assert await upgrade_status(server, token, in_query) == 431
    params = {"access_token": token} if in_query else {}
    headers = {} if in_query else {"Authorization": f"Bearer {token}"}
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{server.http_url}/rtc/validate", params=params, headers=headers) as response,
    ):
        assert response.status == 431 and str(MAX_TOKEN) in await response.text()
    status, body = await twirp_status(server, token)
    assert status == 431 and str(MAX_TOKEN) in body
    # just under the limit it is an ordinary token
    assert (await validate(server, oversized(server, room_name, MAX_TOKEN - 100)))[0] == 200


async def test_huge_token_is_answered_not_left_hanging(server: Server, room_name: str) -> None:
    """Beyond what the HTTP layer reads (a request line or header over 2 * MAX_TOKEN), the upgrade is still
    answered at once (websockets' own 414/431, which uvicorn alone would never send)."""
    token = oversized(server, room_name, 3 * MAX_TOKEN)
    assert await upgrade_status(server, token) == 431
    assert await upgrade_status(server, token, in_query=True) == 414
    assert (await validate(server, token))[0] in (400, 431)


async def test_token_of_a_removed_participant_joins_again(
    server: Server, token: MintToken, api: api.LiveKitAPI, room_name: str
) -> None:
    """LiveKit's RemoveParticipant does not revoke the token (its open-source server ignores
    RoomParticipantIdentity.revoke_token_ts): the same token joins again at once."""
    jwt_alice = token("alice", room_name)
    first = rtc.Room()
    gone = Events(first, "disconnected")
    second = rtc.Room()
    try:
        await asyncio.wait_for(first.connect(server.url, jwt_alice), CONNECT_LIMIT)
        await api.room.remove_participant(room_pb.RoomParticipantIdentity(room=room_name, identity="alice"))
        (reason,) = await gone.wait("disconnected")
        assert reason == rtc.DisconnectReason.PARTICIPANT_REMOVED
        await asyncio.wait_for(second.connect(server.url, jwt_alice), CONNECT_LIMIT)
        listed = await api.room.list_participants(room_pb.ListParticipantsRequest(room=room_name))
        assert [p.identity for p in listed.participants] == ["alice"]
    finally:
        await first.disconnect()
        await second.disconnect()
