"""Dynacast: raysfu tells a simulcast publisher which layers its subscribers need (SubscribedQualityUpdate),
and livekit-client in Chromium, publishing with `dynacast: true`, stops sending the others.

The browser publishes Chromium's fake camera at 720p in three layers (q, h, f); the Python SDK subscribes.
What the publisher sends is read on both sides: the page's encodings (active or not) and outbound-rtp bytes
per layer, and the packets the server receives per layer (media_stats).
"""

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from livekit import rtc
from playwright.async_api import Page

from tests.interop.browser import browser_event, open_room, publish_from_page, remote_publication
from tests.interop.conftest import DASHBOARD_PORT, join, own_server
from tests.interop.media import MediaSession, media_stats, worker_of
from tests.interop.sdk import Connect, MintToken, Server, wait_for

pytestmark = pytest.mark.timeout(150)

PAUSE_DELAY = 5.0  # LiveKit's dynacast_pause_delay: a layer nobody needs stops this long after
QUIET = 2.0  # seconds watched for a stopped layer's packets


async def wait_active(page: Page, expected: str, timeout: float) -> dict[str, Any]:  # noqa: ASYNC109
    """The camera's layers once exactly `expected` (comma-separated rids) are active."""
    deadline = time.monotonic() + timeout
    while True:
        layers: dict[str, Any] = await page.evaluate("window.__publishedVideo()")
        active = sorted(rid for rid, layer in layers.items() if layer["active"])
        if active == sorted(filter(None, expected.split(","))):
            return layers
        if time.monotonic() > deadline:
            raise AssertionError(f"the browser's active layers stayed {active}, not {expected}: {layers}")
        await asyncio.sleep(0.25)


async def layer_packets(track_sid: str, dashboard_port: int = DASHBOARD_PORT) -> dict[str, int]:
    """Packets the server received so far per layer of the track, on its publisher's worker."""
    stats = await media_stats(dashboard_port)
    for worker in stats.values():
        track = worker.get("tracks", {}).get(track_sid)
        if track is not None and track["relayed_from"] is None:
            return {rid: int(layer["packets"]) for rid, layer in track["layers"].items()}
    raise AssertionError(f"no worker publishes {track_sid}: {list(stats)}")


async def receiving(track_sid: str, seconds: float = QUIET, dashboard_port: int = DASHBOARD_PORT) -> set[str]:
    """The layers whose packets reach the server in the next `seconds`."""
    before = await layer_packets(track_sid, dashboard_port)
    await asyncio.sleep(seconds)
    after = await layer_packets(track_sid, dashboard_port)
    return {rid for rid, n in after.items() if n > before.get(rid, 0)}


async def publish_camera(page: Page, page_url: str, server: Server, jwt: str) -> str:
    published = await publish_from_page(page, page_url, server, jwt, dynacast="1")
    video = [t["sid"] for t in published["tracks"] if t["kind"] == "video"]
    assert len(video) == 1, published
    layers = await page.evaluate("window.__publishedVideo()")
    assert sorted(layers) == ["f", "h", "q"], f"the camera is not published in three layers: {layers}"
    sid: str = video[0]
    return sid


async def test_a_layer_nobody_needs_stops_and_comes_back_when_wanted(
    page: Page,
    page_url: str,
    server: Server,
    token: MintToken,
    connect: Connect,
    media: MediaSession,
    room_name: str,
) -> None:
    sid = await publish_camera(page, page_url, server, token("browser", room_name))
    bob = await connect("bob", room_name)
    rx = media.receive(bob)
    await rx.wait_frames(10, 20.0, identity="browser")
    await wait_for(
        lambda: sid in bob.remote_participants["browser"].track_publications, 5.0, "the publication"
    )
    publication = bob.remote_participants["browser"].track_publications[sid]
    await wait_active(page, "q,h,f", 5.0)

    asked_low = time.monotonic()
    publication.set_video_quality(rtc.VideoQuality.VIDEO_QUALITY_LOW)
    await asyncio.sleep(PAUSE_DELAY - 1.0)
    await wait_active(page, "q,h,f", 0.0)  # a downgrade waits for the pause delay
    await wait_active(page, "q", 5.0)
    assert time.monotonic() - asked_low >= PAUSE_DELAY - 0.5
    sent = await page.evaluate("window.__publishedVideo()")
    await asyncio.sleep(1.0)  # what was on its way
    assert await receiving(sid) == {"q"}
    layers = await page.evaluate("window.__publishedVideo()")
    assert layers["f"]["bytesSent"] - sent["f"]["bytesSent"] < 5_000, (
        sent,
        layers,
    )  # the last frames in flight at most

    publication.set_video_quality(rtc.VideoQuality.VIDEO_QUALITY_HIGH)
    await wait_active(page, "q,h,f", 2.0)  # an upgrade goes out at once
    assert "f" in await receiving(sid, 3.0)


