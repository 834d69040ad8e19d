"""What a host's participants have for their clients, queued per gateway and fetched by one long-poll.

A gateway holds many sessions on each host; it drains them all with one `poll` call at a time per host
(gateway-host pair), not one per session. One queue per gateway keeps each session's messages in order.
"""

import asyncio
import itertools
import time
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Batch:
    # (the WebSocket's key: its participant's sid, or a resume's; serialized SignalResponse), in order;
    # None as the data: the socket is done with, close it
    messages: list[tuple[str, bytes | None]]
    cursor: int  # pass back to the next poll: everything before it was delivered
    epoch: int  # the queue's; a cursor of another epoch (a queue dropped and made anew) counts from 0


_epochs = itertools.count(1)


@dataclass
class Outbox:
    items: list[tuple[str, bytes | None]] = field(default_factory=list)
    base: int = 0  # cursor value of items[0]
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    last_poll: float = field(default_factory=time.monotonic)
    epoch: int = field(default_factory=lambda: next(_epochs))

    def put(self, sid: str, data: bytes | None) -> None:
        self.items.append((sid, data))
        self.changed.set()

    async def poll(self, epoch: int, cursor: int, wait: float) -> Batch:
        """Messages after `cursor` (which acknowledges those before), waiting up to `wait` s for one."""
        self.last_poll = time.monotonic()
        if epoch != self.epoch:
            cursor = self.base
        done = min(max(cursor - self.base, 0), len(self.items))
        del self.items[:done]
        self.base += done
        if not self.items:
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), wait)
            except TimeoutError:
                pass
            self.last_poll = time.monotonic()
        messages = list(self.items)
        return Batch(messages, self.base + len(messages), self.epoch)


class Outboxes:
    """One Outbox per gateway that has sessions on this host."""

    def __init__(self) -> None:
        self._boxes: dict[str, Outbox] = {}

    def put(self, gateway: str, sid: str, data: bytes | None) -> None:
        self._box(gateway).put(sid, data)

    def expect(self, gateway: str) -> None:
        """A session of `gateway` starts here: from now on, the gateway must poll."""
        self._box(gateway)

    async def poll(self, gateway: str, epoch: int, cursor: int, wait: float) -> Batch:
        return await self._box(gateway).poll(epoch, cursor, wait)

    def silent_since(self, timeout: float) -> list[str]:
        """Gateways that have not polled for `timeout` s (crashed, or cut off); their queues are dropped."""
        now = time.monotonic()
        gone = [g for g, box in self._boxes.items() if now - box.last_poll > timeout]
        for gateway in gone:
            del self._boxes[gateway]
        return gone

    def _box(self, gateway: str) -> Outbox:
        box = self._boxes.get(gateway)
        if box is None:
            box = self._boxes[gateway] = Outbox()
        return box
