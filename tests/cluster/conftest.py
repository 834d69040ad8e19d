"""The three-node cluster the tests in this folder share (tests/cluster/nodes.py), and SDK clients for it."""

from collections.abc import AsyncIterator, Iterator

import pytest
from livekit import api as lkapi
from livekit import rtc

from tests.cluster.nodes import API_KEY, API_SECRET, ClusterError, Node, cluster
from tests.interop.media import MediaSession


@pytest.fixture(scope="module")
def nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Node]]:
    try:
        with cluster(tmp_path_factory.mktemp("cluster")) as started:
            yield started
    except ClusterError as exc:
        pytest.fail(str(exc), pytrace=False)


def token(identity: str, room: str) -> str:
    grants = lkapi.VideoGrants(room_join=True, room=room)
    return lkapi.AccessToken(API_KEY, API_SECRET).with_identity(identity).with_grants(grants).to_jwt()


@pytest.fixture
async def clients() -> AsyncIterator[list[rtc.Room]]:
    """Rooms a test connects; disconnected at its end."""
    rooms: list[rtc.Room] = []
    yield rooms
    for room in rooms:
        if room.isconnected():
            await room.disconnect()


async def connect(clients: list[rtc.Room], node: Node, identity: str, room: str) -> rtc.Room:
    client = rtc.Room()
    clients.append(client)
    await client.connect(node.url, token(identity, room))
    return client


@pytest.fixture
async def media() -> AsyncIterator[MediaSession]:
    session = MediaSession()
    yield session
    await session.close()


def identities(room: rtc.Room) -> set[str]:
    """Whom `room` (a connected client) sees."""
    return {p.identity for p in room.remote_participants.values()}


async def participants(node: Node, room: str) -> list[str]:
    async with lkapi.LiveKitAPI(node.http_url, API_KEY, API_SECRET) as api:
        listed = await api.room.list_participants(lkapi.ListParticipantsRequest(room=room))
    return sorted(p.identity for p in listed.participants)
