"""Calls that reach a room by name, while an older room of that name may still be closing.

A closing Room gives its name back to the registry (actors.registry) as it starts closing, and leaves its
host once it has closed; until then it refuses calls with RoomClosedError, and after that they find it gone
(ActorGone). A join or a CreateRoom that meets either asks the registry again, which opens a new room.
"""

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from actors.errors import ActorGone, RoomClosedError

T = TypeVar("T")

CLOSING_WAIT = 10.0  # seconds: longer than a closing room takes to remove its participants
RETRY_DELAY = 0.1


async def retry_while_closing(
    name: str, get_or_create: Callable[[], Awaitable[Any]], call: Callable[[Any], Awaitable[T]]
) -> T:
    """`call(ref)` on the room `get_or_create()` returns, again with a fresh one while the room is
    closing; RoomClosedError when it is still closing after CLOSING_WAIT."""
    deadline = time.monotonic() + CLOSING_WAIT
    while True:
        handle = await get_or_create()
        try:
            return await call(handle)
        except (RoomClosedError, ActorGone):
            if time.monotonic() > deadline:
                raise RoomClosedError(f"room {name} is closing; try again") from None
        await asyncio.sleep(RETRY_DELAY)
