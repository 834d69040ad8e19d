"""Media through raysfu between real Python SDK clients: audio and video forwarding, mute, subscriptions,
permissions, a room across two MediaWorkers, and simulcast layer selection.

The publisher sends a known pattern (tests/interop/media.py): colour-cycling frames with a frame counter and a
440 Hz tone; the subscribers decode and check what they get. Audio is judged by the tone (an SDK AudioStream
yields silent frames even when nothing arrives), video by decoded frames.
"""

import asyncio
import time
from pathlib import Path

import pytest
from livekit import rtc
from livekit.rtc.participant import PublishTrackError

from tests.interop.conftest import DASHBOARD_PORT, join, own_server
from tests.interop.media import (
    SILENCE_RMS,
    TONE_HZ,
    TONE_TOLERANCE_HZ,
    MediaReceiver,
    MediaSession,
    PatternPublisher,
    VideoSample,
    assert_frames_delivered,
    egress_packets,
    ingress_packets,
    measure,
    media_stats,
    payload_mismatch,
    relay_packets,
    subscriber_m_lines,
    track_stats,
    worker_of,
)
from tests.interop.sdk import Connect, Events, wait_for

pytestmark = pytest.mark.timeout(90)

ALL_COLOURS = {"red", "green", "blue"}
FIRST_MEDIA = 15.0  # join/publish -> first decoded frame, or the tone
GRACE = 0.5  # after a subscriber hears of a mute/unsubscribe, packets already in flight may still land
QUIET = 2.0  # how long "nothing arrives" is watched


def readable(sample: VideoSample) -> bool:
    return sample.counter is not None


def published(pub: PatternPublisher) -> tuple[str, str]:
    assert pub.video_publication is not None and pub.audio_publication is not None
    return pub.video_publication.sid, pub.audio_publication.sid


def remote_publication(room: rtc.Room, identity: str, sid: str) -> rtc.RemoteTrackPublication:
    participant = room.remote_participants.get(identity)
    assert participant is not None, f"{identity} is not in {list(room.remote_participants)}"
    publication = participant.track_publications.get(sid)
    assert publication is not None, (
        f"{identity} has no publication {sid}: {list(participant.track_publications)}"
    )
    return publication


async def assert_receives_pattern(rx: MediaReceiver, pub: PatternPublisher, identity: str) -> None:
    """`rx` decodes `identity`'s pattern: all colours, >= 90% of frames in a 3 s window, the 440 Hz tone."""
    await rx.wait_frames(10, FIRST_MEDIA, identity=identity, where=readable)
    await rx.wait_tone(FIRST_MEDIA, identity=identity)
    window = await measure(3.0)
    video = rx.video(identity)
    assert video.colours_seen(window.start, window.end) == ALL_COLOURS, video.summary(
        window.start, window.end
    )
    await assert_frames_delivered(pub, video, window)
    audio = rx.audio(identity)
    hz = audio.dominant_hz(window.start, window.end)
    summary = audio.summary(window.start, window.end)
    assert hz is not None and abs(hz - TONE_HZ) <= TONE_TOLERANCE_HZ, summary
    assert audio.rms(window.start, window.end) > SILENCE_RMS, summary
    windows = len(audio.between(window.start, window.end))
    assert audio.tone_windows(window.start, window.end) >= 0.8 * windows, summary


async def test_two_subscribers_decode_video_and_tone(
    connect: Connect, media: MediaSession, room_name: str
) -> None:
    alice = await connect("alice", room_name)
    bob = await connect("bob", room_name)  # in the room before the tracks: subscribes on track_published
    bob_rx = media.receive(bob)
    pub = await media.publish(alice)
    carol = await connect("carol", room_name)  # joins after: the tracks come in the join response
    carol_rx = media.receive(carol)
    await asyncio.gather(
        assert_receives_pattern(bob_rx, pub, "alice"), assert_receives_pattern(carol_rx, pub, "alice")
    )
    for rx in (bob_rx, carol_rx):
        assert len(rx.videos) == 1 and len(rx.audios) == 1, rx.report()


