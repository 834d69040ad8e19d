"""The browser SDK (livekit-client in headless Chromium) against raysfu, beside a Python SDK client."""

import functools
import json
import threading
from collections.abc import AsyncIterator, Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from playwright.async_api import Browser, Page, async_playwright
from playwright.async_api import TimeoutError as PlaywrightTimeoutError

from tests.interop.sdk import Connect, MintToken, Server

PAGE_DIR = Path(__file__).parents[1] / "browser" / "page"
CHROMIUM = "/usr/bin/chromium"  # Debian's; never `playwright install`
CHROMIUM_ARGS = [
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",  # without it Chromium gathers no local ICE candidates
    "--disable-features=WebRtcHideLocalIpsWithMdns",  # real addresses, not .local names
]


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def page_url() -> Iterator[str]:
    """tests/browser/page served on 127.0.0.1 (a secure origin for getUserMedia)."""
    if not (PAGE_DIR / "bundle.js").exists():
        pytest.fail(f"{PAGE_DIR}/bundle.js is missing: `bash scripts/test` builds it", pytrace=False)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(PAGE_DIR)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_port}/index.html"
    httpd.shutdown()
    httpd.server_close()
    thread.join()


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        yield chromium
        await chromium.close()


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    context = await browser.new_context()
    yield await context.new_page()
    await context.close()


async def browser_event(page: Page, predicate: str, timeout: float = 20.0) -> dict[str, Any]:  # noqa: ASYNC109
    """The first entry of the page's window.__log that the JavaScript `predicate` (entry => bool) accepts."""
    try:
        handle = await page.wait_for_function(
            f"window.__log && window.__log.find({predicate})", timeout=timeout * 1000
        )
    except PlaywrightTimeoutError:
        log = await page.evaluate("window.__log")
        raise AssertionError(
            f"the browser logged no {predicate} in {timeout} s; log: {json.dumps(log)}"
        ) from None
    entry: dict[str, Any] = await handle.json_value()
    return entry


async def test_browser_receives_data_from_python_client(
    page: Page, page_url: str, server: Server, token: MintToken, connect: Connect, room_name: str
) -> None:
    query = urlencode({"url": server.url, "token": token("browser", room_name)})
    await page.goto(f"{page_url}?{query}")
    joined = await browser_event(page, "e => e.ev === 'connected' || e.ev === 'connectFailed'")
    assert joined["ev"] == "connected", joined
    assert joined["identity"] == "browser"

    alice = await connect("alice", room_name)
    assert "browser" in alice.remote_participants
    await browser_event(page, "e => e.ev === 'participantConnected' && e.identity === 'alice'")

    await alice.local_participant.publish_data("hello from python", reliable=True, topic="chat")
    received = await browser_event(page, "e => e.ev === 'dataReceived'")
    assert (received["text"], received["topic"], received["from"]) == ("hello from python", "chat", "alice")

    await alice.disconnect()
    await browser_event(page, "e => e.ev === 'participantDisconnected' && e.identity === 'alice'")
