"""MediaWorker: one Ray actor per core per node, hosting the peer connections of many participants of many
rooms, the logical actors that control them (Rooms, Participants, TrackForwarders; actors.hosting), and
their clients' outboxes (actors.outbox).

Data between workers goes through `deliver_data` calls (one per packet per destination worker), ordered
per sending worker. RTP is forwarded by the media plane (actors/media/plane.py): raw bytes from the
publisher's tap receiver to each subscriber's passthrough sender, and one UDP copy per track to each other
worker with subscribers of it (actors/media/relay.py), never through a Ray call.
"""

# Annotations stay strings: Ray pickles actor classes by value, and protobuf types do not pickle.
from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import ray
from livekit.protocol import models, rtc

from actors import limits, logs, metrics, registry
from actors.directory import Directory, Member
from actors.errors import CandidateError, NotFoundError
from actors.forwarder import TrackForwarder
from actors.hosting import ActorRef, Host
from actors.inbox import SequencedInbox
from actors.media import audiolevel, quality
from actors.media.data import DataPacketRefused, route
from actors.media.hooks import restrict_host_addresses, restrict_host_ports, use_rfc_consent_freshness
from actors.media.ice import parse_candidate_init, rtc_configuration
from actors.media.links import Outgoing, WorkerLinks
from actors.media.peer import PUBLISHER, SUBSCRIBER, ParticipantPeers
from actors.media.plane import MediaPlane, PublisherAnswer, RelaySource
from actors.media.ratelog import RateLimitedLog
from actors.media.relay import Address
from actors.metrics import RoomGauges, WorkerFigures, WorkerMetrics
from actors.outbox import Batch, Outboxes
from actors.participant import JoinParams, Participant
from actors.placement import Candidate, actor_options, worker_node_label
from actors.room import Room
from actors.settings import MediaSettings, RoomSettings, WebhookSettings
from actors.tasks import spawn
from actors.webhooks import Webhooks

log = logging.getLogger(__name__)

# Pending calls one worker can hold: a gateway's poll and a watch per peer, messages in flight.
MAX_CONCURRENCY = 10_000
# A gateway that stops polling this long is gone (crashed or partitioned): its sessions end.
GATEWAY_TIMEOUT = 30.0
LOAD_INTERVAL = 1.0  # seconds between two measurements of the worker's CPU and packets


@dataclass(frozen=True)
class _Room:
    directory: Directory
    by_sid: dict[str, Member]


@dataclass(frozen=True)
class _Delivery:
    room: str
    payload: bytes
    reliable: bool
    dest_sids: tuple[str, ...]


