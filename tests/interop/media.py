"""Media tools for the interop tests: publish a known pattern through the SDK, decode and measure it.

Video: frame i is a solid colour from the cycle red, green, blue (changing every `colour_every` frames) over
its top three quarters; the bottom quarter is a band of 14 equal cells: a white sync cell, the frame counter
(i mod 4096) as 12 bits, MSB first, white = 1, and a black sync cell. Everything is big blocks, so it
survives VP8 and the downscaled simulcast layers; the receiver reads the colour from the centre of the
colour area and the counter from the centre of each cell. A black frame (a muted libwebrtc track) has no
counter (its first sync cell is black).
Audio: a 440 Hz sine, 48 kHz mono, 10 ms frames. The receiver cuts what it gets into 100 ms windows and
measures each window's RMS and dominant frequency. An SDK AudioStream yields silent frames even when no RTP
arrives, so "audio arrived" is always "the tone is there", never a frame count.

Server side: `media_stats()` reads every MediaWorker's `media_stats()` through Ray, from a subprocess (the
test process must not become a Ray driver of the server's cluster).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import math
import time
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
from livekit import rtc

from bench.workers import call_workers
from tests.interop.sdk import wait_for

# --- the pattern -----------------------------------------------------------------------------------------

CYCLE: tuple[str, ...] = ("red", "green", "blue")
REFERENCE_COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (255, 0, 0),
    "green": (0, 255, 0),
    "blue": (0, 0, 255),
    "black": (0, 0, 0),
    "white": (255, 255, 255),
}
MAX_COLOUR_DISTANCE = 110.0  # RGB distance to the nearest reference colour; VP8 + YUV 4:2:0 stays well within
COUNTER_BITS = 12
COUNTER_MODULO = 1 << COUNTER_BITS
BAND_CELLS = COUNTER_BITS + 2  # white sync cell, the bits, black sync cell
# A cell's mean brightness >= BIT_ONE_LUMA reads as 1, <= BIT_ZERO_LUMA as 0, else as unreadable.
BIT_ONE_LUMA = 160.0
BIT_ZERO_LUMA = 96.0

SAMPLE_RATE = 48000
TONE_HZ = 440.0
TONE_AMPLITUDE = 8000  # int16; RMS ~5660
AUDIO_FRAME_SAMPLES = SAMPLE_RATE // 100  # 10 ms
AUDIO_WINDOW_SAMPLES = SAMPLE_RATE // 10  # 100 ms analysis windows
SILENCE_RMS = 300.0  # decoded silence is ~0, the tone ~5600, Chromium's fake-mic beep far above this
TONE_TOLERANCE_HZ = 10.0

Rgba = npt.NDArray[np.uint8]  # (height, width, 4)
Samples = npt.NDArray[np.int16]


def pattern_colour(index: int, colour_every: int) -> str:
    """The colour of frame `index` of the pattern."""
    return CYCLE[(index // colour_every) % len(CYCLE)]


def _band_top(height: int) -> int:
    return height - height // 4


def _cell_bounds(width: int, cell: int) -> tuple[int, int]:
    return cell * width // BAND_CELLS, (cell + 1) * width // BAND_CELLS


def render_frame(index: int, width: int, height: int, colour_every: int) -> Rgba:
    """Frame `index` of the pattern as RGBA pixels."""
    frame = np.zeros((height, width, 4), np.uint8)
    frame[..., 3] = 255
    band = _band_top(height)
    frame[:band, :, :3] = REFERENCE_COLOURS[pattern_colour(index, colour_every)]
    counter = index % COUNTER_MODULO
    cells = [1] + [(counter >> (COUNTER_BITS - 1 - b)) & 1 for b in range(COUNTER_BITS)] + [0]
    for cell, bit in enumerate(cells):
        if bit:
            x0, x1 = _cell_bounds(width, cell)
            frame[band:, x0:x1, :3] = 255
    return frame


def _centre_mean(region: Rgba) -> npt.NDArray[np.float64]:
    h, w = region.shape[:2]
    centre = region[h // 4 : h - h // 4 or 1, w // 4 : w - w // 4 or 1, :3]
    return np.asarray(centre.reshape(-1, 3).mean(axis=0), np.float64)


def classify_colour(frame: Rgba) -> str | None:
    """The reference colour nearest to the mean of the centre of the colour area, or None if none is near."""
    mean = _centre_mean(frame[: _band_top(frame.shape[0])])
    name, distance = min(
        (
            (n, float(np.linalg.norm(mean - np.array(rgb, np.float64))))
            for n, rgb in REFERENCE_COLOURS.items()
        ),
        key=lambda item: item[1],
    )
    return name if distance <= MAX_COLOUR_DISTANCE else None


def read_counter(frame: Rgba) -> int | None:
    """The frame counter from the band, or None when a cell is unreadable or the sync cells are wrong."""
    height, width = frame.shape[:2]
    band = frame[_band_top(height) :]
    bits: list[int] = []
    for cell in range(BAND_CELLS):
        x0, x1 = _cell_bounds(width, cell)
        luma = float(_centre_mean(band[:, x0:x1]).mean())
        if luma >= BIT_ONE_LUMA:
            bits.append(1)
        elif luma <= BIT_ZERO_LUMA:
            bits.append(0)
        else:
            return None
    if bits[0] != 1 or bits[-1] != 0:
        return None
    value = 0
    for bit in bits[1:-1]:
        value = value << 1 | bit
    return value


def rgba_of(frame: rtc.VideoFrame) -> Rgba:
    """An SDK frame as an RGBA array (converted when it is not RGBA already)."""
    if frame.type != rtc.VideoBufferType.RGBA:
        frame = frame.convert(rtc.VideoBufferType.RGBA)
    return np.frombuffer(frame.data, np.uint8).reshape(frame.height, frame.width, 4)


def tone(start_sample: int, count: int, hz: float = TONE_HZ, amplitude: int = TONE_AMPLITUDE) -> Samples:
    """`count` samples of the test tone, starting at sample `start_sample` (phase-continuous across calls)."""
    n = np.arange(start_sample, start_sample + count, dtype=np.float64)
    return (np.sin(2 * math.pi * hz * n / SAMPLE_RATE) * amplitude).astype(np.int16)


def rms(samples: npt.NDArray[Any]) -> float:
    if len(samples) == 0:
        return 0.0
    x = samples.astype(np.float64)
    return float(np.sqrt(np.mean(x * x)))


def dominant_frequency(samples: npt.NDArray[Any], sample_rate: int = SAMPLE_RATE) -> float:
    """The frequency (Hz) of the strongest FFT bin (Hann window, zero-padded 4x: 2.5 Hz bins at 100 ms)."""
    if len(samples) < 2:
        return 0.0
    x = samples.astype(np.float64)
    x = (x - x.mean()) * np.hanning(len(x))
    n = 4 * len(x)
    spectrum = np.abs(np.fft.rfft(x, n))
    return float(np.argmax(spectrum) * sample_rate / n)


def is_tone(window: AudioWindow, hz: float = TONE_HZ, tolerance: float = TONE_TOLERANCE_HZ) -> bool:
    return window.rms > SILENCE_RMS and abs(window.dominant_hz - hz) <= tolerance


# --- what a receiver records -----------------------------------------------------------------------------


@dataclass(frozen=True)
class VideoSample:
    t: float  # time.monotonic() at arrival
    width: int
    height: int
    colour: str | None
    counter: int | None


@dataclass(frozen=True)
class AudioWindow:
    t: float  # time.monotonic() when the window's last frame arrived
    rms: float
    dominant_hz: float


def analyse_audio(samples: Samples, t: float) -> AudioWindow:
    return AudioWindow(t, rms(samples), dominant_frequency(samples))


def longest_gap(times: list[float], since: float, until: float) -> float:
    """The longest interval between consecutive `times` (sorted) and the finite ends of [since, until]."""
    edges = ([since] if since > 0 else []) + times + ([until] if until < math.inf else [])
    return max((b - a for a, b in itertools.pairwise(edges)), default=math.inf)


@dataclass
class VideoLog:
    """Every decoded frame of one remote video track (across resubscriptions)."""

    track_sid: str
    identity: str
    samples: list[VideoSample] = field(default_factory=list)

    def between(self, since: float = 0.0, until: float = math.inf) -> list[VideoSample]:
        return [s for s in self.samples if since <= s.t <= until]

    def frames(self, since: float = 0.0, until: float = math.inf) -> int:
        return len(self.between(since, until))

    def colours_seen(self, since: float = 0.0, until: float = math.inf) -> set[str]:
        return {s.colour for s in self.between(since, until) if s.colour is not None}

    def counters(self, since: float = 0.0, until: float = math.inf) -> set[int]:
        return {s.counter for s in self.between(since, until) if s.counter is not None}

    def sizes(self, since: float = 0.0, until: float = math.inf) -> set[tuple[int, int]]:
        return {(s.width, s.height) for s in self.between(since, until)}

    def max_gap(self, since: float = 0.0, until: float = math.inf) -> float:
        """The longest time between consecutive frames (and the window's ends) within [since, until]."""
        return longest_gap([s.t for s in self.between(since, until)], since, until)

    def summary(self, since: float = 0.0, until: float = math.inf) -> dict[str, Any]:
        return {
            "track": self.track_sid,
            "from": self.identity,
            "frames": self.frames(since, until),
            "colours_seen": sorted(self.colours_seen(since, until)),
            "sizes": sorted(self.sizes(since, until)),
            "max_gap": round(self.max_gap(since, until), 3),
        }


@dataclass
class AudioLog:
    """One remote audio track as 100 ms windows (across resubscriptions)."""

    track_sid: str
    identity: str
    windows: list[AudioWindow] = field(default_factory=list)
    _pending: list[Samples] = field(default_factory=list)
    _pending_len: int = 0

    def feed(self, samples: Samples, t: float) -> None:
        self._pending.append(samples)
        self._pending_len += len(samples)
        if self._pending_len >= AUDIO_WINDOW_SAMPLES:
            block = np.concatenate(self._pending)
            self._pending, self._pending_len = [], 0
            self.windows.append(analyse_audio(block, t))

    def between(self, since: float = 0.0, until: float = math.inf) -> list[AudioWindow]:
        return [w for w in self.windows if since <= w.t <= until]

    def tone_windows(self, since: float = 0.0, until: float = math.inf) -> int:
        return sum(is_tone(w) for w in self.between(since, until))

    def max_tone_gap(self, since: float = 0.0, until: float = math.inf) -> float:
        """The longest time without the tone (between tone windows, and the window's ends) in [since, until].
        The decoder plays silence or concealment when packets stop, so frames alone would show no gap."""
        return longest_gap([w.t for w in self.between(since, until) if is_tone(w)], since, until)

    def loud_windows(self, since: float = 0.0, until: float = math.inf) -> int:
        return sum(w.rms > SILENCE_RMS for w in self.between(since, until))

    def rms(self, since: float = 0.0, until: float = math.inf) -> float:
        windows = self.between(since, until)
        return math.sqrt(sum(w.rms**2 for w in windows) / len(windows)) if windows else 0.0

    def max_rms(self, since: float = 0.0, until: float = math.inf) -> float:
        return max((w.rms for w in self.between(since, until)), default=0.0)

    def dominant_hz(self, since: float = 0.0, until: float = math.inf) -> float | None:
        """The median dominant frequency of the windows louder than silence, None if all were silent."""
        loud = [w.dominant_hz for w in self.between(since, until) if w.rms > SILENCE_RMS]
        return float(np.median(loud)) if loud else None

    def summary(self, since: float = 0.0, until: float = math.inf) -> dict[str, Any]:
        hz = self.dominant_hz(since, until)
        return {
            "track": self.track_sid,
            "from": self.identity,
            "windows": len(self.between(since, until)),
            "tone_windows": self.tone_windows(since, until),
            "dominant_hz": None if hz is None else round(hz, 1),
            "rms": round(self.rms(since, until), 1),
        }


# --- publisher -------------------------------------------------------------------------------------------


class PatternPublisher:
    """Publishes the pattern video and/or the tone to a connected room.

    pub = await PatternPublisher(room).start()   # capture loops run until stop()
    """

    def __init__(
        self,
        room: rtc.Room,
        *,
        width: int = 320,
        height: int = 240,
        fps: int = 20,
        colour_every: int = 10,
        video: bool = True,
        audio: bool = True,
        simulcast: bool = False,
        max_bitrate: int = 2_500_000,  # of the top layer; only with max_framerate (both or neither)
        max_framerate: float | None = None,
        amplitude: int = TONE_AMPLITUDE,  # of the tone; 0 publishes silence
    ) -> None:
        self.room = room
        self.amplitude = amplitude
        self.width, self.height, self.fps, self.colour_every = width, height, fps, colour_every
        self.simulcast = simulcast
        # None: max_framerate = fps. 0: leave it unset, i.e. the SDK's preset (which caps 320x240 at 20 fps).
        self.max_framerate = float(fps) if max_framerate is None else max_framerate
        self.max_bitrate = max_bitrate
        self.video_track: rtc.LocalVideoTrack | None = None
        self.audio_track: rtc.LocalAudioTrack | None = None
        self.video_publication: rtc.LocalTrackPublication | None = None
        self.audio_publication: rtc.LocalTrackPublication | None = None
        self.sent: list[tuple[float, int]] = []  # (time.monotonic(), counter) of every captured video frame
        self.audio_samples_sent = 0
        self._video_source = rtc.VideoSource(width, height) if video else None
        self._audio_source = rtc.AudioSource(SAMPLE_RATE, 1, queue_size_ms=200) if audio else None
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def frames_sent(self) -> int:
        return len(self.sent)

    def counters_sent(self, since: float, until: float) -> set[int]:
        return {counter for t, counter in self.sent if since <= t <= until}

    def video_options(self) -> rtc.TrackPublishOptions:
        options = rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_CAMERA, simulcast=self.simulcast)
        if self.max_framerate > 0:  # video_encoding's two fields are required together
            options.video_encoding.max_framerate = self.max_framerate
            options.video_encoding.max_bitrate = self.max_bitrate
        return options

    async def start(self) -> PatternPublisher:
        """Starts the capture loops, then publishes (video first); on failure stops and re-raises."""
        local = self.room.local_participant
        try:
            if self._video_source is not None:
                self.video_track = rtc.LocalVideoTrack.create_video_track("pattern", self._video_source)
                self._tasks.append(asyncio.create_task(self._video_loop(self._video_source)))
                self.video_publication = await local.publish_track(self.video_track, self.video_options())
            if self._audio_source is not None:
                self.audio_track = rtc.LocalAudioTrack.create_audio_track("tone", self._audio_source)
                self._tasks.append(asyncio.create_task(self._audio_loop(self._audio_source)))
                self.audio_publication = await local.publish_track(
                    self.audio_track, rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)
                )
        except BaseException:
            await self.stop()
            raise
        return self

    async def stop(self) -> None:
        """Stops capturing (the tracks stay published)."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()

    async def _video_loop(self, source: rtc.VideoSource) -> None:
        t0 = time.monotonic()
        index = 0
        while True:
            pixels = render_frame(index, self.width, self.height, self.colour_every)
            source.capture_frame(
                rtc.VideoFrame(self.width, self.height, rtc.VideoBufferType.RGBA, pixels.tobytes())
            )
            self.sent.append((time.monotonic(), index % COUNTER_MODULO))
            index += 1
            await asyncio.sleep(max(0.0, t0 + index / self.fps - time.monotonic()))

    async def _audio_loop(self, source: rtc.AudioSource) -> None:
        t0 = time.monotonic()
        while True:
            frame = rtc.AudioFrame.create(SAMPLE_RATE, 1, AUDIO_FRAME_SAMPLES)
            np.frombuffer(frame.data, np.int16)[:] = tone(
                self.audio_samples_sent, AUDIO_FRAME_SAMPLES, amplitude=self.amplitude
            )
            await source.capture_frame(frame)
            self.audio_samples_sent += AUDIO_FRAME_SAMPLES
            ahead = t0 + self.audio_samples_sent / SAMPLE_RATE - time.monotonic()
            await asyncio.sleep(max(0.0, ahead - 0.05))  # keep ~50 ms queued


# --- receiver --------------------------------------------------------------------------------------------


class MediaReceiver:
    """Decodes and measures every track `room` subscribes to (now and later, across resubscriptions).

    rx = MediaReceiver(room)          # create before or after the subscriptions
    log = await rx.wait_frames(10, identity="alice")
    """

    def __init__(self, room: rtc.Room) -> None:
        self.room = room
        self.videos: dict[str, VideoLog] = {}
        self.audios: dict[str, AudioLog] = {}
        self._streams: dict[str, tuple[asyncio.Task[None], rtc.VideoStream | rtc.AudioStream]] = {}
        self._closing: set[asyncio.Task[None]] = set()
        room.on("track_subscribed", self._on_subscribed)
        room.on("track_unsubscribed", self._on_unsubscribed)
        for participant in room.remote_participants.values():
            for publication in participant.track_publications.values():
                if publication.track is not None:
                    self._on_subscribed(publication.track, publication, participant)

    def _on_subscribed(
        self, track: rtc.Track, publication: rtc.RemoteTrackPublication, participant: rtc.RemoteParticipant
    ) -> None:
        sid = publication.sid
        self._close_stream(sid)
        stream: rtc.VideoStream | rtc.AudioStream
        if track.kind == rtc.TrackKind.KIND_VIDEO:
            video = self.videos.setdefault(sid, VideoLog(sid, participant.identity))
            stream = rtc.VideoStream(track, format=rtc.VideoBufferType.RGBA)
            task = asyncio.create_task(self._read_video(stream, video))
        elif track.kind == rtc.TrackKind.KIND_AUDIO:
            audio = self.audios.setdefault(sid, AudioLog(sid, participant.identity))
            stream = rtc.AudioStream(track, sample_rate=SAMPLE_RATE, num_channels=1)
            task = asyncio.create_task(self._read_audio(stream, audio))
        else:
            return
        self._streams[sid] = (task, stream)

    def _on_unsubscribed(
        self, track: rtc.Track, publication: rtc.RemoteTrackPublication, participant: rtc.RemoteParticipant
    ) -> None:
        self._close_stream(publication.sid)

    def _close_stream(self, sid: str) -> None:
        entry = self._streams.pop(sid, None)
        if entry is not None:
            task, stream = entry
            task.cancel()
            closing = asyncio.create_task(self._aclose(stream))
            self._closing.add(closing)
            closing.add_done_callback(self._closing.discard)

    @staticmethod
    async def _aclose(stream: rtc.VideoStream | rtc.AudioStream) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(stream.aclose(), 5.0)

    @staticmethod
    async def _read_video(stream: rtc.VideoStream, log: VideoLog) -> None:
        async for event in stream:
            pixels = rgba_of(event.frame)
            log.samples.append(
                VideoSample(
                    time.monotonic(), event.frame.width, event.frame.height,
                    classify_colour(pixels), read_counter(pixels),
                )
            )  # fmt: skip

    @staticmethod
    async def _read_audio(stream: rtc.AudioStream, log: AudioLog) -> None:
        async for event in stream:
            frame = event.frame
            samples = np.frombuffer(frame.data, np.int16)[:: frame.num_channels].copy()
            log.feed(samples, time.monotonic())

    async def close(self) -> None:
        for sid in list(self._streams):
            task, stream = self._streams.pop(sid)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await self._aclose(stream)
        if self._closing:
            await asyncio.gather(*self._closing)

    def _one(self, logs: Iterable[VideoLog | AudioLog], kind: str, identity: str | None) -> Any:
        found = [log for log in logs if identity is None or log.identity == identity]
        if len(found) != 1:
            raise AssertionError(
                f"expected one {kind} track{' from ' + identity if identity else ''}, found {len(found)}: "
                f"{self.report()}"
            )
        return found[0]

    def video(self, identity: str | None = None) -> VideoLog:
        """The one video track received (from `identity`); AssertionError when there is not exactly one."""
        log: VideoLog = self._one(self.videos.values(), "video", identity)
        return log

    def audio(self, identity: str | None = None) -> AudioLog:
        log: AudioLog = self._one(self.audios.values(), "audio", identity)
        return log

    def report(self, since: float = 0.0, until: float = math.inf) -> dict[str, Any]:
        return {
            "video": [v.summary(since, until) for v in self.videos.values()],
            "audio": [a.summary(since, until) for a in self.audios.values()],
        }

    async def wait_frames(
        self,
        n: int,
        timeout: float = 15.0,  # noqa: ASYNC109
        identity: str | None = None,
        since: float = 0.0,
        where: Callable[[VideoSample], bool] = lambda s: True,
    ) -> VideoLog:
        """Waits until the video track (from `identity`) has `n` frames since `since` that `where` accepts."""

        def enough() -> bool:
            logs = [v for v in self.videos.values() if identity is None or v.identity == identity]
            return len(logs) == 1 and sum(map(where, logs[0].between(since))) >= n

        try:
            await wait_for(enough, timeout, f"{n} decoded video frames")
        except AssertionError as e:
            raise AssertionError(f"{e}; received: {self.report(since)}") from None
        return self.video(identity)

    async def wait_tone(
        self,
        timeout: float = 15.0,  # noqa: ASYNC109
        identity: str | None = None,
        since: float = 0.0,
        windows: int = 5,
    ) -> AudioLog:
        """Waits for `windows` 100 ms windows of tone after `since` on the audio track (from `identity`)."""

        def enough() -> bool:
            logs = [a for a in self.audios.values() if identity is None or a.identity == identity]
            return len(logs) == 1 and logs[0].tone_windows(since) >= windows

        try:
            await wait_for(enough, timeout, f"{windows} windows of the {TONE_HZ:.0f} Hz tone")
        except AssertionError as e:
            raise AssertionError(f"{e}; received: {self.report(since)}") from None
        return self.audio(identity)


class MediaSession:
    """Publishers and receivers of one test, stopped and closed at its end (see the `media` fixtures)."""

    def __init__(self) -> None:
        self.publishers: list[PatternPublisher] = []
        self.receivers: list[MediaReceiver] = []

    async def publish(self, room: rtc.Room, **options: Any) -> PatternPublisher:
        publisher = PatternPublisher(room, **options)
        self.publishers.append(publisher)
        return await publisher.start()

    def receive(self, room: rtc.Room) -> MediaReceiver:
        receiver = MediaReceiver(room)
        self.receivers.append(receiver)
        return receiver

    async def close(self) -> None:
        for publisher in self.publishers:
            await publisher.stop()
        for receiver in self.receivers:
            await receiver.close()


# --- measuring windows -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Window:
    start: float
    end: float


async def measure(seconds: float) -> Window:
    """A window of `seconds` from now (sleeps through it)."""
    start = time.monotonic()
    await asyncio.sleep(seconds)
    return Window(start, time.monotonic())


class SentFrames(Protocol):
    """What delivered_fraction needs of a publisher (PatternPublisher has it)."""

    def counters_sent(self, since: float, until: float) -> set[int]: ...


def delivered_fraction(publisher: SentFrames, log: VideoLog, window: Window, drain: float = 1.0) -> float:
    """The share of the frames captured during `window` that the receiver decoded (by frame counter)."""
    sent = publisher.counters_sent(window.start, window.end)
    if not sent:
        raise AssertionError(f"the publisher captured no frames in the window {window}")
    got = log.counters(window.start, window.end + drain)
    return len(sent & got) / len(sent)


async def assert_frames_delivered(
    publisher: SentFrames, log: VideoLog, window: Window, min_fraction: float = 0.9, drain: float = 1.0
) -> float:
    """Waits `drain` past the window's end, then asserts >= `min_fraction` of its frames were decoded."""
    await asyncio.sleep(max(0.0, window.end + drain - time.monotonic()))
    fraction = delivered_fraction(publisher, log, window, drain)
    assert fraction >= min_fraction, (
        f"{log.identity}'s track {log.track_sid}: {fraction:.0%} of the "
        f"{len(publisher.counters_sent(window.start, window.end))} frames captured in the "
        f"{window.end - window.start:.1f} s window were decoded (want >= {min_fraction:.0%}); "
        f"{log.summary(window.start, window.end + drain)}"
    )
    return fraction


