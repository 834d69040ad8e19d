"""What each media worker counts, exported through Ray's metrics (`ray.util.metrics`) and to its node's
gateway, which serves them on `prometheus_port` (gateway/metrics.py).

Every node's Ray metrics agent serves Ray's in Prometheus format, so the Ray dashboard's Metrics view (with
Prometheus and Grafana set up, `ray metrics launch-prometheus`) and any Prometheus scraper show them:
per-worker figures (`WorkerMetrics`) tagged `node` and `worker`, and, with `media.room_gauges`, per-room
gauges tagged `room` and `worker`. Those are off by default: a Ray worker keeps every tag value it recorded
for as long as it lives (~14 KB per room per worker, measured), which only a fixed set of rooms bounds.
Nothing is recorded per packet: the media plane's own counters are read once a second, and forwarding
latency is sampled.
"""

import bisect
from collections import Counter
from dataclasses import dataclass, field

from ray.util.metrics import Counter as RayCounter
from ray.util.metrics import Gauge
from ray.util.metrics import Histogram as RayHistogram

from actors.media import uptrack
from actors.media.peer import ParticipantPeers
from actors.media.plane import MediaPlane

REPORT_INTERVAL = 5.0  # seconds between two updates of the gauges

FIGURES = {
    "participants": "participants of the room whose peer connections this worker holds",
    "published_tracks": "tracks of the room published on this worker",
    "subscriptions": "subscriptions of the room served by this worker",
    "packets_in": "RTP packets this worker received for the room's tracks (since each was published)",
    "bytes_in": "RTP payload bytes this worker received for the room's tracks",
    "packets_out": "RTP packets this worker sent to the room's subscribers",
    "bytes_out": "RTP payload bytes this worker sent to the room's subscribers",
}


@dataclass
class RoomFigures:
    figures: dict[str, Counter[str]] = field(default_factory=lambda: {name: Counter() for name in FIGURES})

    def add(self, figure: str, room: str, value: int = 1) -> None:
        self.figures[figure][room] += value

    def rooms(self) -> set[str]:
        return {room for counts in self.figures.values() for room in counts}


def room_figures(peers: dict[str, ParticipantPeers], media: MediaPlane) -> RoomFigures:
    """Each room's figures on this worker, from the peer connections and the media plane's tracks."""
    out = RoomFigures()
    for p in peers.values():
        out.add("participants", p.room)
    track_rooms: dict[str, str] = {}
    for (sub_sid, track_sid), down in media.downs.items():
        sub = peers.get(sub_sid)
        if sub is None:
            continue
        track_rooms[track_sid] = sub.room
        out.add("subscriptions", sub.room)
        out.add("packets_out", sub.room, down.packets_out)
        out.add("bytes_out", sub.room, down.bytes_out)
    for track_sid, up in media.ups.items():
        publisher = peers.get(up.publisher_sid)
        room = publisher.room if publisher is not None else track_rooms.get(track_sid)  # else a relayed copy
        if room is None:
            continue
        if publisher is not None:
            out.add("published_tracks", room)
        out.add("packets_in", room, up.packets_in)
        out.add("bytes_in", room, up.bytes_in)
    return out


class RoomGauges:
    def __init__(self, worker: str) -> None:
        self._worker = worker
        self._gauges = {
            name: Gauge(f"raysfu_room_{name}", description=text, tag_keys=("room", "worker"))
            for name, text in FIGURES.items()
        }
        self._reported: set[str] = set()

    def report(self, figures: RoomFigures) -> None:
        """Set every gauge; rooms reported before and gone now go to 0."""
        rooms = figures.rooms()
        for room in rooms | self._reported:
            tags = {"room": room, "worker": self._worker}
            for name, gauge in self._gauges.items():
                gauge.set(figures.figures[name][room], tags=tags)
        self._reported = rooms


# ----- per worker ---------------------------------------------------------------------------------------

WORKER_GAUGES = {
    "rooms": "rooms whose Room this worker hosts (their home)",
    "participants": "participants whose peer connections this worker holds",
    "published_tracks": "tracks published on this worker",
    "subscriptions": "subscriptions this worker serves",
}
WORKER_COUNTERS = {
    "packets_in": "RTP packets received for the tracks on this worker (published here or relayed to it)",
    "bytes_in": "RTP payload bytes received for the tracks on this worker",
    "packets_out": "RTP packets sent to subscribers",
    "bytes_out": "RTP payload bytes sent to subscribers",
    "nacks_received": "RTCP NACKs received from subscribers",
    "nacks_sent": "RTP packets asked again from publishers by NACK",
    "plis_received": "keyframe requests (PLI, FIR) received from subscribers",
    "plis_sent": "keyframe requests sent to publishers",
    "packets_lost": "RTP packets missing from publishers' streams (before NACK repairs them)",
}
JOIN_TIME_BOUNDS = (0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0)
LATENCY_BOUNDS = (0.00005, 0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05)
WORKER_HISTOGRAMS = {
    "join_time_seconds": (
        "seconds from the Room taking a join to the participant's first connected peer connection",
        JOIN_TIME_BOUNDS,
    ),
    "forwarding_latency_seconds": (
        f"seconds from an RTP packet's arrival at its track to its last copy sent (1 in "
        f"{uptrack.LATENCY_SAMPLE_EVERY} packets)",
        LATENCY_BOUNDS,
    ),
}


