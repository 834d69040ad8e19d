"""`raysfu room ...` and `raysfu participant ...`: admin commands in the style of LiveKit's `lk`, through the
Twirp RoomService with the server SDK (livekit-api), so they work against raysfu and LiveKit alike.

The server and the key come from `--url`, `--api-key`, `--api-secret`, else from `LIVEKIT_URL`,
`LIVEKIT_API_KEY`, `LIVEKIT_API_SECRET`. What goes wrong (a missing setting, a server that cannot be
reached, one that refuses) is one line on stderr and exit code 1.
"""

import argparse
import asyncio
import os
import sys
import warnings
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import jwt.warnings
from livekit import api as lkapi
from livekit.api.room_service import RoomService
from livekit.protocol import models

TIMEOUT = 10.0  # seconds for one request


class AdminError(Exception):
    """A setting or an answer that stops the command; its message is the one line the user sees."""


def server_options() -> argparse.ArgumentParser:
    """The options naming the server and the key, for the commands' parsers (`parents`)."""
    server = argparse.ArgumentParser(add_help=False)
    server.add_argument("--url", help="the server, http(s):// or ws(s):// (default: $LIVEKIT_URL)")
    server.add_argument("--api-key", help="API key (default: $LIVEKIT_API_KEY)")
    server.add_argument("--api-secret", help="API secret (default: $LIVEKIT_API_SECRET)")
    return server


def add_commands(sub: "argparse._SubParsersAction[Any]") -> None:
    """The `room` and `participant` commands, on the `raysfu` parser's subcommands."""
    server = server_options()

    room = sub.add_parser("room", help="list, create and delete rooms").add_subparsers(
        dest="action", required=True
    )
    room.add_parser("list", parents=[server], help="list the rooms")
    create = room.add_parser("create", parents=[server], help="create a room")
    create.add_argument("name")
    create.add_argument("--empty-timeout", type=int, help="seconds the room stays open if nobody joins")
    create.add_argument("--departure-timeout", type=int, help="seconds it stays open after the last leaves")
    create.add_argument("--max-participants", type=int, help="0 = unlimited")
    create.add_argument("--metadata", default="")
    delete = room.add_parser("delete", parents=[server], help="delete a room, disconnecting everyone in it")
    delete.add_argument("name")

    participant = sub.add_parser("participant", help="list, remove and mute participants").add_subparsers(
        dest="action", required=True
    )
    listing = participant.add_parser("list", parents=[server], help="list a room's participants")
    listing.add_argument("--room", required=True)
    remove = participant.add_parser("remove", parents=[server], help="disconnect a participant")
    remove.add_argument("--room", required=True)
    remove.add_argument("--identity", required=True)
    mute = participant.add_parser("mute", parents=[server], help="mute a participant's tracks")
    mute.add_argument("--room", required=True)
    mute.add_argument("--identity", required=True)
    mute.add_argument("--track", help="the track's SID (default: every track it publishes)")
    mute.add_argument("--unmute", action="store_true", help="unmute instead")


