"""`logging.json: true`: the server's output (the gateway's lines and the media workers', which Ray
forwards) is JSON lines, and the lines of a join, a publication and a leave carry the room, the
participant and the track as fields."""

import json
from pathlib import Path
from typing import Any

import pytest
from livekit import rtc

from tests.interop.conftest import running_server
from tests.interop.media import MediaSession
from tests.interop.sdk import wait_for

pytestmark = pytest.mark.timeout(120)


def entries(path: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """The log's JSON objects, and the lines that are not one."""
    parsed, other = [], []
    for line in path.read_text(errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            other.append(line)
            continue
        (parsed if isinstance(entry, dict) else other).append(entry if isinstance(entry, dict) else line)
    return parsed, other


async def test_json_logs_have_a_line_per_event_with_room_participant_and_track(tmp_path: Path) -> None:
    config = tmp_path / "livekit.yaml"
    config.write_text("logging:\n  level: info\n  json: true\n")
    with running_server(7913, 8288, tmp_path, ["--config", str(config)]) as (srv, _):

        def about(words: str) -> list[dict[str, Any]]:
            return [e for e in entries(srv.log_path)[0] if words in e.get("message", "")]

        client = rtc.Room()
        await client.connect(srv.url, srv.token("alice", "logs"))
        media = MediaSession()
        try:
            pub = await media.publish(client, audio=False)
            assert pub.video_publication is not None
            track = pub.video_publication.sid
            await wait_for(lambda: bool(about(f"alice published {track}")), 10.0, "the publication's line")
        finally:
            await media.close()
            await client.disconnect()

        await wait_for(lambda: bool(about("alice (")), 10.0, "the leave's line")
        parsed = entries(srv.log_path)[0]
        (joined,) = about("alice joined as")
        (published,) = about(f"alice published {track}")
        (left,) = about("alice (")
        for entry in (joined, published, left):
            assert (entry["room"], entry["participant"], entry["level"]) == ("logs", "alice", "INFO"), entry
            assert entry["worker"].startswith("media:"), entry
        assert published["track"] == track
        # the lines of the participant's own work carry it too, without being told (actors.hosting)
        assert any(e.get("participant") == "alice" and e["logger"] == "actors.participant" for e in parsed), (
            "no line of actors.participant about alice"
        )
    # All of it, start to stop (the server has exited): JSON objects, each with the four keys.
    parsed, other = entries(srv.log_path)
    assert not other, f"{len(other)} lines are not JSON objects, e.g. {other[:5]}"
    for entry in parsed:
        assert {"time", "level", "logger", "message"} <= entry.keys(), entry
