"""The one way raysfu runs work nobody awaits: a task held until done, whose failure is logged, never lost."""

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable

from actors.media.ratelog import RateLimitedLog

log = logging.getLogger(__name__)
_ratelog = RateLimitedLog(log)
_spawned: set["asyncio.Future[object]"] = set()

# Failed background tasks of this process, by the kind of work (the worker adds them to its stats).
errors: Counter[str] = Counter()


def spawn(work: Awaitable[object], what: str) -> "asyncio.Future[object]":
    """Run `work` as a task of the running loop, held until done; tasks start in creation order. A failure
    is counted and logged (as `what` failed, rate-limited), never raised."""
    task = asyncio.ensure_future(work)
    _spawned.add(task)

    def done(task: "asyncio.Future[object]") -> None:
        _spawned.discard(task)
        if not task.cancelled() and task.exception() is not None:
            errors["task_errors"] += 1
            _ratelog.warning("task", "%s failed: %r", what, task.exception())

    task.add_done_callback(done)
    return task