def main(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> int:
    """Runs a `room` or `participant` command: its output on stdout, or one line on stderr."""
    # The secret is the server's (the dev one is `secret`, as LiveKit's): PyJWT's advice on its length would
    # be a second line on every call.
    warnings.filterwarnings("ignore", category=jwt.warnings.InsecureKeyLengthWarning)
    try:
        url, key, secret = server_settings(args, os.environ if environ is None else environ)
        print(asyncio.run(_run(args, url, key, secret)))
        return 0
    except AdminError as exc:
        print(f"raysfu: {exc}", file=sys.stderr)
        return 1


def server_settings(args: argparse.Namespace, environ: Mapping[str, str]) -> tuple[str, str, str]:
    """The server's URL, the API key and secret: from the flags, else the environment; AdminError if not."""
    url = args.url or environ.get("LIVEKIT_URL", "")
    key = args.api_key or environ.get("LIVEKIT_API_KEY", "")
    secret = args.api_secret or environ.get("LIVEKIT_API_SECRET", "")
    for value, flag, env in ((url, "--url", "LIVEKIT_URL"), (key, "--api-key", "LIVEKIT_API_KEY")):
        if not value:
            raise AdminError(f"no {flag[2:].replace('-', ' ')}: pass {flag} or set {env}")
    if not secret:
        raise AdminError("no api secret: pass --api-secret or set LIVEKIT_API_SECRET")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https", "ws", "wss") or not parts.hostname:
        raise AdminError(f"{url!r} is not a server URL: expected http(s)://host:port or ws(s)://host:port")
    return url, key, secret


async def _run(args: argparse.Namespace, url: str, key: str, secret: str) -> str:
    try:
        async with lkapi.LiveKitAPI(url, key, secret, timeout=aiohttp.ClientTimeout(total=TIMEOUT)) as client:
            return await _command(client.room, args)
    except lkapi.TwirpError as exc:
        why = f"{exc.code}: {exc.message}" if exc.message else f"{exc.code} (is it a LiveKit server?)"
        raise AdminError(f"{url} refused (HTTP {exc.status}): {why}") from None
    except aiohttp.ClientError as exc:
        raise AdminError(f"cannot reach {url}: {exc}") from None
    except TimeoutError:
        raise AdminError(f"no answer from {url} within {TIMEOUT:.0f} s") from None


async def _command(rooms: RoomService, args: argparse.Namespace) -> str:
    command = (args.command, args.action)
    if command == ("room", "list"):
        return room_table((await rooms.list_rooms(lkapi.ListRoomsRequest())).rooms)
    if command == ("room", "create"):
        create = lkapi.CreateRoomRequest(name=args.name, metadata=args.metadata)
        for field in ("empty_timeout", "departure_timeout", "max_participants"):
            if getattr(args, field) is not None:
                setattr(create, field, getattr(args, field))
        return room_table([await rooms.create_room(create)])
    if command == ("room", "delete"):
        await rooms.delete_room(lkapi.DeleteRoomRequest(room=args.name))
        return f"deleted room {args.name}"
    if command == ("participant", "list"):
        listing = lkapi.ListParticipantsRequest(room=args.room)
        return participant_table((await rooms.list_participants(listing)).participants)
    who = lkapi.RoomParticipantIdentity(room=args.room, identity=args.identity)
    if command == ("participant", "remove"):
        await rooms.remove_participant(who)
        return f"removed {args.identity} from {args.room}"
    assert command == ("participant", "mute"), command
    sids = [args.track] if args.track else [t.sid for t in (await rooms.get_participant(who)).tracks]
    if not sids:
        raise AdminError(f"{args.identity} publishes no track in {args.room}")
    tracks = [
        await rooms.mute_published_track(
            lkapi.MuteRoomTrackRequest(
                room=args.room, identity=args.identity, track_sid=sid, muted=not args.unmute
            )
        )
        for sid in sids
    ]
    return track_table([t.track for t in tracks])


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns padded to their widest cell, two spaces apart."""
    widths = [max(len(str(row[i])) for row in (header, *rows)) for i in range(len(header))]
    lines = [
        "  ".join(str(cell).ljust(w) for cell, w in zip(row, widths, strict=True)) for row in (header, *rows)
    ]
    return "\n".join(line.rstrip() for line in lines)


def _time(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S") if seconds else ""


def room_table(rooms: Sequence[models.Room]) -> str:
    header = ("SID", "NAME", "PARTICIPANTS", "PUBLISHERS", "CREATED (UTC)", "METADATA")
    rows = [
        (r.sid, r.name, str(r.num_participants), str(r.num_publishers), _time(r.creation_time), r.metadata)
        for r in sorted(rooms, key=lambda r: r.name)
    ]
    return table(header, rows)


def _track(track: models.TrackInfo) -> str:
    kind = models.TrackType.Name(track.type).lower()
    return f"{track.sid} {kind}{' (muted)' if track.muted else ''}"


def participant_table(participants: Sequence[models.ParticipantInfo]) -> str:
    header = ("SID", "IDENTITY", "NAME", "STATE", "JOINED (UTC)", "TRACKS")
    rows = [
        (
            p.sid,
            p.identity,
            p.name,
            models.ParticipantInfo.State.Name(p.state),
            _time(p.joined_at),
            ", ".join(_track(t) for t in p.tracks),
        )
        for p in sorted(participants, key=lambda p: p.identity)
    ]
    return table(header, rows)


def track_table(tracks: Sequence[models.TrackInfo]) -> str:
    header = ("SID", "TYPE", "SOURCE", "NAME", "MUTED")
    rows = [
        (
            t.sid,
            models.TrackType.Name(t.type).lower(),
            models.TrackSource.Name(t.source).lower(),
            t.name,
            "yes" if t.muted else "no",
        )
        for t in tracks
    ]
    return table(header, rows)
