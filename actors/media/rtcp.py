"""RTCP policy of the forwarder: upstream NACK tracking, keyframe request limiting, REMB to publishers."""

import time
from collections.abc import Callable, Iterable

from actors.media.rtp import seq_newer

NACK_WINDOW = 512  # sequence numbers behind the newest that we still ask for
KEYFRAME_INTERVAL = 0.3  # seconds between keyframe requests upstream, per track and layer

REMB_CEILING = 3_000_000  # bit/s advertised to a video publisher by default
REMB_FLOOR = 150_000  # never advertise less (a lossy subscriber must not starve everyone)


class NackTracker:
    """Missing sequence numbers of ONE stream (one SSRC); `add` says whether a new gap appeared."""

    def __init__(self) -> None:
        self.max_seq: int | None = None
        self.missing: set[int] = set()

    def add(self, seq: int) -> bool:
        if self.max_seq is None:
            self.max_seq = seq
            return False
        if not seq_newer(seq, self.max_seq):
            self.missing.discard(seq)
            return False
        gap = (seq - self.max_seq) & 0xFFFF
        if gap > NACK_WINDOW:  # a jump (restart or a long outage): forget, do not NACK hundreds
            self.missing.clear()
            self.max_seq = seq
            return False
        for i in range(1, gap):
            self.missing.add((self.max_seq + i) & 0xFFFF)
        self.max_seq = seq
        if self.missing:
            oldest = (seq - NACK_WINDOW) & 0xFFFF
            self.missing = {s for s in self.missing if seq_newer(s, oldest)}
        return gap > 1

    def missing_list(self) -> list[int]:
        top = self.max_seq or 0
        return sorted(self.missing, key=lambda s: (s - top) & 0xFFFF)


class RateLimiter:
    """At most one event per key per `interval` seconds."""

    def __init__(self, interval: float, now: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        self._now = now
        self._last: dict[object, float] = {}

    def allow(self, key: object = None) -> bool:
        t = self._now()
        last = self._last.get(key)
        if last is not None and t - last < self.interval:
            return False
        self._last[key] = t
        return True


def remb_target(ceiling: int, subscriber_estimates: Iterable[int | None], simulcast: bool) -> int:
    """The bitrate to advertise to a video publisher.

    aiortc's own estimator holds libwebrtc at 30-190 kbit/s on static content, and an advertisement far
    above what the encoder can use makes libwebrtc pad (pitfall 7), so: a fixed ceiling, lowered to the
    worst subscriber's estimate for a single-layer track (a simulcast publisher keeps the ceiling: slow
    subscribers take a lower layer instead).
    """
    if simulcast:
        return ceiling
    known = [e for e in subscriber_estimates if e]
    if not known:
        return ceiling
    return max(REMB_FLOOR, min(ceiling, min(known)))