async def inbound_rtp(room: rtc.Room) -> list[dict[str, Any]]:
    """The subscriber PC's inbound-rtp stats: kind, ssrc, packets, bytes, frames_decoded, frame size."""
    stats = await room.get_rtc_stats()
    rows: list[dict[str, Any]] = []
    for stat in stats.subscriber_stats:
        if stat.WhichOneof("stats") != "inbound_rtp":
            continue
        rtp = stat.inbound_rtp
        rows.append(
            {
                "kind": rtp.stream.kind,
                "ssrc": rtp.stream.ssrc,
                "packets": rtp.received.packets_received,
                "bytes": rtp.inbound.bytes_received,
                "frames_decoded": rtp.inbound.frames_decoded,
                "width": rtp.inbound.frame_width,
                "height": rtp.inbound.frame_height,
            }
        )
    return rows


# --- the server's media stats, through Ray ---------------------------------------------------------------
#
# The shape of MediaWorker.media_stats() these helpers read (actors/media/plane.py, uptrack.py, downtrack.py):
# {
#   "participants": ["PA_...", ...],     # the sids this worker hosts
#   "subscriber_m_lines": {"PA_...": int},  # audio and video m-lines of each one's last subscriber offer
#                                          # (one PC: the recvonly ones of its client's last offer)
#   "tracks": {
#     "TR_...": {                         # an up track: fed by its publisher here, or by the relay
#       "kind": "audio" | "video", "publisher": "PA_...", "muted": bool,
#       "packets_in": int, "digests_in": [hex, ...],  # a digest per RTP payload, first --payload-digests
#       "subscribers": {"PA_sub": {"packets_out": int, "digests_out": [hex, ...], ...}},
#       "relay_out": {"media:<node>/<n>": {"packets": int}},  # ASSUMED (no relay yet): copies per worker
#     }
#   }
# }
# Each of the small functions below reads one of these; adjust them, not the tests, if the names change.


