"""Per-room figures of each media worker, exported through Ray's metrics (`ray.util.metrics`).

Every node's Ray metrics agent serves them in Prometheus format, so the Ray dashboard's Metrics view (with
Prometheus and Grafana set up, `ray metrics launch-prometheus`) and any Prometheus scraper show them, tagged
`room` and `worker`. Rooms are a bounded tag (one series per room and worker); nothing is per packet.
"""

from collections import Counter
from dataclasses import dataclass, field

from ray.util.metrics import Gauge

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
