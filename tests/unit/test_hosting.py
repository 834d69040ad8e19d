"""The hosting of logical actors in one process: messages, unknown targets, and per-gateway outboxes."""

import asyncio

import pytest

from actors import hosting
from actors.errors import ActorGone
from actors.hosting import ActorRef, Host
from actors.outbox import Outboxes


class Counter:
    def __init__(self) -> None:
        self.seen: list[int] = []

    async def add(self, n: int) -> int:
        self.seen.append(n)
        return len(self.seen)

    async def _secret(self) -> None:
        raise AssertionError("private methods are not messages")


@pytest.fixture
def host() -> Host:
    return Host("media:test/0")


async def test_a_message_on_the_same_host_is_a_local_call_in_order(host: Host) -> None:
    counter = Counter()
    host.add("C_1", counter)
    ref = ActorRef(host.name, "C_1", "counter:1")
    for n in range(5):
        ref.tell("add", n)
    assert await ref.call("add", 5) == 6
    assert counter.seen == [0, 1, 2, 3, 4, 5]


async def test_tell_many_reaches_each_local_actor_in_order(host: Host) -> None:
    a, b = Counter(), Counter()
    host.add("C_a", a)
    host.add("C_b", b)
    refs = [ActorRef(host.name, "C_a", "counter:a"), ActorRef(host.name, "C_b", "counter:b")]
    for n in range(3):
        hosting.tell_many([(ref, (n,)) for ref in refs], "add", "test.broadcast")
    await refs[0].call("add", 3)
    await refs[1].call("add", 3)
    assert a.seen == b.seen == [0, 1, 2, 3]


async def test_unknown_actor_and_private_method_are_actor_gone(host: Host) -> None:
    host.add("C_1", Counter())
    with pytest.raises(ActorGone):
        await ActorRef(host.name, "C_2", "counter:2").call("add", 1)
    with pytest.raises(ActorGone):
        await ActorRef(host.name, "C_1", "counter:1").call("_secret")
    host.remove("C_1")
    with pytest.raises(ActorGone):
        await ActorRef(host.name, "C_1", "counter:1").call("add", 1)


async def test_outbox_keeps_order_and_forgets_what_was_acknowledged() -> None:
    boxes = Outboxes()
    boxes.put("g", "PA_a", b"1")
    boxes.put("g", "PA_b", b"2")
    first = await boxes.poll("g", 0, 0, 0.1)
    assert first.messages == [("PA_a", b"1"), ("PA_b", b"2")]
    boxes.put("g", "PA_a", None)
    again = await boxes.poll("g", first.epoch, first.cursor, 0.1)
    assert again.messages == [("PA_a", None)]
    waiting = asyncio.ensure_future(boxes.poll("g", again.epoch, again.cursor, 5))
    await asyncio.sleep(0.05)
    boxes.put("g", "PA_b", b"3")
    assert (await waiting).messages == [("PA_b", b"3")]


async def test_a_poll_with_a_stale_epoch_gets_everything_queued() -> None:
    boxes = Outboxes()
    boxes.put("g", "PA_a", b"1")
    assert (await boxes.poll("g", 12345, 99, 0.1)).messages == [("PA_a", b"1")]


async def test_a_gateway_that_stops_polling_is_reported_once() -> None:
    boxes = Outboxes()
    boxes.expect("g1")
    boxes.put("g2", "PA_a", b"1")
    await asyncio.sleep(0.05)
    await boxes.poll("g2", 0, 0, 0)
    assert boxes.silent_since(0.04) == ["g1"]
    assert boxes.silent_since(0.04) == []


@pytest.mark.parametrize(
    ("task", "name"),
    [
        ("participant:my.room/ali:ce.signal", "participant.signal"),
        ("room:a.b.join", "room.join"),
        ("track:r/TR_x.command", "track.command"),
        ("media:node/0.load", "media.load"),
        ("rooms.open", "rooms.open"),
        ("hold", "hold"),
    ],
)
def test_ray_task_names_name_the_kind_not_the_instance(task: str, name: str) -> None:
    """Ray keeps a metric per task name forever: a name per room or participant would grow every process."""
    assert hosting.ray_task_name(task) == name
