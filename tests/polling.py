"""Waiting for a condition: the one polling helper of the unit and interop tests."""

import asyncio
import time
from collections.abc import Callable


async def wait_for(condition: Callable[[], object], timeout: float = 10.0, what: str = "") -> None:  # noqa: ASYNC109
    """Polls `condition` until it is truthy; AssertionError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or condition}")
        await asyncio.sleep(0.02)