def _head_raylet(dashboard_port: int) -> dict[str, Any]:
    """The head node's raylet, as the Ray dashboard on `dashboard_port` (on 127.0.0.1) describes it."""
    url = f"http://127.0.0.1:{dashboard_port}/nodes?view=summary"
    with urllib.request.urlopen(url, timeout=10) as response:
        nodes = json.load(response)["data"]["summary"]
    heads: list[dict[str, Any]] = [n["raylet"] for n in nodes if n.get("raylet", {}).get("isHeadNode")]
    if not heads:
        raise AssertionError(f"the Ray dashboard on port {dashboard_port} lists no head node")
    return heads[0]


def ray_address(dashboard_port: int) -> str:
    """The GCS address of the Ray cluster whose dashboard listens on `dashboard_port` (on 127.0.0.1).

    ray.init(address="auto") is ambiguous when two test servers (two local Ray clusters) run at once.
    """
    head = _head_raylet(dashboard_port)
    ports = sorted(Path(head["sessionDir"]).glob("gcs_server_port_*"))
    if not ports:
        raise AssertionError(f"no gcs_server_port_* file in {head['sessionDir']}")
    return f"{head['nodeManagerAddress']}:{ports[0].read_text().strip()}"


def ray_metrics_text(dashboard_port: int) -> str:
    """What the head node's Ray metrics agent serves in Prometheus' text format (the dashboard's Metrics
    view reads the same)."""
    port = _head_raylet(dashboard_port)["metricsExportPort"]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text: str = response.read().decode()
    return text


