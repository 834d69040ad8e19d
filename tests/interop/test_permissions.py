"""Subscription permissions: a publisher's `set_track_subscription_permissions` is enforced by the server.

Who is not allowed gets no media and is told (SubscriptionPermissionUpdate); a permission taken away
unsubscribes, one given back subscribes again, live. Each message replaces the one before; whoever it does
not list is not allowed.

The Python SDK (livekit 1.2.1, its Rust core) ignores SubscriptionPermissionUpdate and does not notice a
track the server takes off its subscriber connection (it reports `track_unsubscribed` only for its own
unsubscriptions and unpublished tracks), so a raw signalling client reads the updates, and the SDK
clients show the effect on their media: none arrives while not allowed, and `track_subscribed` and the media
come back when allowed again. The browser SDK (livekit-client) reports the updates itself.
"""

import asyncio
from urllib.parse import urlencode

import aiohttp
from livekit import rtc
from livekit.protocol import rtc as signal
from playwright.async_api import Page

from tests.interop.browser import browser_condition, browser_event
from tests.interop.media import MediaReceiver, MediaSession, inbound_rtp, measure
from tests.interop.sdk import Connect, Events, MintToken, Server, wait_for
from tests.interop.test_bad_input import RawClient, raw_join

GRACE = 1.0  # for what was in flight when a subscription went


async def permission_updates(raw: RawClient, count: int) -> dict[str, signal.SubscriptionPermissionUpdate]:
    """The next `count` SubscriptionPermissionUpdates the raw client is sent, by track sid."""
    updates = [(await raw.next("subscription_permission_update")).subscription_permission_update
               for _ in range(count)]  # fmt: skip
    return {u.track_sid: u for u in updates}


async def packets_received(room: rtc.Room) -> int:
    return sum(row["packets"] for row in await inbound_rtp(room))


async def receiving(rx: MediaReceiver, identity: str, since: float) -> None:
    await rx.wait_frames(10, identity=identity, since=since)
    await rx.wait_tone(identity=identity, since=since)


async def test_permission_taken_away_and_given_back_live(
    connect: Connect,
    media: MediaSession,
    http: aiohttp.ClientSession,
    server: Server,
    token: MintToken,
    room_name: str,
) -> None:
    alice = await connect("alice", room_name)
    bob = await connect("bob", room_name)
    carol = await connect("carol", room_name)
    dave = await raw_join(http, server, token("dave", room_name))
    bob_rx, carol_rx = media.receive(bob), media.receive(carol)
    publisher = await media.publish(alice)
    assert publisher.video_publication is not None and publisher.audio_publication is not None
    tracks = {publisher.video_publication.sid, publisher.audio_publication.sid}
    await receiving(bob_rx, "alice", 0.0)
    await receiving(carol_rx, "alice", 0.0)
    carol_events = Events(carol, "track_subscribed")

    alice.local_participant.set_track_subscription_permissions(
        allow_all_participants=False,
        participant_permissions=[rtc.ParticipantTrackPermission(participant_identity="bob", allow_all=True)],
    )
    denied = await permission_updates(dave, 2)
    assert set(denied) == tracks
    assert all(not u.allowed and u.participant_sid == alice.local_participant.sid for u in denied.values())
    await asyncio.sleep(GRACE)
    before = await packets_received(carol)
    window = await measure(2.0)
    assert await packets_received(carol) == before, "carol's subscriber connection still receives media"
    assert carol_rx.video("alice").frames(window.start, window.end) == 0, carol_rx.report(window.start)
    assert carol_rx.audio("alice").loud_windows(window.start, window.end) == 0, carol_rx.report(window.start)
    assert bob_rx.video("alice").frames(window.start, window.end) >= 10, bob_rx.report(window.start)
    assert bob_rx.audio("alice").tone_windows(window.start, window.end) >= 5, bob_rx.report(window.start)
    assert carol_events.args("track_subscribed") == []

    alice.local_participant.set_track_subscription_permissions(allow_all_participants=True)
    allowed = await permission_updates(dave, 2)
    assert set(allowed) == tracks and all(u.allowed for u in allowed.values())
    await wait_for(
        lambda: {p.sid for _, p, _ in carol_events.args("track_subscribed")} == tracks,
        15.0,
        "carol's SDK sees both of alice's tracks subscribed again",
    )
    await receiving(carol_rx, "alice", window.end)


