"""Data packets to other MediaWorkers: one `deliver_data` call per packet per destination worker.

Each destination gets its own bounded queue and sender task, which numbers the calls 0, 1, 2, ... so the
receiver's SequencedInbox can restore their order (async Ray actors run calls out of order). A number is
taken only when the call is actually made, so a packet dropped here leaves no gap. Failures are logged,
never raised into the receive path.
"""

import asyncio
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import ray

from actors.inbox import Sequencer
from actors.media.ratelog import RateLimitedLog
from actors.naming import NAMESPACE

log = logging.getLogger(__name__)

MAX_QUEUED = 1024  # packets waiting for a destination's sender task
MAX_IN_FLIGHT = 256  # unanswered deliver_data calls per destination

# Resolves a MediaWorker actor name to its handle (blocking: it asks the GCS).
Resolver = Callable[[str], Any]


def resolve_worker(name: str) -> Any:
    return ray.get_actor(name, namespace=NAMESPACE)


@dataclass(frozen=True)
class Outgoing:
    room: str
    payload: bytes
    reliable: bool
    dest_sids: tuple[str, ...]


class WorkerLinks:
    def __init__(self, src: str, counters: Counter[str], resolve: Resolver = resolve_worker) -> None:
        self._src = src
        self.counters = counters
        self.resolve = resolve
        self.sequencer = Sequencer()
        self.ratelog = RateLimitedLog(log)
        self._links: dict[str, _Link] = {}

    def send(self, dest: str, item: Outgoing) -> bool:
        """Queue `item` for worker `dest`; False (and counted as dropped) when its queue is full."""
        link = self._links.get(dest)
        if link is None:
            link = self._links[dest] = _Link(self._src, dest, self)
        try:
            link.queue.put_nowait(item)
        except asyncio.QueueFull:
            self.counters["dropped_relay_backlog"] += 1
            self.ratelog.warning(f"full:{dest}", "%s: relay queue to %s full, dropping", self._src, dest)
            return False
        return True


class _Link:
    def __init__(self, src: str, dest: str, links: WorkerLinks) -> None:
        self._src = src
        self._dest = dest
        self._resolve = links.resolve
        self._sequencer = links.sequencer
        self._counters = links.counters
        self._ratelog = links.ratelog
        self.queue: asyncio.Queue[Outgoing] = asyncio.Queue(MAX_QUEUED)
        self._slots = asyncio.Semaphore(MAX_IN_FLIGHT)
        self._handle: Any = None
        self._watchers: set[asyncio.Task[None]] = set()
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"relay-data->{dest}")

    async def _run(self) -> None:
        while True:
            item = await self.queue.get()
            if self._handle is None:
                try:
                    self._handle = await asyncio.to_thread(self._resolve, self._dest)
                except Exception as e:
                    self._counters["dropped_relay_unreachable"] += 1
                    self._ratelog.warning(
                        f"resolve:{self._dest}", "%s: cannot find worker %s: %s", self._src, self._dest, e
                    )
                    continue
            await self._slots.acquire()
            seq = self._sequencer.next(self._dest)
            ref = self._handle.deliver_data.remote(
                self._src, seq, item.room, item.payload, item.reliable, list(item.dest_sids)
            )
            self._counters["relay_calls"] += 1
            watcher = asyncio.get_running_loop().create_task(self._watch(seq, ref))
            self._watchers.add(watcher)
            watcher.add_done_callback(self._watchers.discard)

    async def _watch(self, seq: int, ref: Any) -> None:
        try:
            await ref
        except Exception as e:
            self._counters["relay_failed"] += 1
            self._ratelog.warning(
                f"call:{self._dest}", "%s: deliver_data %d to %s failed: %s", self._src, seq, self._dest, e
            )
        finally:
            self._slots.release()
