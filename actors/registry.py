"""Where each open room lives: the one RoomRegistry Ray actor of a cluster, `rooms`.

A Room is hosted by one MediaWorker, its home (see actors.hosting). Finding it takes one call to this
registry, which also makes opening a room atomic: two first joins of a room that arrive together get
the same room. The registry holds nothing that the workers do not hold too: started again (by the first
caller that finds it gone), it asks every worker which rooms it hosts. When a worker dies,
its rooms are forgotten; their surviving participants open the room again (see actors.room).
"""

import asyncio
import logging
import pickle
import time
from typing import Any

import ray
from livekit.protocol import models
from ray.experimental import internal_kv

from actors import placement
from actors.errors import ActorGone
from actors.hosting import ActorRef, call_worker, known_handle, remember_handle, watch
from actors.naming import NAMESPACE, room_label
from actors.settings import MediaSettings, RoomSettings

log = logging.getLogger(__name__)

REGISTRY = "rooms"
HANDLE_KEY = b"registry-handle"  # in Ray's key-value store, namespace raysfu
HEAD_RESOURCE = "node:__internal_head__"  # the resource Ray gives the head node only
REGISTRY_WAIT = 30.0  # seconds a call waits for a registry that is being started again
REGISTRY_RETRY = 0.5


class RoomRegistry:
    def __init__(self) -> None:
        # Its handle, for the processes whose lookup by name would find the one before (see registry()).
        me = pickle.dumps(ray.get_runtime_context().current_actor)
        internal_kv._internal_kv_put(HANDLE_KEY, me, overwrite=True, namespace=NAMESPACE)
        self._rooms: dict[str, ActorRef] = {}
        self._opening: dict[str, asyncio.Lock] = {}
        self._watched: set[str] = set()
        self._ready = asyncio.Event()
        self._rebuild = asyncio.get_running_loop().create_task(self._rebuild_from_workers())

    def __repr__(self) -> str:
        return "RoomRegistry"

    async def open(
        self, name: str, settings: RoomSettings, media: MediaSettings, metadata: str = "", node: str = ""
    ) -> ActorRef:
        """The open room `name`, created if there is none on the least-loaded worker (of `node`, the
        opening gateway's node, while it has a worker with room)."""
        await self._ready.wait()
        lock = self._opening.setdefault(name, asyncio.Lock())
        async with lock:
            existing = self._rooms.get(name)
            if existing is not None:
                return existing
            workers = await placement.live_workers()
            loads = await placement.worker_loads(workers)
            home = placement.choose_worker(loads, {}, media, node=node)
            ref: ActorRef = await call_worker(
                home, "host_room", name, settings, media, metadata, task=f"{room_label(name)}.open"
            )
            self._add(name, ref)
        if not lock.locked():
            self._opening.pop(name, None)
        return ref

    async def lookup(self, name: str) -> ActorRef | None:
        await self._ready.wait()
        return self._rooms.get(name)

    async def rooms(self, names: list[str] | None = None) -> list[ActorRef]:
        await self._ready.wait()
        return [ref for name, ref in sorted(self._rooms.items()) if not names or name in names]

    async def release(self, name: str, ref: ActorRef) -> None:
        """The room closed: the name is free for a new room (a later join or CreateRoom opens one)."""
        if self._rooms.get(name) == ref:
            del self._rooms[name]

    def _add(self, name: str, ref: ActorRef) -> None:
        self._rooms[name] = ref
        if ref.host not in self._watched:
            self._watched.add(ref.host)
            watch(ref.host, self._worker_lost, "rooms.watch")

    def _worker_lost(self, worker: str) -> None:
        self._watched.discard(worker)
        lost = [name for name, ref in self._rooms.items() if ref.host == worker]
        for name in lost:
            del self._rooms[name]
        if lost:
            log.warning("rooms %s were homed on %s, which is gone", ", ".join(lost), worker)

    async def _rebuild_from_workers(self) -> None:
        try:
            workers = await placement.live_workers()
            answers = await asyncio.gather(
                *(call_worker(w, "hosted_rooms", task="rooms.rebuild") for w in workers),
                return_exceptions=True,
            )
            for worker, answer in zip(workers, answers, strict=True):
                if isinstance(answer, BaseException):
                    log.warning("rooms: %s did not answer: %s", worker, answer)
                    continue
                for name, ref in answer:
                    self._add(name, ref)
            if self._rooms:
                log.info("rooms: rebuilt %d rooms from %d workers", len(self._rooms), len(workers))
        finally:
            self._ready.set()


def registry() -> Any:
    """The cluster's RoomRegistry actor, created by whoever needs it first, on the head node (it then goes
    down only with the head), and created again by whoever needs it after it died (rebuilding itself from
    the workers).

    After the head is lost and started again with GCS fault tolerance, a process of another node that had
    looked the registry up keeps getting the dead one from `ray.get_actor`: Ray caches names until it hears
    the actor died, which it does not after a GCS restart. So each registry also leaves its handle in Ray's
    key-value store, and callers whose registry is gone take that one (`_call`)."""
    options = placement.actor_options(REGISTRY, max_concurrency=10_000)
    options["resources"] = {HEAD_RESOURCE: 0.001}
    return ray.remote(RoomRegistry).options(get_if_exists=True, **options).remote()


async def _call(method: str, *args: Any) -> Any:
    """A call to the registry; while it is unavailable (being started again), tried for REGISTRY_WAIT s."""
    deadline = time.monotonic() + REGISTRY_WAIT
    while True:
        tried = known_handle(REGISTRY)
        try:
            return await call_worker(REGISTRY, method, *args, task=f"rooms.{method}")
        except ActorGone as exc:
            if time.monotonic() > deadline:
                raise
            log.warning("the room registry is unavailable (%s); trying again", exc.__cause__)
            await asyncio.to_thread(_find_registry, tried)
            await asyncio.sleep(REGISTRY_RETRY)


def _find_registry(failed: Any) -> None:
    """Next time, call the registry whose handle the last one started left in the key-value store, unless
    that is the one that just `failed`: then the one found by name, created if there is none."""
    stored = internal_kv._internal_kv_get(HANDLE_KEY, namespace=NAMESPACE)
    handle = pickle.loads(stored) if stored else None
    if handle is None or (failed is not None and handle._actor_id == failed._actor_id):
        handle = registry()
    remember_handle(REGISTRY, handle)


async def open_room(
    name: str, settings: RoomSettings, media: MediaSettings, metadata: str = "", node: str = ""
) -> ActorRef:
    ref: ActorRef = await _call("open", name, settings, media, metadata, node)
    return ref


async def lookup_room(name: str) -> ActorRef | None:
    ref: ActorRef | None = await _call("lookup", name)
    return ref


async def list_rooms(names: list[str] | None = None) -> list[models.Room]:
    """Every open room (optionally only these names); rooms that are closing are left out."""
    refs: list[ActorRef] = await _call("rooms", names)
    infos = await asyncio.gather(*(ref.call("info") for ref in refs), return_exceptions=True)
    return [i for i in infos if isinstance(i, models.Room)]


async def release_room(name: str, ref: ActorRef) -> None:
    await _call("release", name, ref)