async def test_per_track_permission_and_a_later_subscriber(
    connect: Connect,
    media: MediaSession,
    http: aiohttp.ClientSession,
    server: Server,
    token: MintToken,
    room_name: str,
) -> None:
    """Bob may have alice's audio only; carol, who joins after the permission, is denied from the start."""
    alice = await connect("alice", room_name)
    bob = await connect("bob", room_name)
    bob_rx = media.receive(bob)
    publisher = await media.publish(alice)
    assert publisher.video_publication is not None and publisher.audio_publication is not None
    video, audio = publisher.video_publication.sid, publisher.audio_publication.sid
    await receiving(bob_rx, "alice", 0.0)

    alice.local_participant.set_track_subscription_permissions(
        allow_all_participants=False,
        participant_permissions=[
            rtc.ParticipantTrackPermission(participant_identity="bob", allowed_track_sids=[audio])
        ],
    )
    bob_events = Events(bob, "track_subscribed")
    carol = await connect("carol", room_name)
    carol_events = Events(carol, "track_subscribed")
    dave = await raw_join(http, server, token("dave", room_name))
    denied = await permission_updates(dave, 2)
    assert set(denied) == {video, audio} and not any(u.allowed for u in denied.values())

    await asyncio.sleep(GRACE)
    window = await measure(2.0)
    assert bob_rx.audio("alice").tone_windows(window.start, window.end) >= 5, bob_rx.report(window.start)
    assert bob_rx.video("alice").frames(window.start, window.end) == 0
    assert carol_events.args("track_subscribed") == []
    assert await packets_received(carol) == 0

    # The next message replaces this one: bob may have everything, carol the video.
    alice.local_participant.set_track_subscription_permissions(
        allow_all_participants=False,
        participant_permissions=[
            rtc.ParticipantTrackPermission(participant_identity="bob", allow_all=True),
            rtc.ParticipantTrackPermission(participant_identity="carol", allowed_track_sids=[video]),
        ],
    )
    await wait_for(
        lambda: [p.sid for _, p, _ in carol_events.args("track_subscribed")] == [video],
        15.0,
        "carol gets alice's video",
    )
    await wait_for(
        lambda: [p.sid for _, p, _ in bob_events.args("track_subscribed")] == [video],
        15.0,
        "bob gets alice's video again",
    )
    await bob_rx.wait_frames(10, identity="alice", since=window.end)
    carol_rx = media.receive(carol)
    await carol_rx.wait_frames(10, identity="alice")
    assert carol_rx.audios == {}


async def test_browser_sdk_is_told_and_its_video_stops_and_comes_back(
    page: Page,
    page_url: str,
    server: Server,
    token: MintToken,
    connect: Connect,
    media: MediaSession,
    room_name: str,
) -> None:
    """livekit-client surfaces the updates (TrackSubscriptionPermissionChanged)."""
    alice = await connect("alice", room_name)
    await page.goto(f"{page_url}?{urlencode({'url': server.url, 'token': token('browser', room_name)})}")
    joined = await browser_event(page, "e => e.ev === 'connected' || e.ev === 'connectFailed'")
    assert joined["ev"] == "connected", joined
    publisher = await media.publish(alice, audio=False)
    assert publisher.video_publication is not None
    sid = publisher.video_publication.sid
    decoded = f"window.__log.filter(e => e.ev === 'videoDecoded' && e.sid === '{sid}').length"
    await browser_condition(page, f"{decoded} >= 1", "the browser decodes alice's video")

    alice.local_participant.set_track_subscription_permissions(allow_all_participants=False)
    denied = await browser_event(page, "e => e.ev === 'trackPermission'")
    assert (denied["sid"], denied["status"], denied["identity"]) == (sid, "not_allowed", "alice")
    await asyncio.sleep(GRACE)
    frames = f"window.__video['{sid}'].framesDecoded"
    before = await page.evaluate(frames)
    await asyncio.sleep(2.0)
    assert await page.evaluate(frames) == before, "the browser still decodes alice's video"

    alice.local_participant.set_track_subscription_permissions(allow_all_participants=True)
    allowed = await browser_event(page, "e => e.ev === 'trackPermission' && e.status === 'allowed'")
    assert allowed["sid"] == sid
    await browser_condition(page, f"{decoded} >= 2", "the browser decodes alice's video again")
