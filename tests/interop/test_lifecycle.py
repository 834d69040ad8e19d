"""Hidden participants, full rooms, and a server shutdown as the SDK clients see them."""

import asyncio
import subprocess
import sys
from pathlib import Path

import jwt
import pytest
from livekit import api as lkapi
from livekit import rtc

from tests.interop.conftest import running_server, stop_server
from tests.interop.sdk import Connect, Events, MintToken, Server, wait_for


async def test_hidden_participant_is_not_announced(connect: Connect, room_name: str) -> None:
    bob = await connect("bob", room_name)
    events = Events(bob, "participant_connected", "participant_disconnected")
    ghost = await connect("ghost", room_name, hidden=True)
    assert set(ghost.remote_participants) == {"bob"}  # a hidden participant sees the others
    carol = await connect("carol", room_name)
    assert set(carol.remote_participants) == {"bob"}  # and is not in anybody's JoinResponse
    await events.wait("participant_connected", lambda p: p.identity == "carol")
    await ghost.disconnect()
    await asyncio.sleep(0.5)
    assert "ghost" not in {p.identity for (p,) in events.args("participant_connected")}
    assert events.args("participant_disconnected") == []


async def test_full_room_refuses_the_next_join(
    connect: Connect, api: lkapi.LiveKitAPI, server: Server, token: MintToken, room_name: str
) -> None:
    await api.room.create_room(lkapi.CreateRoomRequest(name=room_name, max_participants=2))
    alice = await connect("alice", room_name)
    await connect("bob", room_name)
    late = rtc.Room()
    with pytest.raises(rtc.ConnectError):
        await late.connect(server.url, token("carol", room_name), rtc.RoomOptions(connect_timeout=5))
    assert alice.isconnected() and set(alice.remote_participants) == {"bob"}


def test_token_command_mints_a_valid_token() -> None:
    raysfu = Path(sys.executable).with_name("raysfu")
    out = subprocess.run(
        [str(raysfu), "token", "--identity", "alice", "--room", "demo", "--name", "Alice", "--no-publish"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    claims = jwt.decode(out, "secret", algorithms=["HS256"])
    assert (claims["iss"], claims["sub"], claims["name"]) == ("devkey", "alice", "Alice")
    assert claims["video"]["roomJoin"] is True and claims["video"]["room"] == "demo"
    assert claims["video"]["canPublish"] is False


async def test_shutdown_tells_clients_and_exits_cleanly(tmp_path: Path, token: MintToken) -> None:
    """SIGTERM: every client gets LeaveRequest(SERVER_SHUTDOWN), then the server exits with 0."""
    with running_server(7891, 8266, tmp_path) as (srv, process):
        clients = [rtc.Room() for _ in range(2)]
        events = [Events(c, "disconnected") for c in clients]
        for i, client in enumerate(clients):
            await client.connect(srv.url, token(f"p{i}", "shutdown-room"))
        process.send_signal(15)
        for recorded in events:
            (reason,) = await recorded.wait("disconnected", timeout=20)
            assert reason == rtc.DisconnectReason.SERVER_SHUTDOWN
        await wait_for(lambda: process.poll() is not None, timeout=25, what="the server to exit")
        stop_server(process, srv)  # asserts the exit code is 0
        assert "telling 2 clients" in srv.log_path.read_text()
