"""A server started with a LiveKit-style config file: its keys, room timeouts and ICE port range apply."""

import asyncio
from dataclasses import replace
from pathlib import Path

import pytest
from livekit import api as lkapi
from livekit import rtc

from tests.interop.conftest import running_server
from tests.interop.sdk import wait_for

KEY, SECRET = "cfgkey", "a-secret-from-the-config-file-0123456789"
FIRST, LAST = 47200, 47219  # rtc.port_range_start / port_range_end

CONFIG = f"""
keys:
  {KEY}: {SECRET}
rtc:
  port_range_start: {FIRST}
  port_range_end: {LAST}
room:
  empty_timeout: 4
  departure_timeout: 1
logging:
  level: debug
"""


def _token(identity: str, room: str) -> str:
    grants = lkapi.VideoGrants(room_join=True, room=room)
    return lkapi.AccessToken(KEY, SECRET).with_identity(identity).with_grants(grants).to_jwt()


async def _server_ports(client: rtc.Room) -> set[int]:
    """The ports of the server's ICE candidates, as the SDK's WebRTC engine saw them."""
    stats = await client.get_rtc_stats()
    return {
        s.remote_candidate.candidate.port
        for s in (*stats.publisher_stats, *stats.subscriber_stats)
        if s.HasField("remote_candidate")
    }


async def test_a_livekit_config_file_sets_keys_room_timeouts_and_ice_ports(tmp_path: Path) -> None:
    config = tmp_path / "livekit.yaml"
    config.write_text(CONFIG)
    with running_server(7898, 8273, tmp_path, ["--config", str(config)]) as (dev, _):
        srv = replace(dev, api_key=KEY, api_secret=SECRET)
        async with lkapi.LiveKitAPI(srv.http_url, KEY, SECRET) as api:
            created = await api.room.create_room(lkapi.CreateRoomRequest(name="cfg"))
            assert (created.empty_timeout, created.departure_timeout) == (4, 1)

            client = rtc.Room()
            await client.connect(srv.url, _token("alice", "cfg"))
            try:
                await client.local_participant.publish_data("hi", reliable=True)
                await wait_for(lambda: client.connection_state == rtc.ConnectionState.CONN_CONNECTED)
                ports: set[int] = set()
                for _ in range(50):  # the stats have the candidates once ICE has checked them
                    ports = await _server_ports(client)
                    if ports:
                        break
                    await asyncio.sleep(0.2)
                assert ports, "the SDK saw no server candidate"
                assert all(FIRST <= p <= LAST for p in ports), ports
            finally:
                await client.disconnect()

            async def gone() -> bool:
                return not (await api.room.list_rooms(lkapi.ListRoomsRequest(names=["cfg"]))).rooms

            for _ in range(40):  # departure_timeout 1 s after alice left
                if await gone():
                    break
                await asyncio.sleep(0.25)
            assert await gone(), "the room outlived its departure timeout"

        # The file's keys replace the dev key.
        async with lkapi.LiveKitAPI(srv.http_url, "devkey", "secret") as dev_api:
            with pytest.raises(lkapi.TwirpError):
                await dev_api.room.list_rooms(lkapi.ListRoomsRequest())
        log = srv.log_path.read_text(errors="replace")
        assert "ICE host candidates on UDP ports 47200-47219" in log
        assert " DEBUG aioice.ice: " in log  # logging.level: debug, in the media workers too
