"""Media between the browser SDK (livekit-client in headless Chromium) and the Python SDK, through raysfu.

The browser publishes Chromium's fake camera and beeping microphone (?publish=1); the Python client publishes
the test pattern (tests/interop/media.py). Each side decodes the other's media.
"""

import asyncio

import pytest
from playwright.async_api import Page

from tests.interop.browser import browser_event, decoded_video, open_room, publish_from_page
from tests.interop.media import SILENCE_RMS, MediaSession
from tests.interop.sdk import Connect, MintToken, Server, wait_for

pytestmark = pytest.mark.timeout(90)


async def test_python_client_decodes_browser_camera_and_microphone(
    page: Page,
    page_url: str,
    server: Server,
    token: MintToken,
    connect: Connect,
    media: MediaSession,
    room_name: str,
) -> None:
    published = await publish_from_page(page, page_url, server, token("browser", room_name))
    assert sorted(t["kind"] for t in published["tracks"]) == ["audio", "video"], published

    alice = await connect("alice", room_name)
    rx = media.receive(alice)
    video = await rx.wait_frames(10, 20.0, identity="browser")
    assert all(width > 0 and height > 0 for width, height in video.sizes()), video.summary()
    await wait_for(
        lambda: len(rx.audios) == 1 and rx.audio("browser").loud_windows() >= 2,
        15.0,
        f"the browser's microphone beep (100 ms windows with RMS > {SILENCE_RMS})",
    )
    assert rx.audio("browser").max_rms() > SILENCE_RMS


async def test_browser_decodes_python_video(
    page: Page,
    page_url: str,
    server: Server,
    token: MintToken,
    connect: Connect,
    media: MediaSession,
    room_name: str,
) -> None:
    await open_room(page, page_url, server, token("browser", room_name), publish=False)
    alice = await connect("alice", room_name)
    pub = await media.publish(alice)
    assert pub.video_publication is not None and pub.audio_publication is not None
    video_sid = pub.video_publication.sid

    subscribed = await browser_event(
        page, f"e => e.ev === 'trackSubscribed' && e.kind === 'video' && e.sid === '{video_sid}'"
    )
    assert subscribed["identity"] == "alice", subscribed
    await browser_event(
        page,
        f"e => e.ev === 'trackSubscribed' && e.kind === 'audio' && e.sid === '{pub.audio_publication.sid}'",
    )
    decoded = await browser_event(page, f"e => e.ev === 'videoDecoded' && e.sid === '{video_sid}'")
    assert decoded["width"] > 0 and decoded["height"] > 0, decoded
    state = await decoded_video(page, video_sid, 20, "20 decoded frames of alice's video")
    assert (state["width"], state["height"]) == (pub.width, pub.height), state


@pytest.mark.parametrize(
    ("v0", "pc", "m_lines"), [("1", "subscriber", 1), ("0", "publisher", 3)], ids=["rtc", "rtc-v1"]
)
async def test_browser_decodes_a_republished_video_on_its_reused_m_line(
    page: Page,
    page_url: str,
    server: Server,
    token: MintToken,
    connect: Connect,
    media: MediaSession,
    room_name: str,
    v0: str,
    pc: str,
    m_lines: int,
) -> None:
    """The browser's subscriber m-line freed by alice's unpublished video carries her next one (on
    /rtc/v1: one of the 3 video m-lines its first offer had, and it asks for no more)."""
    await open_room(page, page_url, server, token("browser", room_name), publish=False, v0=v0)
    alice = await connect("alice", room_name)
    for round in range(3):
        pub = await media.publish(alice, audio=False)
        assert pub.video_publication is not None
        sid = pub.video_publication.sid
        await decoded_video(page, sid, 10, f"round {round}: 10 decoded frames of alice's video")
        await pub.stop()
        await alice.local_participant.unpublish_track(sid)
        await browser_event(page, f"e => e.ev === 'trackUnsubscribed' && e.sid === '{sid}'")
        await asyncio.sleep(2.0)  # the renegotiation that idles the browser's m-line
    sections = await page.evaluate(
        f"window.__room.engine.pcManager.{pc}.pc.localDescription.sdp.split('\\n')"
        ".filter(l => l.startsWith('m=video')).length"
    )
    assert sections == m_lines
