"""Logical actors hosted many per process: the addresses they are reached by, and the host that runs them.

Ray gives every Ray actor its own process (~40-100 MB, ~8 ms of CPU per second idle, ~1 s to start), so
rooms, participants and track forwarders are not Ray actors: they are objects hosted by the MediaWorkers
(a fixed set of Ray actors, one per core per node). Each keeps its own state and changes only by handling
messages; where order matters it sequences them itself (a SequencedInbox), as a Ray actor would have to.

A message to an actor is a call of one of its public coroutine methods, through its `ActorRef`:
- on the same host, an enqueue on the host's event loop (a task), no Ray call;
- on another host, one Ray call to that host's `deliver`, named after the kind of target and the method
  (`participant.<method>`: see `ray_task_name`), so the Ray dashboard's Tasks view and
  `ray.util.state.list_tasks()` show rooms, participants and tracks at work.

A host's death takes all its actors with it. Hosts watch the hosts their actors talk to (one pending call
each, `hold`, that fails when the host dies) and tell their own actors (`worker_lost`).
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import ray
from ray.actor import ActorHandle
from ray.exceptions import RayActorError

from actors import logs
from actors.errors import ActorGone
from actors.naming import NAMESPACE
from actors.tasks import spawn

log = logging.getLogger(__name__)

# The host running in this process (a MediaWorker), or None (a gateway, a driver).
_local: "Host | None" = None
_handles: dict[str, ActorHandle[Any]] = {}


def worker_handle(name: str) -> ActorHandle[Any]:
    """The Ray handle of a named host (cached: the lookup is a blocking GCS request)."""
    handle = _handles.get(name)
    if handle is None:
        handle = ray.get_actor(name, namespace=NAMESPACE)
        _handles[name] = handle
    return handle


def forget_handle(name: str) -> None:
    _handles.pop(name, None)


def known_handle(name: str) -> ActorHandle[Any] | None:
    """The handle calls to the named host use now, if it was looked up."""
    return _handles.get(name)


def remember_handle(name: str, handle: ActorHandle[Any]) -> None:
    """Use `handle` for the named host from now on (one not found by name: see actors.registry)."""
    _handles[name] = handle


@dataclass(frozen=True)
class ActorRef:
    """Where a hosted actor lives: its host (a MediaWorker's actor name) and its address there."""

    host: str
    address: str  # unique on its host: the actor's sid
    label: str  # `room:<room>`, `participant:<room>/<identity>`, `track:<room>/<TR_sid>`

    def call(self, method: str, *args: Any, **kwargs: Any) -> Awaitable[Any]:
        """Send `method(*args, **kwargs)`; await the result for its answer. ActorGone if the actor (or its
        host) is gone."""
        host = _local
        if host is not None and host.name == self.host:
            return asyncio.ensure_future(host.deliver(self.address, method, args, kwargs))
        return call_worker(
            self.host, "deliver", self.address, method, args, kwargs, task=f"{self.label}.{method}"
        )

    def tell(self, method: str, *args: Any) -> None:
        """Send `method(*args)` without waiting; a failure is logged (rate-limited), not raised."""
        spawn(self.call(method, *args), f"{self.label}.{method}")

    def __str__(self) -> str:
        return self.label


def tell_many(messages: list[tuple[ActorRef, tuple[Any, ...]]], method: str, task: str) -> None:
    """Send `method(*args)` to each (ref, args), without waiting: one Ray call per other host for all its
    targets (`task` names it), an enqueue each for this host's. Each target gets its messages in order."""
    host = _local
    remote: dict[str, list[tuple[str, tuple[Any, ...]]]] = {}
    for ref, args in messages:
        if host is not None and host.name == ref.host:
            spawn(host.deliver(ref.address, method, args), f"{ref.label}.{method}")
        else:
            remote.setdefault(ref.host, []).append((ref.address, args))
    for worker, batch in remote.items():
        spawn(call_worker(worker, "deliver_many", method, batch, task=task), f"{task} to {worker}")


def call_worker(worker: str, method: str, *args: Any, task: str) -> Awaitable[Any]:
    """Call a host's own method (`task` names the call in the Ray dashboard); ActorGone if it died."""
    host = _local
    if host is not None and host.name == worker:
        work: Awaitable[Any] = getattr(host, method)(*args)
        return asyncio.ensure_future(work)
    try:
        ref = getattr(worker_handle(worker), method).options(name=ray_task_name(task)).remote(*args)
    except ValueError as exc:  # no such named actor
        return _failed(ActorGone(f"{worker} is gone ({task})"), exc)
    return _remote(worker, ref, task)


def ray_task_name(task: str) -> str:
    """The Ray task name of a call described as `<label>.<method>`: the label's kind and the method.

    `participant:<room>/<identity>.signal` -> `participant.signal`. Ray keeps its `ray_tasks` metric per task
    name, forever, in the calling process, the called one and the node's metrics agent (measured: ~16 KB per
    distinct name in each of the caller and the callee, whatever RAY_metric_cardinality_level says), so a
    name per room or participant grows every process without bound as sessions come and go. The full
    description stays in our errors and logs."""
    head, dot, method = task.rpartition(".")
    if not dot:
        return task
    return f"{head.split(':', 1)[0]}.{method}"


async def _failed(exc: ActorGone, cause: BaseException) -> Any:
    raise exc from cause


async def _remote(worker: str, ref: Any, task: str) -> Any:
    try:
        return await ref
    except RayActorError as exc:
        forget_handle(worker)
        raise ActorGone(f"{worker} is gone ({task})") from exc


def watch(worker: str, on_lost: Callable[[str], None], task: str) -> "asyncio.Future[object]":
    """Call `on_lost(worker)` when the named host dies (one pending `hold` call, which fails then)."""

    async def wait() -> None:
        try:
            await call_worker(worker, "hold", task=task)
        except ActorGone:
            pass
        on_lost(worker)

    return spawn(wait(), f"{task}: watching {worker}")


class Host:
    """What a MediaWorker does as the host of logical actors."""

    def __init__(self, name: str) -> None:
        global _local
        self.name = name
        self._actors: dict[str, Any] = {}
        self._watched: dict[str, asyncio.Future[object]] = {}
        self._held = asyncio.Event()  # never set: `hold` waits on it until this host dies
        self._lost: set[str] = set()
        _local = self

    def add(self, address: str, actor: Any) -> None:
        self._actors[address] = actor

    def remove(self, address: str) -> None:
        self._actors.pop(address, None)

    def hosted(self, kind: type[Any]) -> list[Any]:
        return [a for a in self._actors.values() if isinstance(a, kind)]

    def actor(self, address: str) -> Any:
        actor = self._actors.get(address)
        if actor is None:
            raise ActorGone(f"{address} is not on {self.name}")
        return actor

    async def deliver(
        self, address: str, method: str, args: tuple[Any, ...], kwargs: dict[str, Any] | None = None
    ) -> Any:
        """A message for the actor at `address`, from this process or (a Ray call) another (ActorRef.call)."""
        if method.startswith("_"):
            raise ActorGone(f"{address} has no message {method}")
        actor = self.actor(address)
        ref = getattr(actor, "ref", None)
        if ref is not None:  # this message's log lines (and its tasks') are about this actor
            logs.current.set(logs.from_label(ref.label))
        handler: Callable[..., Awaitable[Any]] = getattr(actor, method)
        return await handler(*args, **(kwargs or {}))

    async def deliver_many(self, method: str, messages: list[tuple[str, tuple[Any, ...]]]) -> None:
        """Messages from another process for several actors here (see tell_many); those for actors that
        have ended are dropped."""
        for address, args in messages:
            if address in self._actors:
                spawn(self.deliver(address, method, args), f"{address}.{method}")

    async def hold(self) -> None:
        """Pending until this host dies: how other hosts and gateways notice its death (see `watch`)."""
        await self._held.wait()

    def watch(self, worker: str) -> None:
        """Tell this host's actors (`worker_lost`) when `worker` dies; once per worker."""
        if worker == self.name or worker in self._watched or worker in self._lost:
            return
        self._watched[worker] = watch(worker, self._worker_lost, f"{self.name}.watch")

    def _worker_lost(self, worker: str) -> None:
        self._watched.pop(worker, None)
        self._lost.add(worker)
        log.warning("%s: media worker %s is gone", self.name, worker)
        for actor in list(self._actors.values()):
            lost = getattr(actor, "worker_lost", None)
            if lost is not None:
                spawn(lost(worker), f"{actor!r}: losing {worker}")

    def is_lost(self, worker: str) -> bool:
        return worker in self._lost
