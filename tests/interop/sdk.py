"""Helpers for tests that drive the real LiveKit SDKs against a running raysfu server."""

from collections.abc import Callable
from typing import Any, Protocol

from livekit import rtc

from bench.server import Server as Server  # the `server` fixture's type, for the tests' annotations
from tests.polling import wait_for as wait_for  # the interop tests import it from here with the rest


class MintToken(Protocol):
    """The `token` fixture: a signed join token for `identity` in `room`; grants are VideoGrants fields."""

    def __call__(
        self,
        identity: str,
        room: str,
        *,
        name: str | None = None,
        metadata: str | None = None,
        attributes: dict[str, str] | None = None,
        **grants: Any,
    ) -> str: ...


class Connect(Protocol):
    """The `connect` fixture: an rtc.Room connected to the server; disconnected at teardown.
    `single_peer_connection`: the SDK's choice between /rtc/v1 (its default) and /rtc (False)."""

    async def __call__(
        self,
        identity: str,
        room: str,
        *,
        name: str | None = None,
        metadata: str | None = None,
        attributes: dict[str, str] | None = None,
        auto_subscribe: bool = True,
        single_peer_connection: bool | None = None,
        dynacast: bool = False,
        **grants: Any,
    ) -> rtc.Room: ...


class Events:
    """Records, in order, what an SDK emitter (rtc.Room, a participant...) emits for the named events.

    events = Events(room, "participant_connected", "data_received")
    packet, = await events.wait("data_received", lambda p: p.topic == "chat")
    """

    def __init__(self, emitter: rtc.EventEmitter[Any], *names: str) -> None:
        self.seen: list[tuple[str, tuple[Any, ...]]] = []
        for name in names:
            emitter.on(name, self._recorder(name))

    def _recorder(self, name: str) -> Callable[..., None]:
        def record(*args: Any) -> None:
            self.seen.append((name, args))

        return record

    def names(self) -> list[str]:
        return [name for name, _ in self.seen]

    def args(self, name: str) -> list[tuple[Any, ...]]:
        return [args for seen, args in self.seen if seen == name]

    async def wait(
        self,
        name: str,
        where: Callable[..., object] = lambda *args: True,
        timeout: float = 10.0,  # noqa: ASYNC109
    ) -> tuple[Any, ...]:
        """The arguments of the first `name` event (already seen or still to come) that `where` accepts."""

        def first() -> tuple[Any, ...] | None:
            return next((args for args in self.args(name) if where(*args)), None)

        await wait_for(lambda: first() is not None, timeout, f"event {name!r}; seen so far: {self.names()}")
        found = first()
        assert found is not None
        return found