class MediaWorker(Host):
    def __init__(
        self,
        name: str,
        settings: MediaSettings,
        relay_key: bytes | None = None,
        webhook: WebhookSettings | None = None,
    ) -> None:
        """`relay_key`: the cluster's, from Ray, when None (a worker started without Ray must pass one).
        `webhook`: where the rooms hosted here post their events (none when None)."""
        logs.configure(settings.log_level, settings.log_json, name)
        super().__init__(name)
        self._settings = settings
        self.webhooks = Webhooks(webhook or WebhookSettings(), name)
        self.metrics = WorkerMetrics(name, worker_node_label(name))
        self.limits = settings.limits  # what each hosted participant may send and hold
        self.outboxes = Outboxes()
        self._background: list[asyncio.Future[object]] = []
        self._cpu = 0.0
        self._packets_per_s = 0.0
        if settings.ice_addresses:
            restrict_host_addresses(settings.ice_addresses)
        if settings.ice_port_range:
            restrict_host_ports(settings.ice_port_range)
        use_rfc_consent_freshness()
        self._peers: dict[str, ParticipantPeers] = {}
        self._rooms: dict[str, _Room] = {}
        self._inboxes: dict[str, SequencedInbox[_Delivery]] = {}
        self._counters: Counter[str] = Counter()
        self._links = WorkerLinks(name, self._counters)
        self._refused_senders: set[str] = set()  # sids whose "no permission" drop was logged already
        self._data_rates: dict[str, tuple[limits.RateLimit, limits.RateLimit]] = {}  # sid -> packets, bytes
        self._last_reliable: dict[str, int] = {}  # sid -> the last reliable data sequence it sent
        self._ratelog = RateLimitedLog(log)
        self._media = MediaPlane(name, self._peer, digest_limit=settings.payload_digests, relay_key=relay_key)
        # Where other workers reach this one's relay socket (127.0.0.1 on a dev server).
        self._node_ip: str = ray.util.get_node_ip_address()  # type: ignore[no-untyped-call]

    def __repr__(self) -> str:
        return self.name

    async def ready(self) -> str:
        """The worker answers: its background work runs from now on (its event loop is Ray's)."""
        self._start_background()
        return self.name

    async def load(self) -> Candidate:
        return self.measured_load()

    def measured_load(self) -> Candidate:
        """What placement weighs: participants hosted, and the CPU and packets of the last second."""
        return Candidate(self.name, len(self._peers), self._cpu, self._packets_per_s)

    # ----- hosting the logical actors ------------------------------------------------------------------

    async def host_room(
        self, name: str, settings: RoomSettings, media: MediaSettings, metadata: str = ""
    ) -> ActorRef:
        room = Room(self, name, settings, media, metadata)
        self.add(room.ref.address, room)
        return room.ref

    async def room_closed(self, room: Room) -> None:
        self.remove(room.ref.address)
        await registry.release_room(room.name, room.ref)

    async def hosted_rooms(self) -> list[tuple[str, ActorRef]]:
        return [(room.name, room.ref) for room in self.hosted(Room)]

    async def host_participant(
        self, room: ActorRef, room_name: str, info: models.ParticipantInfo, params: JoinParams
    ) -> ActorRef:
        """Host a new session's Participant, with its peer connections, for the room (maybe on another
        host)."""
        await self.add_participant(room_name, info.sid, info.identity, params.single_pc)
        participant = Participant(self, room, room_name, info, params)
        self.add(info.sid, participant)
        self.watch(room.host)
        spawn(self._tell_when_connected(room, info), f"{participant!r}: waiting for a connection")
        self.outboxes.expect(params.gateway)  # a gateway that never polls for it is noticed as well
        return participant.ref

    async def _tell_when_connected(self, room: ActorRef, info: models.ParticipantInfo) -> None:
        """Tell the room when one of the participant's peer connections first connects."""
        peers = self._peers.get(info.sid)
        if peers is not None and await peers.wait_connected():
            room.tell("participant_active", info.identity, info.sid)

    async def host_forwarder(self, room: str, info: models.TrackInfo, publisher: ActorRef) -> ActorRef:
        forwarder = TrackForwarder(self, room, info, publisher)
        self.add(info.sid, forwarder)
        self._media.announce_layers(info.sid, [(la.quality, la.width, la.height) for la in info.layers])
        return forwarder.ref

    # ----- the gateways' traffic -----------------------------------------------------------------------

    async def signal(self, requests: list[tuple[str, str, int, rtc.SignalRequest]]) -> None:
        """Signalling from one gateway, batched: (participant sid, its WebSocket's key, sequence number,
        request)."""
        for sid, key, seq, request in requests:
            participant = self._actors.get(sid)
            if isinstance(participant, Participant):  # else: the session ended while this was on its way
                spawn(participant.signal(seq, request, key), f"{participant!r}: signal {seq}")

    async def poll(self, gateway: str, epoch: int, cursor: int, wait: float) -> Batch:
        """The gateway's long-poll for all its sessions on this host (see actors.outbox)."""
        return await self.outboxes.poll(gateway, epoch, cursor, wait)

    def _start_background(self) -> None:
        """The gateways' watch, the metrics, the load measurement, speakers and quality; once."""
        if not self._background:
            self._background = [
                spawn(self._watch_gateways(), f"{self.name}: watching gateways"),
                spawn(self._count_media(), f"{self.name}: metrics"),
                spawn(self._measure_load(), f"{self.name}: load"),
                spawn(self._report_speakers(), f"{self.name}: speakers"),
                spawn(self._report_quality(), f"{self.name}: connection quality"),
            ]
            if self._settings.room_gauges:
                self._background.append(spawn(self._report_rooms(), f"{self.name}: room gauges"))

    async def _measure_load(self) -> None:
        """This process's CPU (all its threads) and the RTP packets in and out, every LOAD_INTERVAL s."""
        loop = asyncio.get_running_loop()
        last_wall, last_cpu, last_packets = loop.time(), time.process_time(), self._media.packets()
        while True:
            await asyncio.sleep(LOAD_INTERVAL)
            wall, cpu, packets = loop.time(), time.process_time(), self._media.packets()
            elapsed = max(wall - last_wall, 1e-6)
            self._cpu = (cpu - last_cpu) / elapsed
            self._packets_per_s = max(0.0, (packets - last_packets) / elapsed)  # tracks that ended
            last_wall, last_cpu, last_packets = wall, cpu, packets

    async def _report_speakers(self) -> None:
        """Every audiolevel.UPDATE_INTERVAL, each room's active speakers among the participants here, to the
        room when they changed: a message per room whose speakers changed, none while nobody speaks."""
        sent: dict[ActorRef, dict[str, float]] = {}
        while True:
            await asyncio.sleep(audiolevel.UPDATE_INTERVAL)
            now = time.monotonic()
            current: dict[ActorRef, dict[str, float]] = {}
            for participant in self.hosted(Participant):
                level = self._media.speaker_level(participant.microphone_tracks(), now)
                speakers = current.setdefault(participant.room, {})
                if level is not None:
                    speakers[participant.sid] = audiolevel.quantize(level)
            for room, speakers in current.items():
                if sent.get(room, {}) != speakers:
                    room.tell("report_speakers", self.name, time.monotonic_ns(), speakers)
            sent = current

    async def _report_quality(self) -> None:
        """Every quality.UPDATE_INTERVAL, score the tracks here and send each room the quality of its
        participants here when one is new or its quality changed."""
        sent: dict[ActorRef, dict[str, int]] = {}
        while True:
            await asyncio.sleep(quality.UPDATE_INTERVAL)
            lowest = self._media.score_tracks()
            current: dict[ActorRef, dict[str, tuple[int, float]]] = {}
            for participant in self.hosted(Participant):
                rating = quality.rating(lowest.get(participant.sid))
                current.setdefault(participant.room, {})[participant.sid] = rating
            levels = {room: {sid: q for sid, (q, _) in ratings.items()} for room, ratings in current.items()}
            for room, ratings in current.items():
                if sent.get(room) != levels[room]:
                    room.tell("report_quality", self.name, time.monotonic_ns(), ratings)
            sent = levels

    async def _count_media(self) -> None:
        while True:
            await asyncio.sleep(LOAD_INTERVAL)
            self.metrics.update(len(self.hosted(Room)), self._peers, self._media)

    async def figures(self) -> WorkerFigures:
        """This worker's metrics, for its node's gateway (gateway/metrics.py)."""
        return self.metrics.figures()

    async def _report_rooms(self) -> None:
        gauges = RoomGauges(self.name)
        while True:
            gauges.report(metrics.room_figures(self._peers, self._media))
            await asyncio.sleep(metrics.REPORT_INTERVAL)

    async def _watch_gateways(self) -> None:
        while True:
            await asyncio.sleep(GATEWAY_TIMEOUT / 3)
            for gateway in self.outboxes.silent_since(GATEWAY_TIMEOUT):
                log.warning("%s: gateway %s stopped polling; ending its sessions", self.name, gateway)
                for participant in self.hosted(Participant):
                    spawn(participant.gateway_lost(gateway), f"{participant!r}: losing {gateway}")

    async def add_participant(self, room: str, sid: str, identity: str, single_pc: bool = False) -> None:
        if sid in self._peers:
            return
        self._peers[sid] = ParticipantPeers(
            room,
            sid,
            identity,
            lambda: rtc_configuration(self._settings.stun_servers),
            self._on_data,
            single_pc,
        )

    async def remove_participant(self, sid: str) -> None:
        await self._media.remove_participant(sid)
        peers = self._peers.pop(sid, None)
        self._refused_senders.discard(sid)
        self._data_rates.pop(sid, None)
        self._last_reliable.pop(sid, None)
        if peers is not None:
            await peers.close()

    async def subscriber_offer(self, sid: str, ice_restart: bool = False) -> str:
        return await self._peer(sid).subscriber_offer(ice_restart)

    def peers_connected(self, sid: str, ever: bool = False) -> bool:
        """Whether one of the participant's peer connections is connected (with `ever`: ever was)."""
        peers = self._peers.get(sid)
        return peers is not None and (peers.connected if ever else peers.is_connected())

    def peers_failed(self, sid: str) -> bool:
        """Whether one of the participant's peer connections failed or closed (ICE cannot restart then)."""
        peers = self._peers.get(sid)
        return peers is None or peers.failed()

    def last_reliable_sequence(self, sid: str) -> int:
        """The last reliable data sequence received from the participant (LiveKit's last_message_seq)."""
        return self._last_reliable.get(sid, 0)

    async def subscriber_answer(self, sid: str, sdp: str) -> None:
        await self._peer(sid).subscriber_answer(sdp)

    async def publisher_offer(
        self, sid: str, sdp: str, pending: dict[str, str] | None = None
    ) -> PublisherAnswer:
        """Answer the client's publisher offer; bind new m-lines to announced tracks (cid -> track sid)."""
        return await self._media.publisher_offer(sid, sdp, pending or {})

    async def set_track_muted(self, track_sid: str, muted: bool) -> None:
        await self._media.set_track_muted(track_sid, muted)

    async def stop_track(self, track_sid: str) -> None:
        await self._media.stop_track(track_sid)

    async def relay_source(self, track_sid: str) -> RelaySource:
        return await self._media.relay_source(track_sid, self._node_ip)

    async def expect_relay(
        self,
        track_sid: str,
        publisher_sid: str,
        kind: str,
        source_worker: str,
        source: RelaySource,
    ) -> Address:
        """Take a copy of a track published on `source_worker`; returns the address to send it to."""
        return await self._media.expect_relay(
            track_sid, publisher_sid, kind, source_worker, source, self._node_ip
        )

    async def add_relay(self, track_sid: str, worker: str, address: Address) -> None:
        self._media.add_relay(track_sid, worker, address)

    async def remove_relay(self, track_sid: str, worker: str) -> None:
        self._media.remove_relay(track_sid, worker)

    async def subscribe(self, sub_sid: str, track_sid: str, publisher_sid: str) -> None:
        await self._media.subscribe(sub_sid, track_sid, publisher_sid)

    async def media_sections_requirement(self, sub_sid: str) -> tuple[int, int]:
        """With one PC: the (audio, video) m-lines to ask the client for (see MediaPlane)."""
        return self._media.media_sections_requirement(sub_sid)

    async def unsubscribe(self, sub_sid: str, track_sid: str) -> None:
        await self._media.unsubscribe(sub_sid, track_sid)

    async def set_subscription_settings(
        self, sub_sid: str, track_sid: str, disabled: bool, quality: int, width: int, height: int
    ) -> int | None:
        return await self._media.set_subscription_settings(
            sub_sid, track_sid, disabled, quality, width, height
        )

    async def media_stats(self) -> dict[str, Any]:
        return {
            **self._media.stats(),
            "participants": sorted(self._peers),
            "subscriber_m_lines": {sid: p.subscriber_media_sections() for sid, p in self._peers.items()},
        }

    async def add_ice_candidate(self, sid: str, target: int, candidate_init: str) -> None:
        peers = self._peer(sid)
        if target not in (PUBLISHER, SUBSCRIBER):
            raise CandidateError(f"unknown signal target {target}")
        candidate = parse_candidate_init(candidate_init)
        if candidate is not None:
            await peers.add_ice_candidate(target, candidate)

    async def update_directory(self, directory: Directory) -> None:
        current = self._rooms.get(directory.room)
        if current is not None and current.directory.version >= directory.version:
            return
        self._rooms[directory.room] = _Room(directory, directory.by_sid())
        self._refused_senders -= {m.sid for m in directory.members if m.can_publish_data}

    async def close_room(self, room: str) -> None:
        self._rooms.pop(room, None)

    async def send_data(self, room: str, packet: bytes, reliable: bool, dest_sids: list[str]) -> int:
        wanted = set(dest_sids)
        targets = [p.sid for p in self._peers.values() if p.room == room and (not wanted or p.sid in wanted)]
        return sum(self._deliver_local(room, sid, packet, reliable) for sid in targets)

    async def deliver_data(
        self, src_worker: str, seq: int, room: str, packet: bytes, reliable: bool, dest_sids: list[str]
    ) -> None:
        self._counters["deliver_calls"] += 1
        inbox = self._inboxes.get(src_worker)
        if inbox is None:
            inbox = SequencedInbox(self._apply_delivery, f"{self.name}<-{src_worker}")
            self._inboxes[src_worker] = inbox
        await inbox.put(seq, _Delivery(room, packet, reliable, tuple(dest_sids)))

    async def stats(self) -> dict[str, int]:
        return {"participants": len(self._peers), **self._counters, **self.webhooks.counters}

    async def census(self) -> dict[str, int]:
        """How many of each thing this worker holds: hosted actors, peer connections, media plane entries,
        per-room and per-source state, asyncio tasks. A long run (bench soak) checks that all of them return
        to an empty server's values once everyone has left."""
        return {
            "rooms": len(self.hosted(Room)),
            "participants": len(self.hosted(Participant)),
            "track_forwarders": len(self.hosted(TrackForwarder)),
            "peers": len(self._peers),
            "room_directories": len(self._rooms),
            **self._media.census(),
            "asyncio_tasks": len(asyncio.all_tasks()),
        }

    async def task_names(self) -> dict[str, int]:
        """This worker's asyncio tasks by name (what a census' task count is made of)."""
        return dict(Counter(getattr(t.get_coro(), "__qualname__", t.get_name()) for t in asyncio.all_tasks()))

    def _peer(self, sid: str) -> ParticipantPeers:
        peers = self._peers.get(sid)
        if peers is None:
            raise NotFoundError(f"participant {sid} is not on {self.name}")
        return peers

    async def _apply_delivery(self, delivery: _Delivery) -> None:
        for sid in delivery.dest_sids:
            self._deliver_local(delivery.room, sid, delivery.payload, delivery.reliable)

    def _on_data(self, peers: ParticipantPeers, label: str, message: bytes | str) -> None:
        """A message on a client's publisher data channel: route it, or drop it with a (rate-limited) log."""
        self._counters["data_received"] += 1
        room = self._rooms.get(peers.room)
        sender = room.by_sid.get(peers.sid) if room is not None else None
        try:
            if room is None or sender is None:
                raise DataPacketRefused("unknown_sender", f"{peers!r} is not in the room directory")
            if isinstance(message, str):
                raise DataPacketRefused("unparseable", "text message")
            self._check_data_limits(peers.sid, len(message))
            routed = route(message, label, sender, room.directory)
        except DataPacketRefused as e:
            self._counters[f"dropped_{e.reason}"] += 1
            if e.reason != "no_permission":
                self._ratelog.warning(e.reason, "%s: data from %r dropped: %s", self.name, peers, e)
            elif peers.sid not in self._refused_senders:
                self._refused_senders.add(peers.sid)
                log.warning("%s: %r may not publish data; dropping its packets", self.name, peers)
            return
        if routed.reliable and routed.sequence:
            if routed.sequence <= self._last_reliable.get(peers.sid, 0):
                self._counters["dropped_data_resent"] += 1  # re-sent after a resume, delivered before
                return
            self._last_reliable[peers.sid] = routed.sequence
        remote: dict[str, list[str]] = {}
        for sid in routed.dest_sids:
            worker = room.by_sid[sid].worker
            if worker == self.name:
                self._deliver_local(peers.room, sid, routed.payload, routed.reliable)
            else:
                remote.setdefault(worker, []).append(sid)
        for worker, sids in remote.items():
            self._links.send(worker, Outgoing(peers.room, routed.payload, routed.reliable, tuple(sids)))

    def _check_data_limits(self, sid: str, size: int) -> None:
        """Raise DataPacketRefused for a packet over the sender's size or rate limits (before parsing it)."""
        limit = self.limits
        if limit.max_data_packet_size and size > limit.max_data_packet_size:
            raise DataPacketRefused("oversized", f"{size} bytes (limit.max_data_packet_size)")
        rates = self._data_rates.get(sid)
        if rates is None:
            rates = (
                limits.RateLimit(limit.data_packets_per_second),
                limits.RateLimit(limit.data_bytes_per_second),
            )
            self._data_rates[sid] = rates
        if not rates[0].take():
            raise DataPacketRefused("rate_limited", "over limit.data_packets_per_second")
        if not rates[1].take(size):
            raise DataPacketRefused("rate_limited", "over limit.data_bytes_per_second")

    def _deliver_local(self, room: str, sid: str, payload: bytes, reliable: bool) -> bool:
        peers = self._peers.get(sid)
        reason = "not_hosted" if peers is None or peers.room != room else peers.send(payload, reliable)
        if reason is not None:
            self._counters[f"dropped_{reason}"] += 1
            return False
        self._counters["data_delivered"] += 1
        return True


def create_media_worker(
    name: str, settings: MediaSettings, node_id: str | None = None, webhook: WebhookSettings | None = None
) -> Any:
    """Start the named, detached MediaWorker actor, pinned to `node_id` when given; returns its handle."""
    options = actor_options(name, node_id, max_concurrency=MAX_CONCURRENCY)
    return ray.remote(MediaWorker).options(**options).remote(name, settings, None, webhook)
