"""relay-nodes: one video publisher fanned out to subscribers on three Ray nodes.

The cluster is the tests' (tests/cluster/nodes.py): three network-namespace nodes on a private bridge,
started as README says, one media worker each. The publisher and a third of the subscribers connect through
node 1's gateway (so they are placed on node 1's worker); the others through nodes 2 and 3, whose workers get
one relayed copy of the track each and fan it out to their subscribers. The figures compare the subscribers
on the publisher's node with those one relay hop away: latency (the hop's cost), loss, and each node's CPU,
its media worker's CPU per packet it sent, and the relayed packets.
"""

import asyncio
import json
import secrets
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from livekit import api as lkapi

from bench.proc import ProcessCpu, ProcStat
from bench.result import ScenarioError, new_result
from bench.scenarios import MEDIA_WORKER_COMM, WARMUP, MediaPlan, Options, wait_media
from bench.workers import parse_workers, workers_command
from loadgen import stats
from loadgen.livekit_peer import LiveKitPeer
from loadgen.rtp_peer import StreamCounter, summary
from tests.cluster.nodes import API_KEY, API_SECRET, ClusterError, Node, cluster
from tests.interop.media import track_stats, worker_of

MEDIA = {"workers_per_node": 1, "participants_per_worker": 1000, "payload_digests": 0}


def _token(identity: str, room: str) -> str:
    grants = lkapi.VideoGrants(room_join=True, room=room)
    return lkapi.AccessToken(API_KEY, API_SECRET).with_identity(identity).with_grants(grants).to_jwt()


def _node_cpu(node: Node, media_worker_only: bool) -> ProcessCpu:
    def select(all_stats: Mapping[int, ProcStat]) -> Iterable[int]:
        pids = node.pids()
        if media_worker_only:
            return [p for p in pids if p in all_stats and all_stats[p].comm == MEDIA_WORKER_COMM]
        return pids

    return ProcessCpu(select)


async def _media_stats(node: Node) -> dict[str, dict[str, Any]]:
    done = await asyncio.to_thread(node.run, workers_command("media_stats"))
    return parse_workers(done, "media_stats")


def _relayed(worker_stats: dict[str, dict[str, Any]], home: str, track: str) -> dict[str, int]:
    """Packets of `track` the home worker relayed, per receiving worker, since the track started."""
    relays = track_stats(worker_stats, home, track).get("relay_out", {})
    return {worker: int(r.get("packets", 0)) for worker, r in relays.items()}


def _hop(relayed: list[float], local: float | None) -> float | None:
    """The relayed nodes' mean figure minus the publisher's node's."""
    return round(sum(relayed) / len(relayed) - local, 3) if relayed and local is not None else None


def _sid(peer: LiveKitPeer) -> str:
    if peer.join is None:
        raise ScenarioError(f"{peer.identity} has no JoinResponse")
    return peer.join.participant.sid


def _group(counters: list[StreamCounter]) -> dict[str, Any]:
    total = summary(counters)
    lat = total["latencies_ms"]
    return {
        "subscribers": len(counters),
        "forwarded_packets": total["unique_packets"],
        "stream_packets": max((len(c.indexes) for c in counters), default=0),
        "loss_pct": stats.rounded(stats.loss_pct(int(total["expected_packets"]), total["unique_packets"]), 3),
        "latency_ms_p50": stats.rounded(stats.percentile(lat, 50), 3),
        "latency_ms_p99": stats.rounded(stats.percentile(lat, 99), 3),
    }