async def test_forwarded_payloads_are_byte_identical(
    connect: Connect, media: MediaSession, room_name: str
) -> None:
    alice = await connect("alice", room_name)
    bob = await connect("bob", room_name)
    rx = media.receive(bob)
    pub = await media.publish(alice)
    video_sid, audio_sid = published(pub)
    await rx.wait_frames(20, FIRST_MEDIA, identity="alice", where=readable)
    await rx.wait_tone(FIRST_MEDIA, identity="alice")
    await pub.stop()
    await asyncio.sleep(1.0)  # everything in flight is delivered
    stats = await media_stats(DASHBOARD_PORT)
    worker = worker_of(stats, bob.local_participant.sid)
    for sid in (video_sid, audio_sid):
        assert egress_packets(stats, sid, bob.local_participant.sid) > 0, stats[worker].get("tracks")
        assert payload_mismatch(stats, worker, sid, bob.local_participant.sid) == ""


async def test_three_publishers_receive_each_other(
    connect: Connect, media: MediaSession, room_name: str
) -> None:
    names = ["alice", "bob", "carol"]
    rooms = [await connect(name, room_name) for name in names]
    receivers = [media.receive(room) for room in rooms]
    publishers = [await media.publish(room) for room in rooms]
    for name, rx in zip(names, receivers, strict=True):
        for other in names:
            if other != name:
                await rx.wait_frames(10, FIRST_MEDIA, identity=other, where=readable)
                await rx.wait_tone(FIRST_MEDIA, identity=other)
    window = await measure(2.0)
    for name, room, rx in zip(names, rooms, receivers, strict=True):
        assert len(rx.videos) == 2 and len(rx.audios) == 2, f"{name}: {rx.report()}"
        subscribed = [
            p
            for rp in room.remote_participants.values()
            for p in rp.track_publications.values()
            if p.subscribed
        ]
        assert len(subscribed) == 4, f"{name} is subscribed to {subscribed}"
        for other, pub in zip(names, publishers, strict=True):
            if other != name:
                video = rx.video(other)
                assert video.colours_seen(window.start, window.end) == ALL_COLOURS, video.summary()
                await assert_frames_delivered(pub, video, window)
                assert rx.audio(other).tone_windows(window.start, window.end) > 0, rx.report()


async def test_mute_stops_media_and_unmute_resumes_it(
    connect: Connect, media: MediaSession, room_name: str
) -> None:
    alice = await connect("alice", room_name)
    bob = await connect("bob", room_name)
    rx = media.receive(bob)
    pub = await media.publish(alice)
    video_sid, audio_sid = published(pub)
    await rx.wait_frames(10, FIRST_MEDIA, identity="alice", where=readable)
    await rx.wait_tone(FIRST_MEDIA, identity="alice")
    events = Events(bob, "track_muted", "track_unmuted")
    assert pub.video_track is not None and pub.audio_track is not None

    pub.video_track.mute()
    pub.audio_track.mute()
    for sid in (video_sid, audio_sid):
        participant, _ = await events.wait("track_muted", lambda p, pb, sid=sid: pb.sid == sid)
        assert participant.identity == "alice"
    assert remote_publication(bob, "alice", video_sid).muted
    quiet_from = time.monotonic() + GRACE
    await asyncio.sleep(GRACE + QUIET)
    assert rx.video("alice").frames(since=quiet_from) == 0, rx.report(since=quiet_from)
    assert rx.audio("alice").loud_windows(since=quiet_from) == 0, rx.report(since=quiet_from)

    resumed = time.monotonic()
    pub.video_track.unmute()
    pub.audio_track.unmute()
    for sid in (video_sid, audio_sid):
        await events.wait("track_unmuted", lambda p, pb, sid=sid: pb.sid == sid)
    await rx.wait_frames(10, 10.0, identity="alice", since=resumed, where=readable)
    await rx.wait_tone(10.0, identity="alice", since=resumed)
    assert not remote_publication(bob, "alice", video_sid).muted


