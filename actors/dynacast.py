"""Dynacast, as LiveKit does it (pkg/rtc/dynacast): which simulcast layers of a published video track anybody
needs, so that its publisher stops sending the others.

Each subscription reports the highest quality it asks for (DownTrack.max_quality: OFF while disabled); the
track needs the highest of them, OFF with no subscriber. A change up goes to the publisher at once; a change
down only after PAUSE_DELAY (LiveKit's dynacast_pause_delay: a subscriber that looks away and back does not
cost the publisher a layer restart), counted from the first downgrade, whatever comes later. INITIAL_WAIT
after the track started, the publisher is told in any case (so a track nobody subscribes to stops), unless
it was told before. The TrackForwarder owns one per video track; the SDKs act on it only with `dynacast`.
"""

import asyncio
from collections.abc import Callable

from livekit.protocol import models, rtc

LOW, HIGH, OFF = models.VideoQuality.LOW, models.VideoQuality.HIGH, models.VideoQuality.OFF
PAUSE_DELAY = 5.0  # seconds: LiveKit's dynacast_pause_delay
INITIAL_WAIT = 10.0  # seconds: LiveKit's initialQualityUpdateWait


def is_upgrade(old: int, new: int) -> bool:
    return new != OFF and (old == OFF or new > old)


def subscribed_qualities(quality: int) -> list[rtc.SubscribedQuality]:
    """The layers enabled for a track whose subscribers need up to `quality`: that one and those below."""
    levels = (models.VideoQuality.LOW, models.VideoQuality.MEDIUM, models.VideoQuality.HIGH)
    return [rtc.SubscribedQuality(quality=q, enabled=q <= quality != OFF) for q in levels]


class Dynacast:
    def __init__(self, notify: Callable[[int], None]) -> None:
        """`notify(quality)`: tell the publisher the highest quality its subscribers need now."""
        self._notify = notify
        self._wanted: dict[str, int] = {}  # subscriber sid -> the highest quality it asks for, not OFF
        self.committed: int | None = None  # what the publisher was told last
        loop = asyncio.get_running_loop()
        self._initial: asyncio.TimerHandle | None = loop.call_later(INITIAL_WAIT, self.commit)
        self._downgrade: asyncio.TimerHandle | None = None

    @property
    def needed(self) -> int:
        return max(self._wanted.values(), default=OFF)

    def set(self, subscriber: str, quality: int) -> None:
        if quality == OFF:
            self._wanted.pop(subscriber, None)
        else:
            self._wanted[subscriber] = quality
        self._update()

    def remove(self, subscriber: str) -> None:
        self.set(subscriber, OFF)

    def commit(self) -> None:
        """Tell the publisher what is needed now (also when it was told so before)."""
        self._cancel()
        self.committed = self.needed
        self._notify(self.committed)

    def close(self) -> None:
        self._cancel()

    def _update(self) -> None:
        needed = self.needed
        if needed == self.committed:
            if self._downgrade is not None:
                self._downgrade.cancel()
                self._downgrade = None
            return
        if self.committed is None or is_upgrade(self.committed, needed):
            self.commit()
        elif self._downgrade is None:
            self._downgrade = asyncio.get_running_loop().call_later(PAUSE_DELAY, self.commit)

    def _cancel(self) -> None:
        for timer in (self._initial, self._downgrade):
            if timer is not None:
                timer.cancel()
        self._initial = self._downgrade = None