async def media_stats(dashboard_port: int) -> dict[str, dict[str, Any]]:
    """{worker name: its media_stats()} for every MediaWorker of the server with this Ray dashboard port."""
    address = await asyncio.to_thread(ray_address, dashboard_port)
    return await asyncio.to_thread(call_workers, "media_stats", address)


def _tracks(worker_stats: dict[str, Any]) -> dict[str, dict[str, Any]]:
    tracks: dict[str, dict[str, Any]] = worker_stats.get("tracks", {})
    return tracks


def _subscribers(track: dict[str, Any]) -> dict[str, dict[str, Any]]:
    subscribers: dict[str, dict[str, Any]] = track.get("subscribers", {})
    return subscribers


def worker_of(stats: dict[str, dict[str, Any]], participant_sid: str) -> str:
    """The worker hosting `participant_sid`: by its "participants", else where it subscribes to a track."""
    hosts = [name for name, s in stats.items() if participant_sid in s.get("participants", ())]
    if not hosts:
        hosts = [
            name
            for name, s in stats.items()
            if any(participant_sid in _subscribers(t) for t in _tracks(s).values())
        ]
    assert len(hosts) == 1, f"{participant_sid} is hosted by {hosts}; workers: {list(stats)}"
    return hosts[0]


def track_stats(stats: dict[str, dict[str, Any]], worker: str, track_sid: str) -> dict[str, Any]:
    tracks = _tracks(stats[worker])
    assert track_sid in tracks, f"{worker} has no stats for {track_sid}: {sorted(tracks)}"
    return tracks[track_sid]


