"""Fixtures that run the real raysfu server and connect the real LiveKit SDKs to it.

The SDKs' WebRTC engine ignores loopback for ICE, so these tests run inside the private network namespace
that `bash scripts/test` creates (scripts/netns-run): the server gathers ICE candidates on 10.213.0.1.
"""

import asyncio
import contextlib
import os
import re
import secrets
import socket
import subprocess
from collections.abc import AsyncIterator, Generator, Iterator, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from livekit import api as lkapi
from livekit import rtc
from playwright.async_api import Browser, Page

from bench.server import ICE_ADDRESS, Server, ServerError, can_bind, dev_server, stop
from tests.interop.browser import launch_chromium, serve_page
from tests.interop.media import MediaSession
from tests.interop.sdk import Connect, MintToken

PORT = 7880
DASHBOARD_PORT = 8265
READY_TIMEOUT = 60.0
STOP_TIMEOUT = 20.0

SERVER_KEY = pytest.StashKey[Server]()
# The media tests compare the payloads in and out of the media workers (tests/interop/media.py).
DIGESTS = ("--payload-digests", "5000")


def _ice_address() -> str:
    address = os.environ.get("RAYSFU_TEST_ICE_ADDRESS", ICE_ADDRESS)
    if not can_bind(address, 0, socket.SOCK_DGRAM):
        pytest.fail(
            f"the test ICE address {address} is not an address of this machine. The SDKs' WebRTC engine "
            "ignores loopback, so the interop tests run inside a private network namespace that has "
            f"{ICE_ADDRESS}: run them with `bash scripts/test` as root (or wrap pytest in "
            "`bash scripts/netns-run`). On your own network, RAYSFU_TEST_ICE_ADDRESS=<a non-loopback "
            "address of this machine> runs them without it.",
            pytrace=False,
        )
    return address


@contextlib.contextmanager
def _failing_on_server_error() -> Iterator[None]:
    """bench.server's ServerError (the server did not start or stop as it should) as a test failure."""
    try:
        yield
    except ServerError as e:
        pytest.fail(str(e), pytrace=False)


@contextlib.contextmanager
def running_server(
    port: int, dashboard_port: int, log_dir: Path, extra_args: Sequence[str] = ()
) -> Iterator[tuple[Server, "subprocess.Popen[bytes]"]]:
    """`raysfu serve --dev` as a subprocess (bench.server.dev_server), ready (GET /healthz == 200 "ok");
    stopped with SIGTERM, and it must exit with 0 within STOP_TIMEOUT."""
    ice_address = _ice_address()
    with (
        _failing_on_server_error(),
        dev_server(
            port, dashboard_port, ice_address, log_dir, [*DIGESTS, *extra_args],
            ready_timeout=READY_TIMEOUT, stop_timeout=STOP_TIMEOUT, check_exit=True,
        ) as (srv, process),
    ):  # fmt: skip
        yield srv, process


@pytest.fixture(scope="session")
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The server every interop test shares."""
    with running_server(PORT, DASHBOARD_PORT, tmp_path_factory.mktemp("server")) as (srv, _):
        request.config.stash[SERVER_KEY] = srv
        yield srv


def stop_server(process: "subprocess.Popen[bytes]", srv: Server) -> None:
    """SIGTERM; the server must exit with 0 within STOP_TIMEOUT."""
    with _failing_on_server_error():
        stop(process, srv, STOP_TIMEOUT)


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
        single_peer_connection: bool | None = None,
        dynacast: bool = False,
        **grants: Any,
    ) -> rtc.Room:
        jwt = token(identity, room, name=name, metadata=metadata, attributes=attributes, **grants)
        client = rtc.Room()
        rooms.append(client)
        options = rtc.RoomOptions(auto_subscribe=auto_subscribe, dynacast=dynacast)
        options.single_peer_connection = single_peer_connection
        await client.connect(server.url, jwt, options)
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
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """A plain HTTP/WebSocket client, for requests no SDK would make."""
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def media() -> AsyncIterator[MediaSession]:
    """Media publishers and receivers started by a test, stopped at its end."""
    session = MediaSession()
    yield session
    await session.close()


@contextlib.asynccontextmanager
async def own_server(port: int, dashboard_port: int, log_dir: Path, *args: str) -> AsyncIterator[Server]:
    """A server of this test's own (started and stopped off the event loop)."""
    stack = contextlib.ExitStack()
    srv, _ = await asyncio.to_thread(
        stack.enter_context, running_server(port, dashboard_port, log_dir, extra_args=list(args))
    )
    try:
        yield srv
    finally:
        await asyncio.to_thread(stack.close)


async def join(
    srv: Server, identity: str, room: str, rooms: list[rtc.Room], options: rtc.RoomOptions | None = None
) -> rtc.Room:
    """A Python SDK client of `identity` connected to `srv` (a server of the test's own), added to `rooms`."""
    jwt = (
        lkapi.AccessToken(srv.api_key, srv.api_secret)
        .with_identity(identity)
        .with_grants(lkapi.VideoGrants(room_join=True, room=room))
        .to_jwt()
    )
    client = rtc.Room()
    rooms.append(client)
    await client.connect(srv.url, jwt, options or rtc.RoomOptions())
    return client
