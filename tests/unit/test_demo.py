"""The demo page's routes (gateway/demo.py): the page, and dev tokens only from a `--dev` server."""

import json
from dataclasses import replace
from pathlib import Path

import pytest
from starlette.applications import Starlette

from gateway import demo
from gateway.auth import verify_token
from gateway.config import ServerConfig, dev_config
from tests.unit.test_twirp import Client, Reply


async def get(config: ServerConfig, path: str) -> Reply:
    # Client's own get/post run asyncio.run, which would leave the session's tests without an event loop.
    return await Client(Starlette(routes=demo.routes(config)))._request("GET", path, b"", {}, {})


async def post(config: ServerConfig, path: str, body: str) -> Reply:
    return await Client(Starlette(routes=demo.routes(config)))._request("POST", path, body, {}, {})


async def test_the_page_is_served_at_the_root() -> None:
    reply = await get(dev_config(), "/")
    assert reply.status_code == 200 and b'src="demo/bundle.js"' in reply.content


async def test_a_dev_server_mints_a_join_token_for_the_room() -> None:
    config = dev_config()
    reply = await post(config, "/demo/token", json.dumps({"identity": "alice", "room": "demo"}))
    assert reply.status_code == 200
    claims = verify_token(reply.json()["token"], config.api_keys)
    assert (claims.identity, claims.name, claims.video.room, claims.video.room_join) == (
        "alice",
        "alice",
        "demo",
        True,
    )


@pytest.mark.parametrize(
    "config",
    [
        ServerConfig(api_keys={"prodkey": "a-long-secret-a-long-secret-a-long-secret"}),
        ServerConfig(api_keys={"devkey": "secret"}),  # not --dev
        replace(dev_config(), api_keys={"prodkey": "a-long-secret"}),  # --dev with a file's keys
    ],
)
async def test_only_a_dev_server_with_the_dev_key_mints_tokens(config: ServerConfig) -> None:
    reply = await post(config, "/demo/token", json.dumps({"identity": "alice", "room": "demo"}))
    assert reply.status_code == 404 and b"--dev" in reply.content


@pytest.mark.parametrize(
    "body",
    ["", "not json", "[]", '{"identity": "alice"}', '{"identity": "", "room": "demo"}',
     '{"identity": 7, "room": "demo"}', json.dumps({"identity": "a" * 129, "room": "demo"})],
)  # fmt: skip
async def test_a_bad_token_request_is_refused(body: str) -> None:
    reply = await post(dev_config(), "/demo/token", body)
    assert reply.status_code == 400 and b"identity" in reply.content


async def test_without_its_bundle_the_page_says_how_to_build_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(demo, "PAGE_DIR", tmp_path)
    reply = await get(dev_config(), "/demo/bundle.js")
    assert reply.status_code == 200 and b"npm" in reply.content and b"pip install -e ." in reply.content
