"""The admin commands' tables and settings (gateway/admin.py); against a server, see
tests/interop/test_admin_cli.py."""

import argparse

import pytest
from livekit.protocol import models

from gateway.admin import AdminError, participant_table, room_table, server_settings, table, track_table
from gateway.cli import parser


def test_table_pads_columns_to_the_widest_cell() -> None:
    assert table(("A", "LONGER"), [("wide cell", "x"), ("y", "")]) == "A          LONGER\nwide cell  x\ny"


def test_room_table() -> None:
    rooms = [
        models.Room(sid="RM_b", name="b", num_participants=2, num_publishers=1, creation_time=0),
        models.Room(sid="RM_a", name="a", creation_time=1764633600, metadata="{}"),
    ]
    assert room_table(rooms).splitlines() == [
        "SID   NAME  PARTICIPANTS  PUBLISHERS  CREATED (UTC)        METADATA",
        "RM_a  a     0             0           2025-12-02 00:00:00  {}",
        "RM_b  b     2             1",
    ]


def test_participant_and_track_tables() -> None:
    mic = models.TrackInfo(
        sid="TR_m", type=models.AUDIO, source=models.TrackSource.MICROPHONE, name="mic", muted=True
    )
    cam = models.TrackInfo(sid="TR_c", type=models.VIDEO, source=models.TrackSource.CAMERA, name="cam")
    alice = models.ParticipantInfo(
        sid="PA_a", identity="alice", name="Alice", state=models.ParticipantInfo.ACTIVE, tracks=[mic, cam]
    )
    assert participant_table([alice]).splitlines() == [
        "SID   IDENTITY  NAME   STATE   JOINED (UTC)  TRACKS",
        "PA_a  alice     Alice  ACTIVE                TR_m audio (muted), TR_c video",
    ]
    assert track_table([mic, cam]).splitlines() == [
        "SID   TYPE   SOURCE      NAME  MUTED",
        "TR_m  audio  microphone  mic   yes",
        "TR_c  video  camera      cam   no",
    ]


def _args(*argv: str) -> argparse.Namespace:
    return parser().parse_args(["room", "list", *argv])


def test_flags_win_over_the_environment() -> None:
    env = {"LIVEKIT_URL": "ws://env:7880", "LIVEKIT_API_KEY": "ek", "LIVEKIT_API_SECRET": "es"}
    assert server_settings(_args(), env) == ("ws://env:7880", "ek", "es")
    assert server_settings(_args("--url", "https://x", "--api-key", "k"), env) == ("https://x", "k", "es")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "no url: pass --url or set LIVEKIT_URL"),
        ({"LIVEKIT_URL": "http://h"}, "no api key: pass --api-key or set LIVEKIT_API_KEY"),
        ({"LIVEKIT_URL": "http://h", "LIVEKIT_API_KEY": "k"}, "no api secret"),
        ({"LIVEKIT_URL": "h:7880", "LIVEKIT_API_KEY": "k", "LIVEKIT_API_SECRET": "s"}, "is not a server URL"),
    ],
)
def test_missing_settings_are_admin_errors(env: dict[str, str], message: str) -> None:
    with pytest.raises(AdminError, match=message):
        server_settings(_args(), env)


def test_a_bad_command_line_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        parser().parse_args(["participant", "mute", "--room", "r"])
    assert caught.value.code == 2
    assert capsys.readouterr().err == (
        "raysfu participant mute: the following arguments are required: --identity "
        "(see raysfu participant mute --help)\n"
    )