async def test_unsubscribe_stops_media_and_resubscribe_resumes_it(
    connect: Connect, media: MediaSession, room_name: str
) -> None:
    alice = await connect("alice", room_name)
    bob = await connect("bob", room_name)
    rx = media.receive(bob)
    pub = await media.publish(alice)
    video_sid, audio_sid = published(pub)
    await rx.wait_frames(10, FIRST_MEDIA, identity="alice", where=readable)
    await rx.wait_tone(FIRST_MEDIA, identity="alice")
    events = Events(bob, "track_unsubscribed", "track_subscribed")
    publications = [remote_publication(bob, "alice", sid) for sid in (video_sid, audio_sid)]
    bob_sid = bob.local_participant.sid

    for publication in publications:
        publication.set_subscribed(False)
    for sid in (video_sid, audio_sid):
        await events.wait("track_unsubscribed", lambda t, pb, p, sid=sid: pb.sid == sid)
    assert not any(p.subscribed for p in publications)
    await asyncio.sleep(GRACE)
    before = await media_stats(DASHBOARD_PORT)
    await asyncio.sleep(QUIET)
    after = await media_stats(DASHBOARD_PORT)
    for sid in (video_sid, audio_sid):
        sent_before, sent_after = egress_packets(before, sid, bob_sid), egress_packets(after, sid, bob_sid)
        assert sent_after <= sent_before, (
            f"{sid}: {sent_after - sent_before} packets sent after unsubscribing"
        )

    resumed = time.monotonic()
    for publication in publications:
        publication.set_subscribed(True)
    for sid in (video_sid, audio_sid):
        await events.wait("track_subscribed", lambda t, pb, p, sid=sid: pb.sid == sid)
    await rx.wait_frames(10, 10.0, identity="alice", since=resumed, where=readable)
    await rx.wait_tone(10.0, identity="alice", since=resumed)


@pytest.mark.parametrize(("single_pc", "m_lines"), [(False, 2), (True, 6)], ids=["rtc", "rtc-v1"])
async def test_republished_tracks_reuse_the_subscribers_freed_m_lines(
    connect: Connect, media: MediaSession, room_name: str, single_pc: bool, m_lines: int
) -> None:
    """An m-line freed by an unsubscription carries the next subscription of its kind (as LiveKit reuses
    transceivers), so a subscriber's SDP does not grow: alice unpublishes and publishes again five times,
    and bob ends with one audio and one video m-line (on /rtc/v1: the 3 + 3 his first offer had), and her
    media."""
    alice = await connect("alice", room_name)
    bob = await connect("bob", room_name, single_peer_connection=single_pc)
    rx = media.receive(bob)
    events = Events(bob, "track_unpublished")
    for round in range(5):
        pub = await media.publish(alice)
        video_sid, audio_sid = published(pub)

        def receiving(v: str = video_sid, a: str = audio_sid) -> bool:
            video, audio = rx.videos.get(v), rx.audios.get(a)
            return (
                video is not None and video.frames() >= 5 and audio is not None and audio.tone_windows() >= 3
            )

        await wait_for(receiving, FIRST_MEDIA, f"round {round}: alice's media; {rx.report()}")
        if round == 4:
            break
        await pub.stop()
        for sid in (video_sid, audio_sid):
            await alice.local_participant.unpublish_track(sid)
            await events.wait("track_unpublished", lambda pb, p, sid=sid: pb.sid == sid)
        await asyncio.sleep(QUIET)  # bob's renegotiation that idles the m-lines
    stats = await media_stats(DASHBOARD_PORT)
    assert subscriber_m_lines(stats, bob.local_participant.sid) == m_lines


