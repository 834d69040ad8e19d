import logging
import pickle

import pytest
from livekit.protocol import models, rtc
from ray import cloudpickle

from actors import ids, limits
from actors.events import ParticipantsChanged
from actors.media import ratelog


def test_sids_have_livekit_shape() -> None:
    for make, prefix in ((ids.room_sid, "RM_"), (ids.participant_sid, "PA_"), (ids.track_sid, "TR_")):
        sid = make()
        assert sid.startswith(prefix) and len(sid) == 15
        assert set(sid[3:]) <= set(ids.BASE57)
    assert len({ids.track_sid() for _ in range(1000)}) == 1000


def test_participant_field_limits() -> None:
    assert limits.check_participant_fields("n" * 256, "m" * limits.MAX_METADATA, {"k": "v"}) is None
    assert "name" in (limits.check_participant_fields(name="n" * 257) or "")
    assert "metadata" in (
        limits.check_participant_fields(metadata="é" * (limits.MAX_METADATA // 2 + 1)) or ""
    )
    assert "attributes" in (
        limits.check_participant_fields(attributes={"k": "v" * limits.MAX_ATTRIBUTES}) or ""
    )


def test_livekit_messages_cross_ray_pickling() -> None:
    info = models.ParticipantInfo(
        sid="PA_x", identity="a", permission=models.ParticipantPermission(can_publish=True)
    )
    info.tracks.add(sid="TR_y", type=models.TrackType.VIDEO)
    event = ParticipantsChanged((info,))
    for dumps, loads in ((cloudpickle.dumps, cloudpickle.loads), (pickle.dumps, pickle.loads)):
        back = loads(dumps(event))
        assert back == event and back.participants[0].tracks[0].sid == "TR_y"
    nested = rtc.LeaveRequest.Action.Value("DISCONNECT")
    assert loads(dumps(rtc.SignalResponse(leave=rtc.LeaveRequest(action=nested)))).leave.action == nested


def test_rate_limit_allows_a_burst_then_the_rate(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [100.0]
    monkeypatch.setattr(limits.time, "monotonic", lambda: now[0])
    rate = limits.RateLimit(10)  # a burst of RATE_BURST seconds' worth: 20
    assert sum(rate.take() for _ in range(30)) == 10 * limits.RATE_BURST
    now[0] += 0.5
    assert sum(rate.take() for _ in range(30)) == 5
    assert not rate.take(2)  # nothing left: an amount that does not fit is not taken
    now[0] += 0.2
    assert rate.take(2)
    assert all(limits.RateLimit(0).take(10**9) for _ in range(3))  # 0: no limit


def test_rate_limited_log_says_each_cause_once_per_interval(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    now = [0.0]
    monkeypatch.setattr(ratelog.time, "monotonic", lambda: now[0])
    out = ratelog.RateLimitedLog(logging.getLogger("test.ratelog"), interval=10)
    with caplog.at_level(logging.INFO, "test.ratelog"):
        for i in range(50):
            out.warning("garbage", "bad frame %d", i)
            out.info("race", "left during its offer")
        now[0] += 10
        out.warning("garbage", "bad frame %d", 99)
    lines = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert lines == [
        (logging.WARNING, "bad frame 0"),
        (logging.INFO, "left during its offer"),
        (logging.WARNING, "bad frame 99 (49 similar suppressed)"),
    ]