async def test_a_track_nobody_subscribes_to_stops_until_somebody_does(
    page: Page,
    page_url: str,
    server: Server,
    token: MintToken,
    connect: Connect,
    media: MediaSession,
    room_name: str,
) -> None:
    """LiveKit tells the publisher 10 s after the track started in any case: with no subscriber, no layer."""
    sid = await publish_camera(page, page_url, server, token("browser", room_name))
    await wait_active(page, "", 15.0)
    await asyncio.sleep(1.0)
    assert await receiving(sid) == set()

    bob = await connect("bob", room_name)
    rx = media.receive(bob)
    await wait_active(page, "q,h,f", 5.0)
    await rx.wait_frames(10, 20.0, identity="browser")


async def test_python_publisher_stops_the_layers_nobody_needs(
    connect: Connect, media: MediaSession, room_name: str
) -> None:
    alice = await connect("alice", room_name, dynacast=True)
    bob = await connect("bob", room_name)
    rx = media.receive(bob)
    pub = await media.publish(alice, width=1280, height=720, fps=20, simulcast=True, audio=False)
    assert pub.video_publication is not None
    sid = pub.video_publication.sid
    await rx.wait_frames(10, 20.0, identity="alice")
    await wait_for(lambda: sid in bob.remote_participants["alice"].track_publications, 5.0, "the publication")
    publication = bob.remote_participants["alice"].track_publications[sid]
    assert await receiving(sid) == {"q", "h", "f"}

    publication.set_video_quality(rtc.VideoQuality.VIDEO_QUALITY_LOW)
    await asyncio.sleep(PAUSE_DELAY + 1.0)
    assert await receiving(sid) == {"q"}
    publication.set_video_quality(rtc.VideoQuality.VIDEO_QUALITY_HIGH)
    await asyncio.sleep(1.0)
    assert await receiving(sid) == {"q", "h", "f"}


async def test_a_disabled_subscription_needs_no_layer(
    page: Page,
    page_url: str,
    server: Server,
    token: MintToken,
    connect: Connect,
    media: MediaSession,
    room_name: str,
) -> None:
    """The browser, the only subscriber, disables the Python publisher's video: no layer is needed."""
    await open_room(page, page_url, server, token("browser", room_name), publish=False)
    alice = await connect("alice", room_name, dynacast=True)
    pub = await media.publish(alice, width=1280, height=720, fps=20, simulcast=True, audio=False)
    assert pub.video_publication is not None
    sid = pub.video_publication.sid
    await browser_event(page, f"e => e.ev === 'videoDecoded' && e.sid === '{sid}'")
    publication = remote_publication("alice", sid)

    await page.evaluate(f"{publication}.setEnabled(false)")
    await asyncio.sleep(PAUSE_DELAY + 1.0)
    assert await receiving(sid) == set()
    await page.evaluate(f"{publication}.setEnabled(true)")
    await asyncio.sleep(1.0)
    assert await receiving(sid) == {"q", "h", "f"}


async def test_a_subscriber_on_another_worker_is_counted(
    media: MediaSession, room_name: str, tmp_path: Path
) -> None:
    """bob on one worker, alice publishing on the other: bob's subscription reaches the forwarder on
    alice's worker across workers, and the relayed copy knows the layers' sizes."""
    dashboard_port = 8268
    async with own_server(
        7893, dashboard_port, tmp_path, "--participants-per-worker", "1", "--workers", "2"
    ) as srv:
        rooms: list[rtc.Room] = []
        try:
            bob = await join(srv, "bob", room_name, rooms)
            alice = await join(srv, "alice", room_name, rooms, rtc.RoomOptions(dynacast=True))
            rx = media.receive(bob)
            pub = await media.publish(alice, width=1280, height=720, fps=20, simulcast=True, audio=False)
            assert pub.video_publication is not None
            sid = pub.video_publication.sid
            await rx.wait_frames(10, 20.0, identity="alice")
            stats = await media_stats(dashboard_port)
            assert worker_of(stats, alice.local_participant.sid) != worker_of(
                stats, bob.local_participant.sid
            )
            publication = bob.remote_participants["alice"].track_publications[sid]
            assert await receiving(sid, dashboard_port=dashboard_port) == {"q", "h", "f"}

            asked = time.monotonic()
            publication.set_video_quality(rtc.VideoQuality.VIDEO_QUALITY_MEDIUM)
            # bob's worker forwards the medium layer of its copy, and alice stops sending the high one
            await rx.wait_frames(5, 10.0, identity="alice", since=asked, where=lambda s: s.width == 640)
            await asyncio.sleep(max(0.0, asked + PAUSE_DELAY + 1.0 - time.monotonic()))
            assert await receiving(sid, dashboard_port=dashboard_port) == {"q", "h"}
        finally:
            await media.close()
            for room in rooms:
                if room.isconnected():
                    await room.disconnect()
