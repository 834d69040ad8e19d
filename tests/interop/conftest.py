"""Fixtures that run the real raysfu server and connect the real LiveKit SDKs to it.

The SDKs' WebRTC engine ignores loopback for ICE, so these tests run inside the private network namespace
that `bash scripts/test` creates (scripts/netns-run): the server gathers ICE candidates on 10.213.0.1.
"""

import contextlib
import os
import re
import secrets
import socket
import subprocess
from collections.abc import AsyncIterator, Generator, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from livekit import api as lkapi
from livekit import rtc
from playwright.async_api import Browser, Page

from bench.server import can_bind, start_dev_server, stop_dev_server, wait_healthy
from tests.interop.browser import launch_chromium, serve_page
from tests.interop.media import MediaSession
from tests.interop.sdk import Connect, MintToken, Server

PORT = 7880
DASHBOARD_PORT = 8265
API_KEY, API_SECRET = "devkey", "secret"  # what `raysfu serve --dev` accepts
NETNS_ICE_ADDRESS = "10.213.0.1"  # rsfu0, set up by scripts/netns-run
READY_TIMEOUT = 60.0
STOP_TIMEOUT = 20.0

SERVER_KEY = pytest.StashKey[Server]()


def _ice_address() -> str:
    address = os.environ.get("RAYSFU_TEST_ICE_ADDRESS", NETNS_ICE_ADDRESS)
    if not can_bind(address, 0, socket.SOCK_DGRAM):
        pytest.fail(
            f"the test ICE address {address} is not an address of this machine. The SDKs' WebRTC engine "
            "ignores loopback, so the interop tests run inside a private network namespace that has "
            f"{NETNS_ICE_ADDRESS}: run them with `bash scripts/test` as root (or wrap pytest in "
            "`bash scripts/netns-run`). On your own network, RAYSFU_TEST_ICE_ADDRESS=<a non-loopback "
            "address of this machine> runs them without it.",
            pytrace=False,
        )
    return address


def _require_free_port(port: int) -> None:
    if not can_bind("127.0.0.1", port):
        pytest.fail(f"port {port} is taken: is another raysfu server running?", pytrace=False)


@contextlib.contextmanager
def running_server(
    port: int, dashboard_port: int, log_dir: Path, extra_args: Sequence[str] = ()
) -> Iterator[tuple[Server, "subprocess.Popen[bytes]"]]:
    """`raysfu serve --dev` as a subprocess, ready (GET /healthz == 200 "ok"); stopped with SIGTERM."""
    ice_address = _ice_address()
    _require_free_port(port)
    srv = Server(
        url=f"ws://127.0.0.1:{port}",
        http_url=f"http://127.0.0.1:{port}",
        api_key=API_KEY,
        api_secret=API_SECRET,
        log_path=log_dir / "raysfu.log",
    )
    try:
        process = start_dev_server(port, dashboard_port, ice_address, srv.log_path, extra_args)
    except FileNotFoundError as e:
        pytest.fail(str(e), pytrace=False)
    try:
        failure = wait_healthy(process, srv.http_url, READY_TIMEOUT)
        if failure:
            pytest.fail(f"{failure}; its log ({srv.log_path}) ends:\n{srv.log_tail()}", pytrace=False)
        yield srv, process
    finally:
        stop_server(process, srv)


@pytest.fixture(scope="session")
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The server every interop test shares."""
    with running_server(PORT, DASHBOARD_PORT, tmp_path_factory.mktemp("server")) as (srv, _):
        request.config.stash[SERVER_KEY] = srv
        yield srv


def stop_server(process: "subprocess.Popen[bytes]", srv: Server) -> None:
    """SIGTERM; the server must exit with 0 within STOP_TIMEOUT."""
    failure = stop_dev_server(process, STOP_TIMEOUT)
    if failure:
        pytest.fail(f"{failure}; its log ends:\n{srv.log_tail()}", pytrace=False)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
    """A failed test that used the server gets the end of the server's log in its report."""
    report = yield
    srv = item.config.stash.get(SERVER_KEY, None)
    if report.failed and srv is not None and "server" in getattr(item, "fixturenames", ()):
        report.sections.append((f"raysfu server log, last lines ({srv.log_path})", srv.log_tail()))
    return report


@pytest.fixture
def room_name(request: pytest.FixtureRequest) -> str:
    """A room name unique to this test."""
    return f"{re.sub(r'[^A-Za-z0-9_-]+', '-', request.node.name)[:48]}-{secrets.token_hex(3)}"


@pytest.fixture
def token(server: Server) -> MintToken:
    def mint(
        identity: str,
        room: str,
        *,
        name: str | None = None,
        metadata: str | None = None,
        attributes: dict[str, str] | None = None,
        **grants: Any,
    ) -> str:
        access = (
            lkapi.AccessToken(server.api_key, server.api_secret)
            .with_identity(identity)
            .with_grants(lkapi.VideoGrants(room_join=True, room=room, **grants))
        )
        if name is not None:
            access = access.with_name(name)
        if metadata is not None:
            access = access.with_metadata(metadata)
        if attributes is not None:
            access = access.with_attributes(attributes)
        return access.to_jwt()

    return mint


@pytest.fixture
async def connect(server: Server, token: MintToken) -> AsyncIterator[Connect]:
    rooms: list[rtc.Room] = []

    async def join(
        identity: str,
        room: str,
        *,
        name: str | None = None,
        metadata: str | None = None,
        attributes: dict[str, str] | None = None,
        auto_subscribe: bool = True,
        **grants: Any,
    ) -> rtc.Room:
        jwt = token(identity, room, name=name, metadata=metadata, attributes=attributes, **grants)
        client = rtc.Room()
        rooms.append(client)
        await client.connect(server.url, jwt, rtc.RoomOptions(auto_subscribe=auto_subscribe))
        return client

    yield join
    for client in rooms:
        if client.isconnected():
            await client.disconnect()


@pytest.fixture(name="api")
async def api_client(server: Server) -> AsyncIterator[lkapi.LiveKitAPI]:
    """The server SDK (RoomService...) with the dev key."""
    client = lkapi.LiveKitAPI(server.http_url, server.api_key, server.api_secret)
    yield client
    await client.aclose()


@pytest.fixture(scope="module")
def page_url() -> Iterator[str]:
    """tests/browser/page served on 127.0.0.1, for the browser tests."""
    with serve_page() as url:
        yield url


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    """Debian's headless Chromium with fake media devices, one per test module."""
    async with launch_chromium() as chromium:
        yield chromium


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    context = await browser.new_context()
    yield await context.new_page()
    await context.close()


@pytest.fixture
async def media() -> AsyncIterator[MediaSession]:
    """Media publishers and receivers started by a test, stopped at its end."""
    session = MediaSession()
    yield session
    await session.close()
