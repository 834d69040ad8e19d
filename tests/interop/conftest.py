"""Fixtures that run the real raysfu server and connect the real LiveKit SDKs to it.

The SDKs' WebRTC engine ignores loopback for ICE, so these tests run inside the private network namespace
that `bash scripts/test` creates (scripts/netns-run): the server gathers ICE candidates on 10.213.0.1.
"""

import contextlib
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Generator, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from livekit import api as lkapi
from livekit import rtc
from playwright.async_api import Browser, Page

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


def _can_bind(address: str, port: int, kind: socket.SocketKind = socket.SOCK_STREAM) -> bool:
    with socket.socket(socket.AF_INET, kind) as sock:
        try:
            sock.bind((address, port))
        except OSError:
            return False
        return True


def _ice_address() -> str:
    address = os.environ.get("RAYSFU_TEST_ICE_ADDRESS", NETNS_ICE_ADDRESS)
    if not _can_bind(address, 0, socket.SOCK_DGRAM):
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
    if not _can_bind("127.0.0.1", port):
        pytest.fail(f"port {port} is taken: is another raysfu server running?", pytrace=False)


def _healthy(http_url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{http_url}/healthz", timeout=2) as response:
            return bool(response.status == 200 and response.read().strip() == b"ok")
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


@contextlib.contextmanager
def running_server(
    port: int, dashboard_port: int, log_dir: Path, extra_args: Sequence[str] = ()
) -> Iterator[tuple[Server, "subprocess.Popen[bytes]"]]:
    """`raysfu serve --dev` as a subprocess, ready (GET /healthz == 200 "ok"); stopped with SIGTERM."""
    ice_address = _ice_address()
    _require_free_port(port)
    raysfu = Path(sys.executable).with_name("raysfu")
    if not raysfu.exists():
        pytest.fail(f"{raysfu} not found: install the project with `pip install -e '.[test]'`", pytrace=False)
    srv = Server(
        url=f"ws://127.0.0.1:{port}",
        http_url=f"http://127.0.0.1:{port}",
        api_key=API_KEY,
        api_secret=API_SECRET,
        log_path=log_dir / "raysfu.log",
    )
    command = [
        str(raysfu), "serve", "--dev", "--ice-address", ice_address,
        "--port", str(port), "--dashboard-port", str(dashboard_port), *extra_args,
    ]  # fmt: skip
    with srv.log_path.open("wb") as log:
        process = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            start_new_session=True,  # Ctrl-C reaches pytest only; the teardown stops the server
        )
    try:
        deadline = time.monotonic() + READY_TIMEOUT
        while not _healthy(srv.http_url):
            if process.poll() is not None:
                pytest.fail(
                    f"{' '.join(command)} exited with code {process.returncode} before it was ready; "
                    f"its log ({srv.log_path}) ends:\n{srv.log_tail()}",
                    pytrace=False,
                )
            if time.monotonic() > deadline:
                pytest.fail(
                    f"{srv.http_url}/healthz did not answer 200 'ok' within {READY_TIMEOUT:.0f} s; "
                    f"the server log ({srv.log_path}) ends:\n{srv.log_tail()}",
                    pytrace=False,
                )
            time.sleep(0.2)
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
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            pytest.fail(
                f"the server did not exit within {STOP_TIMEOUT:.0f} s of SIGTERM (killed); its log ends:\n"
                f"{srv.log_tail()}",
                pytrace=False,
            )
    if process.returncode != 0:
        pytest.fail(
            f"the server exited with code {process.returncode} after SIGTERM; its log ends:\n"
            f"{srv.log_tail()}",
            pytrace=False,
        )


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
