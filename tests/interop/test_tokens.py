"""Access tokens at the door: `/rtc/validate` and the SDK's `room.connect`, against a running server."""

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

from tests.interop.sdk import MintToken, Server

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


BAD_TOKENS: list[tuple[str, Callable[[Server, str], str], str]] = [
    ("expired", expired, "expired"),
    ("nbf-in-future", not_yet_valid, "not valid yet"),
    ("other-secret", other_secret, "signature"),
    ("no-join-grant", no_join_grant, "permission"),
    ("alg-none", alg_none, "algorithm"),
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
