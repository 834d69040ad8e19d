"""Calls that reach a room by name, while an older room of that name may still be closing.

A closing Room actor keeps its name until it exits: at once when nobody was in it, after its sessions' grace
period (actors.room.PARTICIPANT_GRACE) otherwise. Meanwhile it refuses calls with RoomClosedError, or its
actor dies under one. A join or a CreateRoom then waits for the name and gets (or creates) the new room.
"""

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from ray.exceptions import RayActorError

from actors.errors import RoomClosedError

T = TypeVar("T")

CLOSING_WAIT = 10.0  # seconds: longer than a closing room's grace period, plus its exit
RETRY_DELAY = 0.1


async def retry_while_closing(
    name: str, get_or_create: Callable[[], Any], call: Callable[[Any], Awaitable[T]]
) -> T:
    """`call(handle)` on the room `get_or_create()` returns (it blocks: it runs in a thread), again with a
    fresh handle while the room is closing; RoomClosedError when it is still closing after CLOSING_WAIT."""
    deadline = time.monotonic() + CLOSING_WAIT
    while True:
        handle = await asyncio.to_thread(get_or_create)
        try:
            return await call(handle)
        except (RoomClosedError, RayActorError):
            if time.monotonic() > deadline:
                raise RoomClosedError(f"room {name} is closing; try again") from None
        await asyncio.sleep(RETRY_DELAY)