async def test_unpublish_is_seen_and_the_other_track_keeps_flowing(
    connect: Connect, media: MediaSession, room_name: str
) -> None:
    alice = await connect("alice", room_name)
    bob = await connect("bob", room_name)
    rx = media.receive(bob)
    pub = await media.publish(alice)
    video_sid, audio_sid = published(pub)
    await rx.wait_frames(5, FIRST_MEDIA, identity="alice", where=readable)
    events = Events(bob, "track_unpublished", "track_unsubscribed")

    await alice.local_participant.unpublish_track(video_sid)
    _, participant = await events.wait("track_unpublished", lambda pb, p: pb.sid == video_sid)
    assert participant.identity == "alice"
    assert video_sid not in bob.remote_participants["alice"].track_publications
    assert audio_sid in bob.remote_participants["alice"].track_publications
    await events.wait("track_unsubscribed", lambda t, pb, p: pb.sid == video_sid)
    after = time.monotonic()
    await rx.wait_tone(10.0, identity="alice", since=after)
    assert [args[0].sid for args in events.args("track_unpublished")] == [video_sid]


async def test_publisher_hears_of_a_tracks_first_subscription(
    connect: Connect, media: MediaSession, room_name: str
) -> None:
    """LiveKit's TrackSubscribed, the SDK's `local_track_subscribed`: once per track, at its first
    subscription by a participant that is not hidden."""
    alice = await connect("alice", room_name)
    events = Events(alice, "local_track_subscribed")
    pub = await media.publish(alice, video=False)
    assert pub.audio_publication is not None
    audio_sid = pub.audio_publication.sid
    recorder = await connect("recorder", room_name, hidden=True)
    await media.receive(recorder).wait_tone(FIRST_MEDIA, identity="alice")
    assert events.args("local_track_subscribed") == []

    bob = await connect("bob", room_name)
    (track,) = await events.wait("local_track_subscribed", timeout=FIRST_MEDIA)
    assert track.sid == audio_sid
    carol = await connect("carol", room_name)
    await media.receive(carol).wait_tone(FIRST_MEDIA, identity="alice")
    await media.receive(bob).wait_tone(FIRST_MEDIA, identity="alice")
    assert len(events.args("local_track_subscribed")) == 1


async def test_auto_subscribe_off_receives_only_what_it_asks_for(
    connect: Connect, media: MediaSession, room_name: str
) -> None:
    alice = await connect("alice", room_name)
    pub = await media.publish(alice)
    video_sid, audio_sid = published(pub)
    bob = await connect("bob", room_name, auto_subscribe=False)
    carol = await connect("carol", room_name)  # the control: auto-subscribed, gets everything
    bob_rx, carol_rx = media.receive(bob), media.receive(carol)
    await wait_for(
        lambda: (
            "alice" in bob.remote_participants
            and {video_sid, audio_sid} <= set(bob.remote_participants["alice"].track_publications)
        ),
        10.0,
        "bob to see alice's two publications",
    )
    await carol_rx.wait_frames(10, FIRST_MEDIA, identity="alice", where=readable)
    await carol_rx.wait_tone(FIRST_MEDIA, identity="alice")
    assert not bob_rx.videos and not bob_rx.audios, bob_rx.report()
    video = remote_publication(bob, "alice", video_sid)
    audio = remote_publication(bob, "alice", audio_sid)
    assert not video.subscribed and not audio.subscribed

    video.set_subscribed(True)
    await bob_rx.wait_frames(10, FIRST_MEDIA, identity="alice", where=readable)
    assert bob_rx.video("alice").colours_seen() <= ALL_COLOURS
    await asyncio.sleep(QUIET)
    assert not bob_rx.audios, bob_rx.report()
    assert video.subscribed and not audio.subscribed


