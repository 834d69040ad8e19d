"""Headless Chromium running livekit-client (tests/browser/page), for browser interop tests.

The pieces of a browser test's fixtures: serve the page, launch Debian's Chromium with fake media devices,
and wait for an entry of the page's window.__log.
"""

import contextlib
import functools
import json
import threading
from collections.abc import AsyncIterator, Iterator, Sequence
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from playwright.async_api import Browser, Page, async_playwright
from playwright.async_api import TimeoutError as PlaywrightTimeoutError

from bench.server import Server

PAGE_DIR = Path(__file__).parents[1] / "browser" / "page"
CHROMIUM = "/usr/bin/chromium"  # Debian's; never `playwright install`
CHROMIUM_ARGS = [
    "--use-fake-device-for-media-stream",  # a synthetic camera and a beeping microphone
    "--use-fake-ui-for-media-stream",  # without it Chromium gathers no local ICE candidates
    "--disable-features=WebRtcHideLocalIpsWithMdns",  # real addresses, not .local names
    "--autoplay-policy=no-user-gesture-required",  # attached <video> elements play without a click
]


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def serve_page() -> Iterator[str]:
    """tests/browser/page served on 127.0.0.1 (a secure origin for getUserMedia); yields the page's URL."""
    if not (PAGE_DIR / "bundle.js").exists():
        pytest.fail(f"{PAGE_DIR}/bundle.js is missing: `bash scripts/test` builds it", pytrace=False)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(PAGE_DIR)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_port}/index.html"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


@contextlib.asynccontextmanager
async def launch_chromium(extra_args: Sequence[str] = ()) -> AsyncIterator[Browser]:
    """Chromium with CHROMIUM_ARGS and `extra_args` (e.g. --use-file-for-fake-audio-capture=FILE.wav)."""
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=[*CHROMIUM_ARGS, *extra_args]
        )
        try:
            yield chromium
        finally:
            await chromium.close()


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


async def browser_condition(page: Page, expression: str, what: str, timeout: float = 20.0) -> Any:  # noqa: ASYNC109
    """The value of the JavaScript `expression` once truthy; AssertionError (with the log) on timeout."""
    try:
        handle = await page.wait_for_function(expression, timeout=timeout * 1000)
    except PlaywrightTimeoutError:
        state = await page.evaluate("({log: window.__log, video: window.__video})")
        raise AssertionError(
            f"the browser never got {what} in {timeout} s; state: {json.dumps(state)}"
        ) from None
    return await handle.json_value()


async def decoded_video(page: Page, sid: str, frames: int, what: str) -> dict[str, Any]:
    """window.__video[sid] once the browser decoded `frames` frames of that track (`what`, for the error)."""
    expression = (
        f"(() => {{ const v = window.__video['{sid}']; return v && v.framesDecoded >= {frames} && v; }})()"
    )
    state: dict[str, Any] = await browser_condition(page, expression, what)
    return state


async def open_room(
    page: Page, page_url: str, server: Server, jwt: str, publish: bool, **options: str
) -> None:
    """Load the page into the room `jwt` is for (publishing with `publish`; `options`: more of the page's
    query, e.g. dynacast="1"), and wait until it is connected."""
    query = {"url": server.url, "token": jwt, **({"publish": "1"} if publish else {}), **options}
    await page.goto(f"{page_url}?{urlencode(query)}")
    joined = await browser_event(page, "e => e.ev === 'connected' || e.ev === 'connectFailed'")
    assert joined["ev"] == "connected", joined


async def publish_from_page(
    page: Page, page_url: str, server: Server, jwt: str, **options: str
) -> dict[str, Any]:
    """`open_room` publishing the page's camera and microphone, and wait until they are published: the
    page's `published` event (its `tracks`)."""
    await open_room(page, page_url, server, jwt, publish=True, **options)
    published: dict[str, Any] = await browser_event(
        page, "e => e.ev === 'published' || e.ev === 'publishFailed'"
    )
    assert published["ev"] == "published", published
    return published


def remote_publication(identity: str, track_sid: str) -> str:
    """A page expression: the RemoteTrackPublication of `identity`'s track `track_sid` (livekit-client)."""
    return f"window.__room.remoteParticipants.get('{identity}').trackPublications.get('{track_sid}')"
