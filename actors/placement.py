"""Which MediaWorker hosts a new participant.

A room's participants go to the worker already serving the room while it has headroom (forwarding inside
one process is cheapest), then to the least-loaded worker on a node the room already uses, then anywhere;
load is what each worker measures of itself every second: its CPU and its RTP packets/s.
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
from actors.settings import MediaSettings

log = logging.getLogger(__name__)

WORKER_LIST_TTL = 2.0  # seconds a listing of the live workers is reused (it is a GCS request)
SPILL_AT = 0.7  # share of its load limits above which a worker takes newcomers only when no other can
LOAD_STEP = 0.25  # utilisation differences below this do not reorder workers
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

    def utilisation(self, media: MediaSettings) -> float:
        """The larger of its CPU and its packet rate as a share of their limits (0 when there are none)."""
        shares = [0.0]
        if media.max_worker_cpu > 0:
            shares.append(self.cpu / media.max_worker_cpu)
        if media.max_worker_packets > 0:
            shares.append(self.packets_per_s / media.max_worker_packets)
        return max(shares)


def choose_worker(
    candidates: list[Candidate],
    room_members: Mapping[str, int],
    media: MediaSettings,
    home: str = "",
    node: str = "",
) -> str:
    """Pick a worker for a participant of the room whose workers host `room_members` of it.

    A worker at its load limit (`media.max_worker_cpu` cores or `media.max_worker_packets` packets/s) takes
    nobody; when every worker is, ClusterFullError. A worker with headroom (below SPILL_AT of its limits
    and below `participants_per_worker`) is preferred: on `node` (the node whose gateway the client
    reached) while it has one, then the room's busiest worker (forwarding inside one process is cheapest),
    its home (the worker hosting the Room), the least loaded on a node the room uses, the least loaded
    anywhere. When every worker has its `participants_per_worker` but some have load to spare, the one of
    those with the fewest participants takes it; when none has load to spare, the least utilised.
    "Least loaded" orders by utilisation in steps of LOAD_STEP, then by participants, so that an idle
    cluster's noise in the measurements does not decide."""
    if not candidates:
        raise ClusterFullError("no media workers are running")
    below = [c for c in candidates if c.utilisation(media) < 1.0]
    if not below:
        raise ClusterFullError(f"every media worker is at its load limit ({_limits(media)})")
    capacity = media.participants_per_worker

    def least(pool: list[Candidate]) -> str:
        return min(pool, key=lambda c: (int(c.utilisation(media) / LOAD_STEP), c.load, c.worker)).worker

    roomy = [c for c in below if (capacity <= 0 or c.load < capacity) and c.utilisation(media) < SPILL_AT]
    if not roomy:
        cool = [c for c in below if c.utilisation(media) < SPILL_AT]  # full by count only
        if cool:  # the fewest participants, not the noise of idle workers' measurements
            return min(cool, key=lambda c: (c.load, c.worker)).worker
        return min(below, key=lambda c: (c.utilisation(media), c.load, c.worker)).worker
    local = [c for c in roomy if worker_node_label(c.worker) == node]
    if local:
        roomy = local
    serving = sorted(
        (c for c in roomy if room_members.get(c.worker, 0) > 0),
        key=lambda c: (-room_members.get(c.worker, 0), c.load),
    )
    if serving:
        return serving[0].worker
    if any(c.worker == home for c in roomy):
        return home
    room_nodes = {worker_node_label(w) for w, n in room_members.items() if n > 0}
    return least([c for c in roomy if worker_node_label(c.worker) in room_nodes] or roomy)


def _limits(media: MediaSettings) -> str:
    limits = []
    if media.max_worker_cpu > 0:
        limits.append(f"{media.max_worker_cpu:g} cores of CPU")
    if media.max_worker_packets > 0:
        limits.append(f"{media.max_worker_packets:g} RTP packets/s")
    return " or ".join(limits)


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
