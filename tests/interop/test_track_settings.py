"""A subscriber's track settings (UpdateTrackSettings), from livekit-client in Chromium: `setEnabled(false)`
stops the track's bytes and `setEnabled(true)` resumes it on a keyframe; `setVideoDimensions` picks the
simulcast layer by LiveKit's rule (the smallest layer at least 0.9 x the height asked for).

The Python SDK publishes the test pattern (tests/interop/media.py), 1280x720 in three layers.
"""

import asyncio
from typing import Any

import pytest
from playwright.async_api import Page

from tests.interop.browser import browser_condition, browser_event, open_room, remote_publication
from tests.interop.conftest import DASHBOARD_PORT
from tests.interop.media import MediaSession, egress_packets, media_stats
from tests.interop.sdk import Connect, MintToken, Server

pytestmark = pytest.mark.timeout(120)

QUIET = 2.0  # seconds watched for nothing arriving
GRACE = 1.0  # for packets on their way, and the settings' 100 ms debounce


def video_state(sid: str) -> str:
    """The page's decoding counters of video track `sid` (window.__video)."""
    return f"window.__video['{sid}']"


async def decoded(page: Page, sid: str) -> dict[str, Any]:
    state: dict[str, Any] = await page.evaluate(video_state(sid))
    return state


async def browser_receives(page: Page, sid: str, frames: int, what: str, since: int = 0) -> dict[str, Any]:
    enough = f"v.framesDecoded >= {since + frames}"
    state: dict[str, Any] = await browser_condition(
        page, f"(() => {{ const v = {video_state(sid)}; return v && {enough} && v; }})()", what
    )
    return state


async def test_disabled_track_stops_and_resumes_on_a_keyframe(
    page: Page,
    page_url: str,
    server: Server,
    token: MintToken,
    connect: Connect,
    media: MediaSession,
    room_name: str,
) -> None:
    await open_room(page, page_url, server, token("browser", room_name), publish=False)
    browser_sid = (await browser_event(page, "e => e.ev === 'connected'"))["sid"]
    alice = await connect("alice", room_name)
    pub = await media.publish(alice, audio=False)
    assert pub.video_publication is not None
    sid = pub.video_publication.sid
    await browser_receives(page, sid, 20, "20 decoded frames of alice's video")

    await page.evaluate(f"{remote_publication('alice', sid)}.setEnabled(false)")
    await asyncio.sleep(GRACE)
    before, stats_before = await decoded(page, sid), await media_stats(DASHBOARD_PORT)
    await asyncio.sleep(QUIET)
    after, stats_after = await decoded(page, sid), await media_stats(DASHBOARD_PORT)
    sent = egress_packets(stats_after, sid, browser_sid) - egress_packets(stats_before, sid, browser_sid)
    assert sent == 0, f"{sent} packets sent to the browser in {QUIET} s while it disabled the track"
    assert after["bytesReceived"] == before["bytesReceived"], (before, after)
    assert after["framesDecoded"] == before["framesDecoded"], (before, after)

    await page.evaluate(f"{remote_publication('alice', sid)}.setEnabled(true)")
    resumed = await browser_receives(
        page, sid, 10, "10 decoded frames after enabling the track again", since=after["framesDecoded"]
    )
    assert resumed["keyFramesDecoded"] > after["keyFramesDecoded"], (after, resumed)