async def test_can_subscribe_false_receives_no_tracks(
    connect: Connect, media: MediaSession, room_name: str
) -> None:
    alice = await connect("alice", room_name)
    pub = await media.publish(alice)
    published(pub)
    bob = await connect("bob", room_name, can_subscribe=False)
    events = Events(bob, "track_subscribed")
    bob_rx = media.receive(bob)
    carol = await connect("carol", room_name)  # the control
    carol_rx = media.receive(carol)
    await carol_rx.wait_frames(10, FIRST_MEDIA, identity="alice", where=readable)
    await carol_rx.wait_tone(FIRST_MEDIA, identity="alice")
    for participant in bob.remote_participants.values():  # asking explicitly changes nothing
        for publication in participant.track_publications.values():
            publication.set_subscribed(True)
    await asyncio.sleep(QUIET)
    assert events.names() == [], events.seen
    assert not bob_rx.videos and not bob_rx.audios, bob_rx.report()
    stats = await media_stats(DASHBOARD_PORT)
    for sid in published(pub):
        assert egress_packets(stats, sid, bob.local_participant.sid) == 0


async def test_can_publish_false_cannot_publish(
    connect: Connect, media: MediaSession, room_name: str
) -> None:
    alice = await connect("alice", room_name, can_publish=False)
    bob = await connect("bob", room_name)
    events = Events(bob, "track_published", "track_subscribed")
    with pytest.raises(PublishTrackError):  # the SDK gives up after ~10 s without a TrackPublishedResponse
        await asyncio.wait_for(media.publish(alice), 25.0)
    await asyncio.sleep(1.0)
    assert events.names() == [], events.seen
    assert not bob.remote_participants["alice"].track_publications
    assert not alice.local_participant.track_publications


async def test_room_across_two_workers_relays_one_copy_per_track(
    media: MediaSession, room_name: str, tmp_path: Path
) -> None:
    """One participant per worker: bob on one worker, alice (publishing) on the other, carol overflows
    onto bob's. Both get everything, and alice's worker relays one copy of each track to theirs."""
    dashboard_port = 8267
    async with own_server(
        7892, dashboard_port, tmp_path, "--participants-per-worker", "1", "--workers", "2"
    ) as srv:
        rooms: list[rtc.Room] = []
        try:
            bob = await join(srv, "bob", room_name, rooms)
            alice = await join(srv, "alice", room_name, rooms)
            carol = await join(srv, "carol", room_name, rooms)
            bob_rx, carol_rx = media.receive(bob), media.receive(carol)
            pub = await media.publish(alice)
            video_sid, audio_sid = published(pub)
            await asyncio.gather(
                assert_receives_pattern(bob_rx, pub, "alice"), assert_receives_pattern(carol_rx, pub, "alice")
            )
            # A mute reaches the copies too, and after the unmute they restart on a fresh keyframe.
            assert pub.video_track is not None
            events = Events(carol, "track_muted", "track_unmuted")
            pub.video_track.mute()
            await events.wait("track_muted", lambda p, pb: pb.sid == video_sid)
            quiet_from = time.monotonic() + GRACE
            await asyncio.sleep(GRACE + QUIET)
            for rx in (bob_rx, carol_rx):
                assert rx.video("alice").frames(since=quiet_from) == 0, rx.report(since=quiet_from)
            resumed = time.monotonic()
            pub.video_track.unmute()
            await events.wait("track_unmuted", lambda p, pb: pb.sid == video_sid)
            for rx in (bob_rx, carol_rx):
                await rx.wait_frames(10, 10.0, identity="alice", since=resumed, where=readable)
            await pub.stop()
            await asyncio.sleep(1.0)
            stats = await media_stats(dashboard_port)
            sids = {
                name: r.local_participant.sid
                for name, r in zip(("bob", "alice", "carol"), rooms, strict=True)
            }
            workers = {name: worker_of(stats, sid) for name, sid in sids.items()}
            assert workers["alice"] not in (workers["bob"], workers["carol"]), workers
            assert workers["bob"] == workers["carol"], f"bob and carol should share a worker: {workers}"
            receiving = workers["bob"]
            for sid in (video_sid, audio_sid):
                ingress = ingress_packets(stats, workers["alice"], sid)
                relayed = relay_packets(stats, workers["alice"], sid, receiving)
                fanned_out = egress_packets(stats, sid, sids["bob"]) + egress_packets(
                    stats, sid, sids["carol"]
                )
                detail = f"{sid}: ingress {ingress}, relayed {relayed}, sent to bob+carol {fanned_out}"
                assert 0 < relayed <= ingress, f"one copy per receiving worker expected; {detail}"
                assert fanned_out > relayed, f"the receiving worker should fan the copy out; {detail}"
                assert payload_mismatch(stats, receiving, sid, sids["bob"]) == ""

            # The copies stop when the receiving worker's last subscriber leaves.
            for client in (bob, carol):
                await client.disconnect()
            deadline = time.monotonic() + 10.0
            while True:
                stats = await media_stats(dashboard_port)
                left = {
                    sid: (
                        track_stats(stats, workers["alice"], sid)["relay_out"],
                        sid in stats[receiving]["tracks"],
                    )
                    for sid in (video_sid, audio_sid)
                }
                if all(out == {} and not copy for out, copy in left.values()):
                    break
                assert time.monotonic() < deadline, f"relays still up after bob and carol left: {left}"
                await asyncio.sleep(0.5)
        finally:
            await media.close()
            for room in rooms:
                if room.isconnected():
                    await room.disconnect()


