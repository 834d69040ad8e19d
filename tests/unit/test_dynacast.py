"""Dynacast (actors/dynacast.py): the highest quality any subscriber needs, upgrades at once, downgrades
after the pause delay, a first update in any case."""

import asyncio

import pytest

from actors import dynacast
from actors.dynacast import HIGH, LOW, OFF, Dynacast, subscribed_qualities

MEDIUM = 1


@pytest.fixture(autouse=True)
def short_delays(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dynacast, "PAUSE_DELAY", 0.2)
    monkeypatch.setattr(dynacast, "INITIAL_WAIT", 0.3)


async def test_upgrades_at_once_and_downgrades_after_the_pause_delay() -> None:
    told: list[int] = []
    d = Dynacast(told.append)
    d.set("PA_a", HIGH)
    assert told == [HIGH]  # the first news: at once
    d.set("PA_b", LOW)
    d.set("PA_a", LOW)
    assert told == [HIGH]
    await asyncio.sleep(0.1)
    d.set("PA_b", OFF)  # a later downgrade does not restart the delay
    await asyncio.sleep(0.15)
    assert told == [HIGH, LOW]
    d.set("PA_b", MEDIUM)
    assert told == [HIGH, LOW, MEDIUM]
    d.set("PA_b", LOW)
    d.set("PA_b", MEDIUM)  # back to what the publisher was told: nothing to say
    await asyncio.sleep(0.3)
    assert told == [HIGH, LOW, MEDIUM]
    d.remove("PA_a")
    d.remove("PA_b")
    await asyncio.sleep(0.3)
    assert told == [HIGH, LOW, MEDIUM, OFF]  # nobody needs it
    d.close()


async def test_a_track_nobody_subscribes_to_is_told_so_after_the_initial_wait() -> None:
    told: list[int] = []
    d = Dynacast(told.append)
    await asyncio.sleep(0.2)
    assert told == []
    await asyncio.sleep(0.2)
    assert told == [OFF]
    d.close()


async def test_closed_tells_nothing() -> None:
    told: list[int] = []
    d = Dynacast(told.append)
    d.close()
    await asyncio.sleep(0.4)
    assert told == []


def test_the_layers_up_to_the_quality_are_enabled() -> None:
    assert [q.enabled for q in subscribed_qualities(MEDIUM)] == [True, True, False]
    assert [q.enabled for q in subscribed_qualities(OFF)] == [False, False, False]
    assert [q.quality for q in subscribed_qualities(HIGH)] == [LOW, MEDIUM, HIGH]
