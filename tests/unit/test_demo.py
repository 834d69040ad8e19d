"""The demo page's routes (gateway/demo.py): the page, and dev tokens only from a `--dev` server."""

import json
from pathlib import Path

import pytest
from starlette.applications import Starlette

from gateway import demo
from gateway.auth import verify_token
from gateway.config import ServerConfig, dev_config
from tests.unit.test_twirp import Client


def client(config: ServerConfig) -> Client:
    return Client(Starlette(routes=demo.routes(config)))


def test_the_page_is_served_at_the_root() -> None:
    reply = client(dev_config()).get("/")
    assert reply.status_code == 200 and b'src="demo/bundle.js"' in reply.content


def test_a_dev_server_mints_a_join_token_for_the_room() -> None:
    config = dev_config()
    reply = client(config).post("/demo/token", json.dumps({"identity": "alice", "room": "demo"}))
    assert reply.status_code == 200
    claims = verify_token(reply.json()["token"], config.api_keys)
    assert (claims.identity, claims.name, claims.video.room, claims.video.room_join) == (
        "alice",
        "alice",
        "demo",
        True,
    )


def test_a_server_without_dev_mints_no_token() -> None:
    config = ServerConfig(api_keys={"prodkey": "a-long-secret-a-long-secret-a-long-secret"})
    reply = client(config).post("/demo/token", json.dumps({"identity": "alice", "room": "demo"}))
    assert reply.status_code == 404 and b"--dev" in reply.content


@pytest.mark.parametrize(
    "body",
    ["", "not json", "[]", '{"identity": "alice"}', '{"identity": "", "room": "demo"}',
     '{"identity": 7, "room": "demo"}', json.dumps({"identity": "a" * 129, "room": "demo"})],
)  # fmt: skip
def test_a_bad_token_request_is_refused(body: str) -> None:
    reply = client(dev_config()).post("/demo/token", body)
    assert reply.status_code == 400 and b"identity" in reply.content


def test_without_its_bundle_the_page_says_how_to_build_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(demo, "PAGE_DIR", tmp_path)
    reply = client(dev_config()).get("/demo/bundle.js")
    assert reply.status_code == 200 and b"npm" in reply.content and b"pip install -e ." in reply.content