async def _run(nodes: list[Node], plan: MediaPlan, duration: float, log_dir: Path) -> dict[str, Any]:
    room = f"relay-nodes-{secrets.token_hex(3)}"
    publisher = LiveKitPeer(nodes[0].url, _token("pub", room), "pub")
    subscribers = [
        LiveKitPeer(nodes[i % len(nodes)].url, _token(f"s{i}", room), f"s{i}") for i in range(plan.n)
    ]
    node_of = {id(s): i % len(nodes) for i, s in enumerate(subscribers)}
    peers = [publisher, *subscribers]
    try:
        join_ms = [await publisher.connect()]
        for start in range(0, plan.n, 5):
            join_ms += await asyncio.gather(*(s.connect() for s in subscribers[start : start + 5]))
        track = await publisher.publish("video", video=plan.video(), max_seconds=duration + 120)

        def counters(on: int | None = None) -> list[StreamCounter]:
            return [
                c
                for s in subscribers
                if on is None or node_of[id(s)] == on
                for c in s.counters.values()
                if c.kind == "video"
            ]

        if not await wait_media(counters, plan.n):
            live = sum(1 for c in counters() if c.packets > 0)
            raise ScenarioError(f"only {live} of {plan.n} subscribers received the video")
        await asyncio.sleep(WARMUP)
        meters = [(_node_cpu(n, False), _node_cpu(n, True)) for n in nodes]
        for c in counters():
            c.reset()
        for meter in (m for pair in meters for m in pair):
            meter.start()
        started = time.monotonic()
        while (left := started + duration - time.monotonic()) > 0:
            await asyncio.sleep(min(1.0, left))
            for meter in (m for pair in meters for m in pair):
                await asyncio.to_thread(meter.sample)
        seconds = time.monotonic() - started
        groups = [_group([c.snapshot() for c in counters(i)]) for i in range(len(nodes))]
        after = await _media_stats(nodes[0])
        (log_dir / "media_stats.json").write_text(json.dumps(after, indent=1))
        home = worker_of(after, _sid(publisher))
        # Each node's worker: the one hosting that node's first subscriber (s0 on node 1, s1 on node 2, ...).
        workers = [worker_of(after, _sid(subscribers[i])) for i in range(len(nodes))]
    finally:
        await asyncio.gather(*(p.close() for p in peers), return_exceptions=True)

    relayed = _relayed(after, home, track)
    stream = max(group["stream_packets"] for group in groups)  # the track's packets in the window
    per_node: list[dict[str, Any]] = []
    for i, (node_cpu, worker_cpu) in enumerate(meters):
        group = groups[i]
        worker_name = workers[i]
        copies = len(relayed) if worker_name == home else 0
        sent = group["forwarded_packets"] + copies * stream
        per_node.append(
            {
                "node": nodes[i].name,
                "media_worker": worker_name,
                **group,
                "node_cpu_pct": round(node_cpu.seconds() * 100 / seconds, 1),
                "media_worker_cpu_pct": round(worker_cpu.seconds() * 100 / seconds, 1),
                "media_worker_cpu_us_per_sent_packet": stats.rounded(
                    stats.cpu_us_per_packet(worker_cpu.seconds(), sent), 2
                ),
                "relay_copy_in": worker_name in relayed,
            }
        )
    local, remote = per_node[0], per_node[1:]
    remote_p50 = [n["latency_ms_p50"] for n in remote if n["latency_ms_p50"] is not None]
    remote_p99 = [n["latency_ms_p99"] for n in remote if n["latency_ms_p99"] is not None]
    everything = _group([c for i in range(len(nodes)) for c in counters(i)])
    total_cpu = sum(node_cpu.seconds() for node_cpu, _ in meters)
    return {
        "cpu_us_per_forwarded_packet": stats.rounded(
            stats.cpu_us_per_packet(total_cpu, everything["forwarded_packets"]), 2
        ),
        "forwarded_pps": round(everything["forwarded_packets"] / seconds, 1),
        "loss_pct": everything["loss_pct"],
        "latency_ms_p50": everything["latency_ms_p50"],
        "latency_ms_p99": everything["latency_ms_p99"],
        "join_ms_p50": stats.rounded(stats.percentile(join_ms, 50), 1),
        "join_ms_p99": stats.rounded(stats.percentile(join_ms, 99), 1),
        "added_latency_per_hop_ms_p50": _hop(remote_p50, local["latency_ms_p50"]),
        "added_latency_per_hop_ms_p99": _hop(remote_p99, local["latency_ms_p99"]),
        "relay_copies": len(relayed),
        "relayed_packets_since_publish": sum(relayed.values()),
        "cluster_cpu_pct": round(total_cpu * 100 / seconds, 1),
        "window_s": round(seconds, 2),
        "nodes": per_node,
    }


def run_relay_nodes(opts: Options) -> list[dict[str, Any]]:
    plan = MediaPlan("relay-nodes", 3 if opts.smoke else 12)
    result = new_result(
        f"relay-nodes-{plan.n}", n=plan.n, duration_s=opts.duration, nodes=3,
        video_bitrate=plan.video_bitrate, fps=plan.fps,
    )  # fmt: skip
    log_dir = opts.log_dir / result["scenario"]
    log_dir.mkdir(parents=True, exist_ok=True)
    try:
        with cluster(log_dir, media=MEDIA) as nodes:
            result.update(asyncio.run(_run(nodes, plan, opts.duration, log_dir)))
    except ClusterError as exc:
        raise ScenarioError(str(exc)) from exc
    result["notes"].append(
        "three Ray nodes in network namespaces on one machine (tests/cluster/nodes.py), one media worker "
        "each; the publisher and subscribers s0, s3, ... through node 1's gateway, s1, s4, ... node 2's, "
        "s2, s5, ... node 3's; added_latency_per_hop: the relayed nodes' mean latency minus node 1's; "
        "node_cpu: every process of the node's namespace (its Ray daemons included); "
        "media_worker_cpu_us_per_sent_packet: per packet the worker sent to its subscribers and, on node 1, "
        "to the other workers"
    )
    return [result]
