"""The browser SDK (livekit-client in headless Chromium) against raysfu, beside a Python SDK client."""

from urllib.parse import urlencode

from playwright.async_api import Page

from tests.interop.browser import browser_event
from tests.interop.sdk import Connect, MintToken, Server


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