async def test_video_dimensions_choose_the_simulcast_layer(
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
    pub = await media.publish(alice, width=1280, height=720, fps=20, simulcast=True, audio=False)
    assert pub.video_publication is not None
    sid = pub.video_publication.sid
    await browser_receives(page, sid, 10, "10 decoded frames of alice's video")
    # (asked for, decoded height): 225 x 0.9 = 202.5 takes the 360 layer, not the 180 one below the size
    for width, height, layer in ((400, 225, 360), (1280, 720, 720), (320, 180, 180), (640, 340, 360)):
        await page.evaluate(
            f"{remote_publication('alice', sid)}.setVideoDimensions({{width: {width}, height: {height}}})"
        )
        await browser_condition(
            page,
            f"(() => {{ const v = {video_state(sid)}; return v && v.height === {layer} && v; }})()",
            f"alice's video at height {layer} after asking for {width}x{height}",
        )


async def test_settings_sent_before_the_subscription_is_bound_apply_to_it(
    page: Page,
    page_url: str,
    server: Server,
    token: MintToken,
    connect: Connect,
    media: MediaSession,
    room_name: str,
) -> None:
    """The browser subscribes and disables the track at once: the settings reach the server before the
    subscription exists, and apply when it does (as LiveKit keeps them)."""
    alice = await connect("alice", room_name)
    pub = await media.publish(alice, audio=False)
    assert pub.video_publication is not None
    sid = pub.video_publication.sid
    await open_room(page, page_url, server, token("browser", room_name), publish=False, autoSubscribe="0")
    browser_sid = (await browser_event(page, "e => e.ev === 'connected'"))["sid"]
    await browser_condition(
        page, f"{remote_publication('alice', sid)} !== undefined", "alice's video publication"
    )

    at_once = "p.setSubscribed(true); p.setEnabled(false);"
    await page.evaluate(f"(() => {{ const p = {remote_publication('alice', sid)}; {at_once} }})()")
    await browser_event(page, f"e => e.ev === 'trackSubscribed' && e.sid === '{sid}'")
    await asyncio.sleep(GRACE + QUIET)
    stats = await media_stats(DASHBOARD_PORT)
    assert egress_packets(stats, sid, browser_sid) == 0, "the disabled subscription was sent media"
    state = await decoded(page, sid)
    assert state["framesDecoded"] == 0, state

    await page.evaluate(f"{remote_publication('alice', sid)}.setEnabled(true)")
    await browser_receives(page, sid, 10, "10 decoded frames after enabling the track")


async def test_adaptive_stream_follows_the_video_elements_size_and_visibility(
    page: Page,
    page_url: str,
    server: Server,
    token: MintToken,
    connect: Connect,
    media: MediaSession,
    room_name: str,
) -> None:
    """livekit-client's adaptiveStream asks for the size of the <video> element showing the track, and
    disables the track while no element shows it."""
    await open_room(page, page_url, server, token("browser", room_name), publish=False, adaptiveStream="1")
    browser_sid = (await browser_event(page, "e => e.ev === 'connected'"))["sid"]
    alice = await connect("alice", room_name)
    pub = await media.publish(alice, width=1280, height=720, fps=20, simulcast=True, audio=False)
    assert pub.video_publication is not None
    sid = pub.video_publication.sid
    await browser_receives(page, sid, 10, "10 decoded frames of alice's video")
    for width, height, layer in ((1280, 720, 720), (160, 90, 180), (400, 225, 360)):
        await page.evaluate(
            f"document.querySelectorAll('video').forEach((v) => {{ v.style.width = '{width}px';"
            f" v.style.height = '{height}px'; }})"
        )
        await browser_condition(
            page,
            f"(() => {{ const v = {video_state(sid)}; return v && v.height === {layer} && v; }})()",
            f"alice's video at height {layer} in a {width}x{height} element",
        )

    await page.evaluate("document.querySelectorAll('video').forEach((v) => { v.style.display = 'none'; })")
    await wait_for_paused(browser_sid, sid, True)
    await page.evaluate("document.querySelectorAll('video').forEach((v) => { v.style.display = ''; })")
    await wait_for_paused(browser_sid, sid, False)
    before = await decoded(page, sid)
    await browser_receives(page, sid, 10, "10 decoded frames once shown again", since=before["framesDecoded"])


async def wait_for_paused(subscriber_sid: str, track_sid: str, paused: bool) -> None:
    """Until the server's down track of the subscription is (or is not) paused."""
    for _ in range(20):
        stats = await media_stats(DASHBOARD_PORT)
        downs = [
            t["subscribers"].get(subscriber_sid)
            for w in stats.values()
            for t in [w["tracks"].get(track_sid)]
            if t
        ]
        if any(d is not None and d["paused"] == paused for d in downs):
            return
        await asyncio.sleep(0.5)
    raise AssertionError(
        f"the subscription of {track_sid} is not {'paused' if paused else 'resumed'}: {downs}"
    )