@dataclass
class Buckets:
    """A histogram's state (Prometheus' cumulative form is made when it is exported)."""

    bounds: tuple[float, ...]
    counts: list[int] = field(default_factory=list)  # per bucket, the last one for values above every bound
    total: float = 0.0

    def __post_init__(self) -> None:
        self.counts = self.counts or [0] * (len(self.bounds) + 1)

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value


@dataclass(frozen=True)
class WorkerFigures:
    """One worker's figures, as its gateway exports them."""

    worker: str
    node: str
    gauges: dict[str, float]
    counters: dict[str, float]
    histograms: dict[str, Buckets]


class Totals:
    """Counters that only grow, from the media plane's per-track and per-subscription ones (which go away
    with their track): each read adds what every live one gained since the last. What a track counts in its
    last second before it ends is missed."""

    def __init__(self) -> None:
        self.totals: Counter[str] = Counter()
        self._last: dict[tuple[str, object], int] = {}

    def update(self, readings: list[tuple[str, object, int]]) -> Counter[str]:
        """`readings`: (figure, the object's key, its count now); returns what each figure gained."""
        gained: Counter[str] = Counter()
        last: dict[tuple[str, object], int] = {}
        for figure, key, value in readings:
            before = self._last.get((figure, key), 0)
            if value > before:
                gained[figure] += value - before
            last[(figure, key)] = max(value, before)  # a count that went down (loss repaired) is not new
        self._last = last
        self.totals.update(gained)
        return gained


def media_readings(media: MediaPlane) -> list[tuple[str, object, int]]:
    readings: list[tuple[str, object, int]] = []
    for track_sid, up in media.ups.items():
        readings += [
            ("packets_in", track_sid, up.packets_in),
            ("bytes_in", track_sid, up.bytes_in),
            ("plis_sent", track_sid, up.keyframe_requests),
        ]
    for track_sid, published in media.published.items():
        readings += [
            ("nacks_sent", track_sid, published.receiver.counters["nacks_sent"]),
            ("packets_lost", track_sid, published.receiver.packets_lost()),
        ]
    for key, down in media.downs.items():
        readings += [
            ("packets_out", key, down.packets_out),
            ("bytes_out", key, down.bytes_out),
            ("nacks_received", key, down.sender.counters["nack_received"]),
            ("plis_received", key, down.sender.counters["pli_received"]),
        ]
    return readings


class WorkerMetrics:
    """One media worker's figures: updated once a second (`update`), observed (`observe_join`), read by
    its gateway (`figures`) and set into Ray's metrics as they change."""

    def __init__(self, worker: str, node: str) -> None:
        self._worker = worker
        self._node = node
        self._tags = {"node": node, "worker": worker}
        self._gauges: dict[str, float] = dict.fromkeys(WORKER_GAUGES, 0.0)
        self._totals = Totals()
        self._histograms = {name: Buckets(bounds) for name, (_, bounds) in WORKER_HISTOGRAMS.items()}
        keys = ("node", "worker")
        self._ray_gauges = {
            n: Gauge(f"raysfu_{n}", description=d, tag_keys=keys) for n, d in WORKER_GAUGES.items()
        }
        self._ray_counters = {
            n: RayCounter(f"raysfu_{n}", description=d, tag_keys=keys) for n, d in WORKER_COUNTERS.items()
        }
        self._ray_histograms = {
            n: RayHistogram(f"raysfu_{n}", description=d, boundaries=list(b), tag_keys=keys)
            for n, (d, b) in WORKER_HISTOGRAMS.items()
        }

    def observe_join(self, seconds: float) -> None:
        self._observe("join_time_seconds", seconds)

    def update(self, rooms: int, peers: dict[str, ParticipantPeers], media: MediaPlane) -> None:
        self._gauges = {
            "rooms": rooms,
            "participants": len(peers),
            "published_tracks": len(media.published),
            "subscriptions": len(media.downs),
        }
        for name, value in self._gauges.items():
            self._ray_gauges[name].set(value, tags=self._tags)
        for name, gained in self._totals.update(media_readings(media)).items():
            self._ray_counters[name].inc(gained, tags=self._tags)
        samples = uptrack.forwarding_latencies
        while samples:
            self._observe("forwarding_latency_seconds", samples.popleft())

    def figures(self) -> WorkerFigures:
        return WorkerFigures(
            self._worker,
            self._node,
            dict(self._gauges),
            {name: float(self._totals.totals[name]) for name in WORKER_COUNTERS},
            {name: Buckets(b.bounds, list(b.counts), b.total) for name, b in self._histograms.items()},
        )

    def _observe(self, name: str, value: float) -> None:
        self._histograms[name].observe(value)
        self._ray_histograms[name].observe(value, tags=self._tags)
