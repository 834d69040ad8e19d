import asyncio
import random

import pytest

from actors.inbox import SequencedInbox, Sequencer


async def test_items_are_handled_in_sequence_order() -> None:
    seen: list[int] = []

    async def handle(item: int) -> None:
        await asyncio.sleep(0)
        seen.append(item)

    inbox: SequencedInbox[int] = SequencedInbox(handle, "test")
    order = list(range(200))
    random.Random(7).shuffle(order)
    await asyncio.gather(*(inbox.put(seq, seq) for seq in order))
    assert seen == list(range(200))
    assert inbox.next_seq == 200


async def test_duplicates_are_dropped_and_failures_do_not_block() -> None:
    seen: list[int] = []

    async def handle(item: int) -> None:
        if item == 1:
            raise ValueError("boom")
        seen.append(item)

    inbox: SequencedInbox[int] = SequencedInbox(handle, "test")
    for seq in (0, 0, 1, 2):
        await inbox.put(seq, seq)
    assert seen == [0, 2]


async def test_a_gap_that_never_fills_is_bounded() -> None:
    async def handle(item: int) -> None:
        pass

    inbox: SequencedInbox[int] = SequencedInbox(handle, "test", max_pending=3)
    for seq in (1, 2, 3):
        await inbox.put(seq, seq)
    with pytest.raises(OverflowError):
        await inbox.put(4, 4)


def test_sequencer_counts_per_key() -> None:
    s = Sequencer()
    assert [s.next("a"), s.next("a"), s.next("b"), s.next("a")] == [0, 1, 0, 2]
