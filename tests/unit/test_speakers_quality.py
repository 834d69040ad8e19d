"""The speaking level (actors/media/audiolevel.py) and connection quality score (actors/media/quality.py) on
LiveKit's numbers."""

import pytest
from livekit.protocol import models

from actors.media import audiolevel, quality
from actors.media.audiolevel import AudioLevel

FRAME = 960  # 20 ms of Opus at 48 kHz, in RTP timestamp units


def feed(meter: AudioLevel, levels: list[int], start: float = 0.0, ts: int = 0) -> tuple[float, int]:
    """One packet per 20 ms at each level; returns the time and timestamp after the last."""
    now = start
    for level in levels:
        meter.observe(level, ts, now)
        now += 0.02
        ts += FRAME
    return now, ts


def test_a_loud_track_is_active_and_smoothed_towards_its_level() -> None:
    meter = AudioLevel(48000)
    now, ts = feed(meter, [10] * 21)  # one 400 ms window (the first packet has no duration)
    level, active = meter.level(now)
    assert active and level == pytest.approx(audiolevel.linear(10) * 2 / 3)
    now, ts = feed(meter, [10] * 20, now, ts)
    level, active = meter.level(now)
    assert active and level == pytest.approx(audiolevel.linear(10) * 8 / 9)
    assert audiolevel.quantize(level) == 0.375


def test_silence_or_too_little_speech_is_not_active() -> None:
    meter = AudioLevel(48000)
    now, _ = feed(meter, [127] * 41)
    assert meter.level(now) == (0.0, False)
    meter = AudioLevel(48000)
    now, _ = feed(meter, ([10] * 7 + [127] * 13) * 2 + [127])  # 140 ms of 400: under 40 %
    assert meter.level(now) == (0.0, False)
    meter = AudioLevel(48000)
    now, _ = feed(meter, [60] * 41)  # quieter than -35 dBov
    assert meter.level(now) == (0.0, False)


def test_a_speaker_without_packets_for_two_windows_is_reset() -> None:
    meter = AudioLevel(48000)
    now, _ = feed(meter, [10] * 41)
    assert meter.level(now)[1]
    assert meter.level(now + 0.75)[1]  # the last packet came 20 ms before `now`
    assert meter.level(now + 0.8) == (0.0, False)


def test_loss_scores_by_codec_and_smooths_falls_faster_than_rises() -> None:
    opus_fec = quality.Scorer(quality.loss_weight("audio/opus", {"useinbandfec": 1, "minptime": 10}))
    opus_fec.update(250, 0)
    assert quality.quality_of(opus_fec.score) == models.ConnectionQuality.EXCELLENT
    opus_fec.update(250, 38)  # 15 %: 100 - 15.2 * 5.33 = 19; 0.8 * 19 + 0.2 * 100
    assert opus_fec.score == pytest.approx(0.8 * (100 - 15.2 * 8 / 1.5) + 20)
    assert quality.quality_of(opus_fec.score) == models.ConnectionQuality.POOR
    opus_fec.update(250, 0)  # rising: 0.4 of the way
    assert opus_fec.score == pytest.approx(0.4 * 100 + 0.6 * (0.8 * (100 - 15.2 * 8 / 1.5) + 20))
    video = quality.Scorer(quality.loss_weight("video/VP8", {}))
    for _ in range(5):
        video.update(1000, 500)
    assert video.score == quality.MIN_SCORE  # never below 30 while packets arrive: POOR, not LOST
    video.update(0, 0)
    assert video.score == quality.MIN_SCORE  # no packets: unchanged
    video.update(0, 0, muted=True)
    assert video.score == quality.MAX_SCORE


def test_totals_score_the_window_since_the_previous_ones() -> None:
    scorer = quality.Scorer(quality.loss_weight("audio/opus", {}))
    scorer.update_totals(1000, 200)  # the baseline: nothing scored yet
    assert scorer.score == quality.MAX_SCORE
    scorer.update_totals(1250, 210)  # 10 of 250 lost in this window: 100 - 4 * 8 = 68
    assert scorer.score == pytest.approx(0.8 * 68 + 0.2 * 100)


def test_ratings_and_mos() -> None:
    assert quality.rating(None) == (models.ConnectionQuality.EXCELLENT, 4.5)
    assert quality.rating(100.0) == (models.ConnectionQuality.EXCELLENT, 4.5)
    assert quality.rating(50.0)[0] == models.ConnectionQuality.GOOD
    assert quality.rating(30.0)[0] == models.ConnectionQuality.POOR
    assert quality.rating(20.0)[0] == models.ConnectionQuality.LOST
    assert quality.mos(0.0) == 1.0 and 1.0 < quality.mos(50.0) < 4.5


def test_a_window_without_the_packets_that_were_due_is_poor_or_lost() -> None:
    scorer = quality.Scorer(quality.loss_weight("audio/opus", {}))
    scorer.update_totals(0, 0)
    scorer.update_totals(0, 0)  # nothing came yet: no verdict
    assert scorer.score == quality.MAX_SCORE
    scorer.update_totals(250, 0)
    scorer.update_totals(250, 0, expecting=False)  # nothing was sent: unchanged
    assert scorer.score == quality.MAX_SCORE
    scorer.update_totals(250, 0)
    assert quality.quality_of(scorer.score) == models.ConnectionQuality.POOR
    scorer.update_totals(250, 0, rtcp_stale=True)
    assert quality.quality_of(scorer.score) == models.ConnectionQuality.LOST
    scorer.update_totals(250, 0, muted=True)
    assert scorer.score == quality.MAX_SCORE
