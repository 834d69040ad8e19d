"""A subscriber's UpdateTrackSettings, applied as LiveKit applies them (pkg/rtc/subscribedtrack.go,
subscriptionmanager.go).

The latest settings of each track are kept, also for a track whose subscription is not bound yet (a client
may send them right after asking to subscribe), and applied when it is. A change is applied DEBOUNCE after
the last one (a scrolling or resizing client sends many), except one that enables the track again, which
is applied at once; settings equal to the last ones change nothing. Applications run one at a time, with
the latest settings, so an older one never lands after a newer one.
"""

import asyncio
from collections.abc import Awaitable, Callable

from livekit.protocol import models, rtc

from actors.tasks import spawn

DEBOUNCE = 0.1  # seconds: LiveKit's subscriber settings debounce
MAX_UNBOUND = 256  # settings kept for tracks not subscribed (yet); beyond it the oldest are dropped

# (track sid, its settings) -> apply them to the subscription
Apply = Callable[[str, rtc.UpdateTrackSettings], Awaitable[None]]


class TrackSettings:
    def __init__(self, apply: Apply, name: str) -> None:
        self._apply = apply
        self._name = name
        self._latest: dict[str, rtc.UpdateTrackSettings] = {}
        self._bound: set[str] = set()
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._lock = asyncio.Lock()

    def update(self, track_sid: str, settings: rtc.UpdateTrackSettings) -> None:
        """New settings from the client for one track (`settings.track_sids` is ignored)."""
        previous = self._latest.pop(track_sid, None)
        self._latest[track_sid] = settings
        unbound = [sid for sid in self._latest if sid not in self._bound]
        for sid in unbound[: max(0, len(unbound) - MAX_UNBOUND)]:
            del self._latest[sid]
        if previous == settings or track_sid not in self._bound:
            return
        self._cancel(track_sid)
        if not settings.disabled and previous is not None and previous.disabled:
            self._run_soon(track_sid)
        else:
            loop = asyncio.get_running_loop()
            self._timers[track_sid] = loop.call_later(DEBOUNCE, self._run_soon, track_sid)

    async def bind(self, track_sid: str) -> None:
        """The subscription exists now: apply its settings (the defaults when the client sent none)."""
        self._bound.add(track_sid)
        await self._run(track_sid)

    def unbind(self, track_sid: str) -> None:
        """The subscription went; its settings are kept for when it comes back."""
        self._bound.discard(track_sid)
        self._cancel(track_sid)

    def forget(self, track_sid: str) -> None:
        """The client no longer wants the track: its settings go too."""
        self.unbind(track_sid)
        self._latest.pop(track_sid, None)

    def close(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        self._bound.clear()

    def _cancel(self, track_sid: str) -> None:
        timer = self._timers.pop(track_sid, None)
        if timer is not None:
            timer.cancel()

    def _run_soon(self, track_sid: str) -> None:
        self._timers.pop(track_sid, None)
        spawn(self._run(track_sid), f"{self._name}: settings of {track_sid}")

    async def _run(self, track_sid: str) -> None:
        async with self._lock:
            if track_sid in self._bound:
                default = rtc.UpdateTrackSettings(quality=models.VideoQuality.HIGH)
                await self._apply(track_sid, self._latest.get(track_sid, default))
