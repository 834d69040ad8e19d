"""The interop media tools' analysis (tests/interop/media.py) on synthesised frames and audio: no network."""

import math

import numpy as np
import pytest
from livekit import rtc

from tests.interop.media import (
    AUDIO_WINDOW_SAMPLES,
    COUNTER_MODULO,
    SAMPLE_RATE,
    SILENCE_RMS,
    TONE_AMPLITUDE,
    AudioLog,
    AudioWindow,
    Rgba,
    VideoLog,
    VideoSample,
    Window,
    classify_colour,
    delivered_fraction,
    dominant_frequency,
    is_tone,
    pattern_colour,
    read_counter,
    render_frame,
    rgba_of,
    rms,
    tone,
)

SIZES = [(320, 240), (640, 360), (1280, 720), (322, 181), (160, 90)]


def degrade(frame: Rgba, factor: int, noise: float, seed: int = 0) -> Rgba:
    """Downscale by block averaging, then add Gaussian noise: worse than VP8 at a sane bitrate."""
    h, w = frame.shape[0] // factor * factor, frame.shape[1] // factor * factor
    small = frame[:h, :w].reshape(h // factor, factor, w // factor, factor, 4).mean(axis=(1, 3))
    noisy = small + np.random.default_rng(seed).normal(0, noise, small.shape)
    degraded: Rgba = np.clip(noisy, 0, 255).astype(np.uint8)
    return degraded


@pytest.mark.parametrize(("width", "height"), SIZES)
def test_pattern_round_trips(width: int, height: int) -> None:
    for index in [0, 1, 9, 10, 25, 1234, COUNTER_MODULO - 1, COUNTER_MODULO + 7]:
        frame = render_frame(index, width, height, colour_every=10)
        assert frame.shape == (height, width, 4)
        assert classify_colour(frame) == pattern_colour(index, 10)
        assert read_counter(frame) == index % COUNTER_MODULO


def test_colour_cycle() -> None:
    assert [pattern_colour(i, 2) for i in range(7)] == ["red", "red", "green", "green", "blue", "blue", "red"]


@pytest.mark.parametrize("factor", [1, 2, 4])
def test_pattern_survives_downscaling_and_noise(factor: int) -> None:
    for index in range(0, 600, 37):
        frame = degrade(render_frame(index, 1280, 720, colour_every=10), factor, noise=25.0, seed=index)
        assert classify_colour(frame) == pattern_colour(index, 10)
        assert read_counter(frame) == index


def test_pattern_survives_the_sdks_yuv_conversion() -> None:
    """Through rtc.VideoFrame: RGBA -> I420 (what the encoder gets) -> RGBA (what VideoStream gives)."""
    for index in [3, 17, 2222]:
        pixels = render_frame(index, 320, 240, colour_every=10)
        frame = rtc.VideoFrame(320, 240, rtc.VideoBufferType.RGBA, pixels.tobytes())
        i420 = frame.convert(rtc.VideoBufferType.I420)
        back = rgba_of(i420)
        assert back.shape == (240, 320, 4)
        assert classify_colour(back) == pattern_colour(index, 10)
        assert read_counter(back) == index


def test_black_frame_has_no_counter() -> None:
    """A muted libwebrtc video track sends black frames: they must not pass for pattern frames."""
    black = np.zeros((240, 320, 4), np.uint8)
    assert classify_colour(black) == "black"
    assert read_counter(black) is None


def test_unreadable_frames_are_rejected() -> None:
    grey = np.full((240, 320, 4), 128, np.uint8)
    assert classify_colour(grey) is None
    assert read_counter(grey) is None
    white = np.full((240, 320, 4), 255, np.uint8)
    assert classify_colour(white) == "white"
    assert read_counter(white) is None  # the last sync cell must be black
    smeared = render_frame(5, 320, 240, colour_every=10)
    smeared[200:, 40:80, :3] = 128  # one cell neither black nor white
    assert read_counter(smeared) is None


def test_wrong_colour_is_not_the_pattern_colour() -> None:
    frame = render_frame(0, 320, 240, colour_every=10)  # red
    frame[:180, :, :3] = (255, 255, 0)  # yellow is no reference colour
    assert classify_colour(frame) is None
    frame[:180, :, :3] = (0, 0, 250)
    assert classify_colour(frame) == "blue"
    assert classify_colour(frame) != pattern_colour(0, 10)


def test_tone_is_phase_continuous_and_measured() -> None:
    assert np.array_equal(np.concatenate([tone(0, 480), tone(480, 480)]), tone(0, 960))
    samples = tone(12345, AUDIO_WINDOW_SAMPLES)
    assert abs(dominant_frequency(samples) - 440.0) <= 2.5
    assert rms(samples) == pytest.approx(TONE_AMPLITUDE / math.sqrt(2), rel=0.01)
    assert is_tone(AudioWindow(0.0, rms(samples), dominant_frequency(samples)))


def test_silence_wrong_pitch_and_noise_are_not_the_tone() -> None:
    silence = np.zeros(AUDIO_WINDOW_SAMPLES, np.int16)
    assert rms(silence) == 0.0
    assert not is_tone(AudioWindow(0.0, rms(silence), dominant_frequency(silence)))
    high = tone(0, AUDIO_WINDOW_SAMPLES, hz=1000.0)
    assert abs(dominant_frequency(high) - 1000.0) <= 2.5
    assert not is_tone(AudioWindow(0.0, rms(high), dominant_frequency(high)))
    near = tone(0, AUDIO_WINDOW_SAMPLES, hz=460.0)
    assert not is_tone(AudioWindow(0.0, rms(near), dominant_frequency(near)))
    quiet = tone(0, AUDIO_WINDOW_SAMPLES, amplitude=200)
    assert rms(quiet) < SILENCE_RMS
    assert not is_tone(AudioWindow(0.0, rms(quiet), dominant_frequency(quiet)))
    rng = np.random.default_rng(7)
    noise = rng.normal(0, 3000, AUDIO_WINDOW_SAMPLES).astype(np.int16)
    assert not is_tone(AudioWindow(0.0, rms(noise), dominant_frequency(noise)))


def test_audio_log_windows() -> None:
    log = AudioLog("TR_a", "alice")
    frame = SAMPLE_RATE // 100
    for i in range(20):  # 200 ms of tone, then 200 ms of silence, in 10 ms frames
        log.feed(tone(i * frame, frame), t=1.0 + i * 0.01)
    for i in range(20):
        log.feed(np.zeros(frame, np.int16), t=1.2 + i * 0.01)
    assert len(log.windows) == 4
    assert log.tone_windows() == 2
    assert log.loud_windows(since=1.2) == 0
    assert log.max_rms(since=1.2) == 0.0
    hz = log.dominant_hz(until=1.2)
    assert hz is not None and abs(hz - 440.0) <= 2.5
    assert log.dominant_hz(since=1.2) is None
    assert log.rms() == pytest.approx(TONE_AMPLITUDE / 2, rel=0.02)  # half the windows silent


def test_video_log_measures() -> None:
    log = VideoLog("TR_v", "alice")
    times = [1.0, 1.05, 1.1, 1.5, 1.55]
    for i, t in enumerate(times):
        log.samples.append(VideoSample(t, 320, 240, pattern_colour(i * 10, 10), i))
    assert log.frames() == 5
    assert log.colours_seen() == {"red", "green", "blue"}
    assert log.max_gap() == pytest.approx(0.4)
    assert log.max_gap(since=1.5, until=2.0) == pytest.approx(0.45)  # silence to the window's end counts
    assert log.counters(since=1.05, until=1.5) == {1, 2, 3}
    assert log.sizes() == {(320, 240)}


class _Sent:
    def __init__(self, sent: list[tuple[float, int]]) -> None:
        self.sent = sent

    def counters_sent(self, since: float, until: float) -> set[int]:
        return {c for t, c in self.sent if since <= t <= until}


def test_delivered_fraction() -> None:
    publisher = _Sent([(10.0 + i / 20, i) for i in range(40)])  # 2 s at 20 fps
    log = VideoLog("TR_v", "alice")
    for i in range(40):
        if i % 10 != 3:  # 4 of 40 lost
            log.samples.append(VideoSample(10.1 + i / 20, 320, 240, "red", i))
    log.samples.append(VideoSample(10.5, 320, 240, "black", None))  # unreadable frames do not count
    window = Window(10.0, 11.95)
    assert delivered_fraction(publisher, log, window) == pytest.approx(36 / 40)
    log.samples = [s for s in log.samples if s.counter is None or s.counter < 30]
    assert delivered_fraction(publisher, log, window) < 0.9
    with pytest.raises(AssertionError, match="captured no frames"):
        delivered_fraction(publisher, log, Window(20.0, 21.0))
