"""`raysfu room ...` and `raysfu participant ...` run as the user runs them (the installed command, a
subprocess) against the test server, with SDK participants in the room."""

import asyncio
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from livekit import api as lkapi
from livekit import rtc

from tests.interop.sdk import Connect, Events, Server, wait_for

RAYSFU = str(Path(sys.executable).with_name("raysfu"))


@dataclass(frozen=True)
class Done:
    code: int
    out: str
    err: str


async def raysfu(*args: str, env: dict[str, str] | None = None) -> Done:
    """The `raysfu` command, its environment without LIVEKIT_* unless `env` gives them."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("LIVEKIT_")}
    process = await asyncio.create_subprocess_exec(
        RAYSFU,
        *args,
        env={**base, **(env or {})},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return Done(process.returncode, out.decode(), err.decode())


def flags(server: Server) -> list[str]:
    return ["--url", server.url, "--api-key", server.api_key, "--api-secret", server.api_secret]


def row(output: str, first_cells: str) -> list[str]:
    """The table row whose cells start with `first_cells` (space-separated), as its cells."""
    wanted = first_cells.split()
    for line in output.splitlines():
        cells = line.split()
        if [c for c in cells if c in wanted] == wanted:
            return cells
    raise AssertionError(f"no row with {first_cells!r} in:\n{output}")


async def test_room_create_list_and_delete(server: Server, api: lkapi.LiveKitAPI, room_name: str) -> None:
    env = {"LIVEKIT_URL": server.http_url, "LIVEKIT_API_KEY": server.api_key}
    env["LIVEKIT_API_SECRET"] = server.api_secret
    created = await raysfu(
        "room", "create", room_name, "--max-participants", "3", "--metadata", "m1", env=env
    )
    assert created.code == 0, created.err
    assert created.out.split("\n")[0].split() == [
        "SID",
        "NAME",
        "PARTICIPANTS",
        "PUBLISHERS",
        "CREATED",
        "(UTC)",
        "METADATA",
    ]
    (room,) = (await api.room.list_rooms(lkapi.ListRoomsRequest(names=[room_name]))).rooms
    assert (room.max_participants, room.metadata) == (3, "m1")
    assert row(created.out, f"{room.sid} {room_name}")[-1] == "m1"

    listed = await raysfu("room", "list", env=env)
    assert listed.code == 0, listed.err
    assert row(listed.out, f"{room.sid} {room_name}")[2:4] == ["0", "0"]

    deleted = await raysfu(
        "room", "delete", room_name, *flags(server)
    )  # the flags instead of the environment
    assert (deleted.code, deleted.out, deleted.err) == (0, f"deleted room {room_name}\n", "")
    assert not (await api.room.list_rooms(lkapi.ListRoomsRequest(names=[room_name]))).rooms
    assert room_name not in (await raysfu("room", "list", env=env)).out


async def test_participant_list_mute_and_remove(server: Server, connect: Connect, room_name: str) -> None:
    alice = await connect("alice", room_name, name="Alice")
    bob = await connect("bob", room_name)
    source = rtc.AudioSource(48000, 1)
    published = await alice.local_participant.publish_track(
        rtc.LocalAudioTrack.create_audio_track("mic", source), rtc.TrackPublishOptions()
    )
    await wait_for(
        lambda: published.sid in bob.remote_participants["alice"].track_publications, what="bob sees mic"
    )

    listed = await raysfu("participant", "list", "--room", room_name, *flags(server))
    assert listed.code == 0, listed.err
    assert listed.out.split("\n")[0].split()[:4] == ["SID", "IDENTITY", "NAME", "STATE"]
    cells = row(listed.out, "alice Alice")
    assert cells[0] == alice.local_participant.sid and "ACTIVE" in cells
    assert f"{published.sid} audio" in listed.out
    assert row(listed.out, "bob")[0] == bob.local_participant.sid

    events = Events(bob, "track_muted", "track_unmuted")
    muted = await raysfu("participant", "mute", "--room", room_name, "--identity", "alice", *flags(server))
    assert muted.code == 0, muted.err
    assert row(muted.out, f"{published.sid} audio")[-1] == "yes"
    await events.wait("track_muted", lambda p, pub: pub.sid == published.sid)
    assert (
        f"{published.sid} audio (muted)"
        in (await raysfu("participant", "list", "--room", room_name, *flags(server))).out
    )

    unmuted = await raysfu(
        "participant", "mute", "--room", room_name, "--identity", "alice",
        "--track", published.sid, "--unmute", *flags(server),
    )  # fmt: skip
    assert unmuted.code == 0, unmuted.err
    assert row(unmuted.out, f"{published.sid} audio")[-1] == "no"
    await events.wait("track_unmuted", lambda p, pub: pub.sid == published.sid)

    gone = Events(alice, "disconnected")
    removed = await raysfu(
        "participant", "remove", "--room", room_name, "--identity", "alice", *flags(server)
    )
    assert (removed.code, removed.out) == (0, f"removed alice from {room_name}\n"), removed.err
    await gone.wait("disconnected")
    await wait_for(lambda: "alice" not in bob.remote_participants, what="bob sees alice leave")
    after = await raysfu("participant", "list", "--room", room_name, *flags(server))
    assert "alice" not in after.out and row(after.out, "bob")


async def test_errors_are_one_line_and_a_non_zero_exit(server: Server, room_name: str) -> None:
    cases = [
        (("room", "list", "--url", server.url, "--api-key", server.api_key, "--api-secret", "wrong"), 1,
         f"raysfu: {server.url} refused (HTTP 401): unauthenticated: "),
        (("room", "list", "--url", "http://127.0.0.1:7999", "--api-key", "k", "--api-secret", "s"), 1,
         "raysfu: cannot reach http://127.0.0.1:7999: "),
        (("room", "list", "--api-key", "k", "--api-secret", "s"), 1,
         "raysfu: no url: pass --url or set LIVEKIT_URL"),
        (("room", "list", "--url", "127.0.0.1:7880", "--api-key", "k", "--api-secret", "s"), 1,
         "raysfu: '127.0.0.1:7880' is not a server URL"),
        (("participant", "mute", "--room", room_name, "--identity", "nobody", *flags(server)), 1,
         f"raysfu: {server.url} refused (HTTP 404): not_found: "),
        (("room", "remove", room_name), 2, "raysfu room: argument action: invalid choice: 'remove'"),
        (("participant", "list", *flags(server)), 2,
         "raysfu participant list: the following arguments are required: --room"),
        (("room", "create", room_name, "--max-participants", "many", *flags(server)), 2,
         "raysfu room create: argument --max-participants: invalid int value: 'many'"),
    ]  # fmt: skip
    for args, code, start in cases:
        done = await raysfu(*args)
        assert done.code == code, (args, done)
        assert done.err.startswith(start), (args, done.err)
        assert done.err.count("\n") == 1 and "Traceback" not in done.err, (args, done.err)
        assert done.out == "", (args, done.out)