def ingress_packets(stats: dict[str, dict[str, Any]], worker: str, track_sid: str) -> int:
    return int(track_stats(stats, worker, track_sid)["packets_in"])


def egress_packets(stats: dict[str, dict[str, Any]], track_sid: str, subscriber_sid: str) -> int:
    """Packets of `track_sid` sent to `subscriber_sid` (by whichever worker hosts it; 0 if none)."""
    total = 0
    for worker in stats.values():
        track = _tracks(worker).get(track_sid, {})
        total += int(_subscribers(track).get(subscriber_sid, {}).get("packets_out", 0))
    return total


def subscriber_m_lines(stats: dict[str, dict[str, Any]], participant_sid: str) -> int:
    """The audio and video m-lines of the participant's last subscriber offer (with one PC: those its
    client's last offer has to receive on)."""
    worker = worker_of(stats, participant_sid)
    return int(stats[worker]["subscriber_m_lines"][participant_sid])


def relay_packets(stats: dict[str, dict[str, Any]], worker: str, track_sid: str, to_worker: str) -> int:
    relay = track_stats(stats, worker, track_sid).get("relay_out", {})
    return int(relay.get(to_worker, {}).get("packets", 0))


def payload_mismatch(
    stats: dict[str, dict[str, Any]], worker: str, track_sid: str, subscriber_sid: str
) -> str:
    """'' when every payload `worker` sent `subscriber_sid` for the track is one it received, else why not."""
    track = track_stats(stats, worker, track_sid)
    ingress = set(track["digests_in"])
    egress = _subscribers(track).get(subscriber_sid)
    if egress is None:
        return f"{worker} sent {subscriber_sid} nothing of {track_sid}"
    sent = set(egress["digests_out"])
    if not sent or not ingress:
        return f"{track_sid}: {len(ingress)} ingress and {len(sent)} egress digests on {worker}"
    foreign = sent - ingress
    if foreign:
        return f"{len(foreign)} of {len(sent)} payloads sent to {subscriber_sid} were never received"
    return ""
