"""A published audio track's speaking level, from the RFC 6464 audio-level header extension of its packets.

LiveKit's algorithm and defaults (livekit-server pkg/sfu/audio/audiolevel.go, pkg/rtc/room.go): packets are
observed in windows of UPDATE_INTERVAL of media time (measured by RTP timestamps). A window is active when at
least MIN_PERCENTILE % of it was at or above -ACTIVE_LEVEL dBov; its level is then the loudest level seen,
corrected by how much of the window was active, made linear (0..1) and smoothed with an exponential moving
average over SMOOTH_INTERVALS windows. An inactive window, or no packet for two windows, resets it to 0.
A participant is an active speaker while the level of one of its microphone tracks is at least the linear
ACTIVE_LEVEL; speakers are reported with levels rounded up to 1/QUANTIZATION.
"""

import math

ACTIVE_LEVEL = 35  # -dBov: 0 is the loudest, 127 silence
MIN_PERCENTILE = 40  # % of a window that must be at ACTIVE_LEVEL or louder
UPDATE_INTERVAL = 0.4  # seconds: one window, and the cadence of SpeakersChanged
SMOOTH_INTERVALS = 2
QUANTIZATION = 8  # levels sent to clients are multiples of 1/8

SILENT = 127
_INTERVAL_MS = int(UPDATE_INTERVAL * 1000)
_MIN_ACTIVE_MS = MIN_PERCENTILE * _INTERVAL_MS // 100
_SMOOTH_FACTOR = 2 / (SMOOTH_INTERVALS + 1)


def linear(level_dbov: float) -> float:
    """-dBov (0 loudest) to a linear level (1 loudest)."""
    return float(10 ** (-level_dbov / 20))


ACTIVE_THRESHOLD = linear(ACTIVE_LEVEL)


def quantize(level: float) -> float:
    return math.ceil(level * QUANTIZATION) / QUANTIZATION


class AudioLevel:
    """One audio track's level; `observe` runs per packet (a few comparisons), `level` per report."""

    __slots__ = (
        "_active_ms",
        "_clock_rate",
        "_last_observed",
        "_last_ts",
        "_loudest",
        "_observed_ms",
        "_smoothed",
    )

    def __init__(self, clock_rate: int) -> None:
        self._clock_rate = clock_rate
        self._smoothed = 0.0
        self._loudest = SILENT
        self._active_ms = 0
        self._observed_ms = 0
        self._last_observed = 0.0
        self._last_ts: int | None = None

    def observe(self, level: int, rtp_timestamp: int, now: float) -> None:
        """One packet's level (-dBov) at its RTP timestamp; older (reordered) packets are ignored."""
        last = self._last_ts
        self._last_ts = rtp_timestamp
        if last is None:
            duration = 0
        else:
            delta = (rtp_timestamp - last) & 0xFFFFFFFF
            if delta >= 1 << 31:
                self._last_ts = last
                return
            duration = delta * 1000 // self._clock_rate
        self._last_observed = now
        self._observed_ms += duration
        if level <= ACTIVE_LEVEL:
            self._active_ms += duration
            if level < self._loudest:
                self._loudest = level
        if self._observed_ms >= _INTERVAL_MS:
            smoothed = 0.0
            if self._active_ms >= _MIN_ACTIVE_MS:
                weight = 20 * math.log10(self._active_ms / _INTERVAL_MS)
                smoothed = self._smoothed + (linear(self._loudest - weight) - self._smoothed) * _SMOOTH_FACTOR
            self._reset(smoothed)

    def level(self, now: float) -> tuple[float, bool]:
        """(linear level 0..1, active speaker)."""
        if now - self._last_observed >= 2 * UPDATE_INTERVAL:
            self._reset(0.0)
        return self._smoothed, self._smoothed >= ACTIVE_THRESHOLD

    def _reset(self, smoothed: float) -> None:
        self._smoothed = smoothed
        self._loudest = SILENT
        self._active_ms = 0
        self._observed_ms = 0
