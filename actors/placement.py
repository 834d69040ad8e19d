"""Which MediaWorker hosts a new participant.

A room's participants go to the worker already serving the room while it has capacity (forwarding inside
one process is cheapest), then to the least-loaded worker on a node the room already uses, then anywhere.
Workers register as named actors `media:<node>/<n>`; `<node>` is the first 8 hex digits of the Ray node id.
"""

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from actors.errors import ClusterFullError
from actors.hosting import call_worker
from actors.naming import MEDIA_PREFIX, NAMESPACE

log = logging.getLogger(__name__)

WORKER_LIST_TTL = 2.0  # seconds a listing of the live workers is reused (it is a GCS request)
_listing: tuple[float, list[str]] = (0.0, [])


def node_label(node_id: str) -> str:
    return node_id[:8]


def worker_node_label(worker: str) -> str:
    return worker.removeprefix(MEDIA_PREFIX).split("/", 1)[0]


def list_workers() -> list[str]:
    names = ray.util.list_named_actors(all_namespaces=True)
    return sorted(
        n["name"] for n in names if n["namespace"] == NAMESPACE and n["name"].startswith(MEDIA_PREFIX)
    )


async def live_workers() -> list[str]:
    """The media workers' names, listed at most every WORKER_LIST_TTL s, off the event loop."""
    global _listing
    listed_at, names = _listing
    if time.monotonic() - listed_at > WORKER_LIST_TTL or not names:
        names = await asyncio.to_thread(list_workers)
        _listing = (time.monotonic(), names)
    return names


async def worker_loads(workers: list[str]) -> list["Candidate"]:
    """Each worker's load, as it measures it; a worker that does not answer is left out."""
    loads = await asyncio.gather(
        *(call_worker(w, "load", task=f"{w}.load") for w in workers), return_exceptions=True
    )
    candidates: list[Candidate] = []
    for worker, load in zip(workers, loads, strict=True):
        if isinstance(load, Candidate):
            candidates.append(load)
        else:
            log.warning("media worker %s did not answer: %s", worker, load)
    return candidates


@dataclass(frozen=True)
class Candidate:
    worker: str
    load: int  # participants hosted, all rooms
    cpu: float = 0.0  # the worker process's CPU use over its last measurement, in cores
    packets_per_s: float = 0.0  # RTP packets in and out, same window


def choose_worker(
    candidates: list[Candidate],
    room_members: Mapping[str, int],
    capacity: int,
    home: str = "",
    node: str = "",
    max_cpu: float = 0.0,
) -> str:
    """Pick a worker. A worker at `max_cpu` (cores; 0: no limit) takes nobody: when every worker is,
    ClusterFullError. Then on `node` (the node whose gateway the client connected to) while it has a worker
    with room, then anywhere: the room's busiest worker with room, then its home (the worker hosting the
    Room), then the least loaded on a node the room uses, then the least loaded anywhere. When every worker
    has its `capacity` of participants but CPU to spare, the one with the fewest takes the participant."""
    if not candidates:
        raise ClusterFullError("no media workers are running")
    if max_cpu > 0:
        candidates = [c for c in candidates if c.cpu < max_cpu]
        if not candidates:
            raise ClusterFullError(f"every media worker is at its CPU limit ({max_cpu:g} cores)")
    free = [c for c in candidates if capacity <= 0 or c.load < capacity]
    if not free:
        return min(candidates, key=lambda c: (c.load, c.worker)).worker
    local = [c for c in free if worker_node_label(c.worker) == node]
    if local:
        free = local
    serving = sorted(
        (c for c in free if room_members.get(c.worker, 0) > 0),
        key=lambda c: (-room_members.get(c.worker, 0), c.load),
    )
    if serving:
        return serving[0].worker
    if any(c.worker == home for c in free):
        return home
    room_nodes = {worker_node_label(w) for w, n in room_members.items() if n > 0}
    same_node = [c for c in free if worker_node_label(c.worker) in room_nodes]
    return min(same_node or free, key=lambda c: (c.load, c.worker)).worker


def actor_options(name: str, node_id: str | None = None, max_concurrency: int = 1000) -> dict[str, Any]:
    """Ray options of raysfu's actors, on `node_id` (hard affinity) when given.

    Named in raysfu's namespace; detached, so they outlive the gateway process that created them; no CPU
    reserved (they mostly wait); never restarted, since a restarted actor would have lost its state.
    """
    options: dict[str, Any] = {
        "name": name,
        "namespace": NAMESPACE,
        "num_cpus": 0,
        "lifetime": "detached",
        "max_concurrency": max_concurrency,
        "max_restarts": 0,
    }
    if node_id is not None:
        options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(node_id=node_id, soft=False)
    return options
