"""Restore the sender's order of calls to an async Ray actor.

Async Ray actors run concurrent calls out of order (hundreds of reorderings in 20k one-way calls, see
docs/DESIGN.md). Callers number their calls from 0 per stream; the receiver hands the items to
one consumer coroutine in that order, holding early arrivals until the gap fills.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")
log = logging.getLogger(__name__)


class SequencedInbox(Generic[T]):
    """Delivers `put(seq, item)` calls to `handler` strictly in `seq` order, one at a time."""

    def __init__(self, handler: Callable[[T], Awaitable[None]], name: str, max_pending: int = 10_000) -> None:
        self._handler = handler
        self._name = name
        self._max_pending = max_pending
        self._next = 0
        self._pending: dict[int, T] = {}
        self._lock = asyncio.Lock()

    @property
    def next_seq(self) -> int:
        return self._next

    async def put(self, seq: int, item: T) -> None:
        """Accept item `seq`; returns once it (and everything before it that arrived) was handled."""
        if seq < self._next or seq in self._pending:
            log.warning("%s: dropping duplicate item %d", self._name, seq)
            return
        if len(self._pending) >= self._max_pending:
            raise OverflowError(f"{self._name}: more than {self._max_pending} items waiting for a gap")
        self._pending[seq] = item
        async with self._lock:
            while self._next in self._pending:
                ready = self._pending.pop(self._next)
                self._next += 1
                try:
                    await self._handler(ready)
                except Exception:
                    log.exception("%s: handler failed on item %d", self._name, self._next - 1)


class Sequencer:
    """The sending side: hands out 0, 1, 2, ... per stream key."""

    def __init__(self) -> None:
        self._counters: dict[str, int] = {}

    def next(self, key: str = "") -> int:
        n = self._counters.get(key, 0)
        self._counters[key] = n + 1
        return n