async def test_simulcast_subscriber_gets_the_low_layer(
    connect: Connect, media: MediaSession, room_name: str
) -> None:
    alice = await connect("alice", room_name)
    bob = await connect("bob", room_name)
    rx = media.receive(bob)
    pub = await media.publish(alice, width=1280, height=720, fps=20, simulcast=True, audio=False)
    assert pub.video_publication is not None
    video_sid = pub.video_publication.sid
    await rx.wait_frames(5, FIRST_MEDIA, identity="alice", where=readable)
    publication = remote_publication(bob, "alice", video_sid)
    assert publication.simulcasted, "the SDK published 3 layers; the TrackInfo must say so"

    asked_high = time.monotonic()
    publication.set_video_quality(rtc.VideoQuality.VIDEO_QUALITY_HIGH)
    high = await rx.wait_frames(
        5, FIRST_MEDIA, identity="alice", since=asked_high, where=lambda s: s.width > 320
    )
    high_width = max(w for w, _ in high.sizes(since=asked_high) if w > 320)

    asked_low = time.monotonic()
    publication.set_video_quality(rtc.VideoQuality.VIDEO_QUALITY_LOW)
    try:
        low = await rx.wait_frames(
            10,
            FIRST_MEDIA,
            identity="alice",
            since=asked_low,
            where=lambda s: s.width <= min(640, high_width - 1) and s.counter is not None,
        )
    except (
        AssertionError
    ) as e:  # say what the worker saw: layers, target, keyframes (an intermittent failure)
        stats = await media_stats(DASHBOARD_PORT)
        track = next((t["tracks"][video_sid] for t in stats.values() if video_sid in t.get("tracks", {})), {})
        layers = {
            rid: {k: v for k, v in la.items() if k != "ssrc"} for rid, la in track.get("layers", {}).items()
        }
        downs = {
            sid: {k: d.get(k) for k in ("layer", "target", "switches", "packets_out", "sender")}
            for sid, d in track.get("subscribers", {}).items()
        }
        raise AssertionError(
            f"{e}; worker: layers {layers}, keyframe requests {track.get('keyframe_requests')}, downs {downs}"
        ) from None
    lows = [s for s in low.between(asked_low) if s.width <= min(640, high_width - 1)]
    assert {s.colour for s in lows} <= ALL_COLOURS, low.summary(asked_low)
