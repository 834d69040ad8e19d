"""Subscriber track settings: LiveKit's layer choice (actors/media/downtrack.py) and when settings apply
(actors/track_settings.py)."""

import asyncio

import pytest
from livekit.protocol import rtc

from actors import track_settings
from actors.media.downtrack import HIGH, LOW, MEDIUM, layer_qualities, max_layer, select_layer
from actors.track_settings import TrackSettings

RIDS = ["q", "h", "f"]
SIZES = {"q": (320, 180), "h": (640, 360), "f": (1280, 720)}


@pytest.mark.parametrize(
    ("width", "height", "layer"),
    [
        (1280, 720, "f"),
        (400, 225, "h"),  # 225 x 0.9 = 202.5: the 180 layer is too small, the 360 one does
        (320, 200, "q"),  # 200 x 0.9 = 180
        (320, 201, "h"),
        (640, 400, "h"),
        (641, 401, "f"),
        (4000, 3000, "f"),  # larger than any: the largest
        (1, 1, "q"),
        (360, 640, "f"),  # portrait asked of a landscape track: heights compared, as LiveKit does
    ],
)
def test_dimensions_pick_the_smallest_layer_that_is_big_enough(width: int, height: int, layer: str) -> None:
    assert max_layer(RIDS, LOW, width, height, SIZES) == layer  # the quality is not used with a width


def test_quality_picks_the_highest_layer_at_or_below_it() -> None:
    assert [max_layer(RIDS, q, 0, 0, SIZES) for q in (LOW, MEDIUM, HIGH)] == ["q", "h", "f"]
    assert max_layer(["q", "h"], HIGH, 0, 0, {}) == "h"
    assert max_layer(["h", "f"], LOW, 0, 0, {}) == "h"  # none at or below: the lowest
    assert max_layer(RIDS, MEDIUM, 320, 180, {}) == "f"  # a size without known layer sizes: HIGH
    assert layer_qualities(["f", "q", "h"]) == {"q": LOW, "h": MEDIUM, "f": HIGH}


def test_the_forwarded_layer_is_the_best_active_one_up_to_the_ceiling() -> None:
    assert select_layer(RIDS, RIDS, "h") == "h"
    assert select_layer(RIDS, ["q", "f"], "h") == "q"
    assert select_layer(RIDS, ["f"], "h") == "f"  # nothing at or below: the lowest active
    assert select_layer(RIDS, [], "f") is None


def settings(**fields: object) -> rtc.UpdateTrackSettings:
    return rtc.UpdateTrackSettings(**fields)  # type: ignore[arg-type]


async def test_settings_apply_when_bound_debounced_except_when_enabling(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(track_settings, "DEBOUNCE", 0.05)
    applied: list[tuple[str, bool, int]] = []

    async def apply(track_sid: str, s: rtc.UpdateTrackSettings) -> None:
        applied.append((track_sid, s.disabled, s.width))

    ts = TrackSettings(apply, "test")
    ts.update("TR_a", settings(disabled=True))
    await asyncio.sleep(0.1)
    assert applied == []  # not subscribed yet: kept
    await ts.bind("TR_a")
    assert applied == [("TR_a", True, 0)]
    ts.update("TR_a", settings(disabled=False, width=320))  # enabling again: at once
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert applied[-1] == ("TR_a", False, 320)
    ts.update("TR_a", settings(width=640))
    ts.update("TR_a", settings(width=960))
    await asyncio.sleep(0.01)
    assert len(applied) == 2  # debounced
    await asyncio.sleep(0.1)
    assert applied[2:] == [("TR_a", False, 960)]  # only the last one
    ts.update("TR_a", settings(width=960))
    await asyncio.sleep(0.1)
    assert len(applied) == 3  # unchanged: nothing applied
    await ts.bind("TR_b")  # no settings sent: the defaults (HIGH)
    assert applied[-1] == ("TR_b", False, 0)
    ts.unbind("TR_a")
    ts.update("TR_a", settings(width=100))
    await asyncio.sleep(0.1)
    assert len(applied) == 4
    ts.close()


def test_settings_for_tracks_never_subscribed_are_bounded() -> None:
    async def apply(track_sid: str, s: rtc.UpdateTrackSettings) -> None:
        raise AssertionError("nothing is bound")

    ts = TrackSettings(apply, "test")
    for i in range(track_settings.MAX_UNBOUND + 10):
        ts.update(f"TR_{i}", settings(disabled=True))
    assert len(ts._latest) == track_settings.MAX_UNBOUND
    assert "TR_0" not in ts._latest and f"TR_{track_settings.MAX_UNBOUND + 9}" in ts._latest
