"""Active speakers with the Python SDK: the server reads the RFC 6464 audio level of each published audio
packet and sends SpeakersChanged (LiveKit's 400 ms windows, -35 dBov threshold); the SDK reports them in
`active_speakers_changed`."""

import asyncio

import pytest
from livekit import rtc

from tests.interop.media import MediaSession
from tests.interop.sdk import Connect, Events

pytestmark = pytest.mark.timeout(90)

FIRST_MEDIA = 15.0  # join/publish -> the first SpeakersChanged
QUIET = 3.0  # how long a silent publisher is watched not to be reported


def identities(speakers: list[rtc.Participant]) -> set[str]:
    return {p.identity for p in speakers}


async def test_a_tone_is_an_active_speaker_silence_is_not(
    connect: Connect, room_name: str, media: MediaSession
) -> None:
    listener = await connect("carol", room_name)
    events = Events(listener, "active_speakers_changed")
    loud = await connect("alice", room_name)
    quiet = await connect("bob", room_name)
    own = Events(loud, "active_speakers_changed")
    tone = await media.publish(loud, video=False)
    await media.publish(quiet, video=False, amplitude=0)

    await events.wait("active_speakers_changed", lambda s: "alice" in identities(s), timeout=FIRST_MEDIA)
    await own.wait("active_speakers_changed", lambda s: "alice" in identities(s), timeout=FIRST_MEDIA)
    await asyncio.sleep(QUIET)
    heard = [identities(speakers) for (speakers,) in events.args("active_speakers_changed")]
    assert all(s <= {"alice"} for s in heard), heard
    assert heard[-1] == {"alice"}, heard
    # A steady tone's level stops changing, so a newcomer hears of alice when it subscribes to her.
    late = await connect("dave", room_name)
    newcomer = Events(late, "active_speakers_changed")
    await newcomer.wait("active_speakers_changed", lambda s: "alice" in identities(s), timeout=FIRST_MEDIA)

    await tone.stop()
    await events.wait("active_speakers_changed", lambda s: not s, timeout=5.0)
    await own.wait("active_speakers_changed", lambda s: not s, timeout=5.0)
