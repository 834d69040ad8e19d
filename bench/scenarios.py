"""The scenarios: join (official SDK), audio-room, fanout, relay (light generator), each against raysfu and,
for audio-room and fanout, against Janus side by side."""

import asyncio
import json
import logging
import math
import os
import secrets
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from actors.media import relay
from bench.janus import JanusPeer, JanusSession, create_room, running_janus
from bench.measure import Window, measure_window, server_pss_mb
from bench.proc import CLOCK_TICKS, descendants, read_stats
from bench.result import ScenarioError, new_result
from bench.server import Server, running_raysfu
from bench.workers import call_workers
from loadgen import rtp, stats
from loadgen.livekit_peer import LiveKitPeer
from loadgen.rtp_peer import StreamCounter, summary

log = logging.getLogger(__name__)

MEDIA_WAIT = 30.0  # seconds for every subscriber to receive its first packet of every stream
WARMUP = 2.0
IDLE_WINDOW = 8.0  # seconds of the connected-but-silent window after the media window (at most the duration)
MEDIA_WORKER_COMM = "ray::MediaWorke"  # a MediaWorker actor's process name, as /proc cuts it (15 chars)
SETTLE = 2.0  # seconds between stopping the senders and that window
JOIN_BATCH = 5  # light peers joining at once
JOIN_ROUND_EVERY = 5.0  # seconds between two rounds of joins in fanout-joins
# audio-room: seconds between two batches of joins (each publishing at once): a room fills over seconds,
# and the media workers measure their load every second (placement sees each batch's packets)
FILL_PAUSE = 1.0


@dataclass(frozen=True)
class Options:
    duration: float
    log_dir: Path
    smoke: bool = False
    sizes: tuple[int, ...] | None = None  # audio-room/fanout sizes instead of the scenario's own


# ----- join (official SDK) ----------------------------------------------------------------------------


async def _sdk_join(server: Server, identity: str, room: str) -> tuple[Any, float]:
    from livekit import rtc  # the SDK is a test extra; imported only by this scenario

    started = time.monotonic_ns()
    jwt = server.token(identity, room)
    client = rtc.Room()
    await client.connect(server.url, jwt)
    return client, (time.monotonic_ns() - started) / 1e6


@dataclass
class Burst:
    """Concurrent SDK joins into one new room."""

    ms: list[float]
    failures: list[str]
    wall_s: float
    clients: list[Any]


async def _burst(server: Server, prefix: str, n: int) -> Burst:
    room = f"join-conc-{secrets.token_hex(3)}"
    started = time.monotonic()
    outcomes = await asyncio.gather(
        *(_sdk_join(server, f"{prefix}{i}", room) for i in range(n)), return_exceptions=True
    )
    wall = time.monotonic() - started
    joined = [o for o in outcomes if not isinstance(o, BaseException)]
    failures = [f"{type(o).__name__}: {o}" for o in outcomes if isinstance(o, BaseException)]
    return Burst([ms for _, ms in joined], failures, wall, [client for client, _ in joined])


async def _join_run(
    server: Server, sequential: int, concurrent: int, light: int, idle_s: float
) -> dict[str, Any]:
    """An empty server's processes, PSS and CPU; then `sequential` SDK joins (rooms of two) and the same
    with them connected; they leave; `concurrent` SDK joins at once into one new room; they leave; then
    `light` light peers (rooms of two, JOIN_BATCH at a time) and the idle server with them connected."""
    processes_empty = await asyncio.to_thread(_server_processes, server.pid)
    empty = await measure_window(server.pid, idle_s)
    base = await server_pss_mb(server.pid)
    clients: list[Any] = []
    seq_ms: list[float] = []
    tag = secrets.token_hex(2)
    cpu_start = await asyncio.to_thread(_tree_cpu_now, server.pid)
    t0 = time.monotonic()
    for i in range(sequential):
        client, ms = await _sdk_join(server, f"p{i}", f"join-{tag}-{i // 2}")
        clients.append(client)
        seq_ms.append(ms)
        if (i + 1) % 20 == 0:
            print(f"   {i + 1} sequential joins, last {ms:.0f} ms", file=sys.stderr, flush=True)
    seq_wall = time.monotonic() - t0
    join_cpu_s = (await asyncio.to_thread(_tree_cpu_now, server.pid)) - cpu_start
    await asyncio.sleep(2)  # let the last participant updates settle
    with_n = await server_pss_mb(server.pid)
    processes_with_n = await asyncio.to_thread(_server_processes, server.pid)
    idle = await measure_window(server.pid, idle_s)
    for client in clients:
        await client.disconnect()
    await asyncio.sleep(2)
    settled = await _burst(server, "c", concurrent)
    for client in settled.clients:
        await client.disconnect()
    light_run = await _light_run(server, light, idle_s)
    return {
        "processes_empty": processes_empty,
        "processes_with_n": processes_with_n,
        "empty": empty,
        "pss_base_mb": round(base, 1),
        "pss_with_n_mb": round(with_n, 1),
        "sequential_ms": seq_ms,
        "sequential_wall_s": seq_wall,
        "sequential_server_cpu_s": join_cpu_s,
        "settled": settled,
        "idle": idle,
        **light_run,
    }


async def _light_run(server: Server, n: int, idle_s: float) -> dict[str, Any]:
    """`n` light peers in rooms of two, all connected at once: how many made it, the server idle."""
    peers: list[LiveKitPeer] = []
    failures: list[str] = []
    tag = secrets.token_hex(2)
    try:
        for start in range(0, n, JOIN_BATCH):
            batch = [
                LiveKitPeer(server.url, server.token(f"l{i}", f"light-{tag}-{i // 2}"), f"l{i}")
                for i in range(start, min(n, start + JOIN_BATCH))
            ]
            outcomes = await asyncio.gather(*(p.connect() for p in batch), return_exceptions=True)
            for peer, outcome in zip(batch, outcomes, strict=True):
                if isinstance(outcome, BaseException):
                    failures.append(f"{type(outcome).__name__}: {outcome}")
                    await peer.close()
                else:
                    peers.append(peer)
            if (start + JOIN_BATCH) % 100 == 0:
                print(f"   {start + JOIN_BATCH} light peers", file=sys.stderr, flush=True)
        await asyncio.sleep(2)
        processes = await asyncio.to_thread(_server_processes, server.pid)
        pss = await server_pss_mb(server.pid)
        idle = await measure_window(server.pid, idle_s)
        return {
            "light_connected": len(peers),
            "light_failures": failures,
            "light_processes": processes,
            "light_pss_mb": round(pss, 1),
            "light_idle": idle,
        }
    finally:
        await asyncio.gather(*(p.close() for p in peers), return_exceptions=True)


def _tree_cpu_now(pid: int) -> float:
    all_stats = read_stats()
    return sum(all_stats[p].utime + all_stats[p].stime for p in descendants(all_stats, pid)) / CLOCK_TICKS


def _server_processes(pid: int) -> int:
    return len(descendants(read_stats(), pid))


def _burst_figures(burst: Burst, key: str) -> dict[str, Any]:
    return {
        f"{key}_ms_p50": stats.rounded(stats.percentile(burst.ms, 50), 1),
        f"{key}_ms_p99": stats.rounded(stats.percentile(burst.ms, 99), 1),
        f"{key}_wall_s": round(burst.wall_s, 2),
        f"{key}_failed": len(burst.failures),
        f"{key}_errors": sorted(set(burst.failures))[:5],
        f"{key}_ms_all": [round(x, 1) for x in burst.ms],
    }


def _ms_per_s(window: Window) -> float:
    return window.server_cpu_s * 1000 / window.seconds


def run_join(opts: Options) -> dict[str, Any]:
    sequential, concurrent, light = (10, 5, 10) if opts.smoke else (100, 50, 500)
    idle_s = min(opts.duration, 10.0)
    result = new_result(
        "join", sequential=sequential, concurrent=concurrent, light=light, client="livekit python SDK"
    )
    with running_raysfu(opts.log_dir / "join") as server:
        run = asyncio.run(_join_run(server, sequential, concurrent, light, idle_s))
    seq = run["sequential_ms"]
    empty: Window = run["empty"]
    idle: Window = run["idle"]
    light_idle: Window = run["light_idle"]
    result.update(
        join_ms_p50=stats.rounded(stats.percentile(seq, 50), 1),
        join_ms_p99=stats.rounded(stats.percentile(seq, 99), 1),
        **_burst_figures(run["settled"], "join_concurrent"),
        join_sequential_wall_s=round(run["sequential_wall_s"], 2),
        server_cpu_ms_per_join=round(run["sequential_server_cpu_s"] * 1000 / sequential, 1),
        server_processes_empty=run["processes_empty"],
        server_processes_with_n=run["processes_with_n"],
        server_processes_with_light=run["light_processes"],
        server_empty_cpu_ms_per_s=round(_ms_per_s(empty), 1),
        server_empty_cpu_ms_per_s_by_process={
            k: round(v * 1000 / empty.seconds, 1) for k, v in sorted(empty.server_cpu_by_process.items())
        },
        server_idle_cpu_ms_per_s_per_participant=round((_ms_per_s(idle) - _ms_per_s(empty)) / sequential, 2),
        pss_mb_server_idle=run["pss_base_mb"],
        pss_mb_server_with_n=run["pss_with_n_mb"],
        pss_mb_per_participant=round((run["pss_with_n_mb"] - run["pss_base_mb"]) / sequential, 2),
        idle_server_cpu_pct_with_n=round(idle.server_cpu_s * 100 / idle.seconds, 1),
        light_connected=run["light_connected"],
        light_failed=len(run["light_failures"]),
        light_errors=sorted(set(run["light_failures"]))[:5],
        light_server_idle_cpu_pct=round(light_idle.server_cpu_s * 100 / light_idle.seconds, 1),
        light_pss_mb=run["light_pss_mb"],
        light_server_idle_cpu_ms_per_s_per_participant=round(
            (_ms_per_s(light_idle) - _ms_per_s(empty)) / max(run["light_connected"], 1), 3
        ),
        sdk_client_cpu_ms_per_s_idle=round(idle.generator_cpu_s * 1000 / idle.seconds / sequential, 2),
        join_ms_all_sequential=[round(x, 1) for x in seq],
    )
    result["notes"].append(
        "join time = token minted -> rtc.Room.connect() returned (signalling + subscriber PC connected); "
        "sequential joins go into rooms of two; PSS per participant = (server tree PSS with all sequential "
        "joiners connected - empty) / N; idle CPU per participant = (idle server with N connected - empty "
        "server) / N, each over the same window; join_concurrent = that many SDK joins at once into one new "
        "room; light = light peers (loadgen.livekit_peer) in rooms of two, connected JOIN_BATCH at a time, "
        "then an idle window with all of them connected"
    )
    return result


# ----- media scenarios (light generator) ---------------------------------------------------------------


@dataclass(frozen=True)
class MediaPlan:
    scenario: str
    n: int  # audio-room: participants (all publish audio); fanout/relay: subscribers (+1 video publisher)
    video_bitrate: int = 1_500_000
    fps: int = 30
    keyframe_every_s: float = 3.0

    @property
    def is_audio_room(self) -> bool:
        return self.scenario == "audio-room"

    @property
    def participants(self) -> int:
        return self.n if self.is_audio_room else self.n + 1

    @property
    def published_tracks(self) -> int:
        return self.n if self.is_audio_room else 1

    @property
    def expected_streams(self) -> int:
        """Forwarded streams in total (subscriber x track)."""
        return self.n * (self.n - 1) if self.is_audio_room else self.n

    def video(self) -> rtp.VideoSource:
        return rtp.VideoSource(
            bitrate=self.video_bitrate, fps=self.fps, keyframe_every_s=self.keyframe_every_s
        )


@dataclass
class MediaRun:
    join_ms: list[float]
    first_media_ms: list[float]
    counters: list[StreamCounter]
    window: Window
    idle: Window
    pss_base: float
    pss_joined: float
    pss_media: float
    sent_packets: int
    late_ticks: int
    keyframe_requests: int
    extra: dict[str, Any]


async def wait_media(counters: Callable[[], list[StreamCounter]], expected: int) -> bool:
    deadline = time.monotonic() + MEDIA_WAIT
    while time.monotonic() < deadline:
        live = [c for c in counters() if c.packets > 0]
        if len(live) >= expected:
            return True
        await asyncio.sleep(0.2)
    return False


async def _measure(
    server_pid: int,
    plan: MediaPlan,
    duration: float,
    counters: Callable[[], list[StreamCounter]],
    senders: Callable[[], list[Any]],
    during: Callable[[], Awaitable[object]] | None = None,
) -> tuple[Window, Window, list[StreamCounter]]:
    """The media window, then the idle window: the same sessions still connected, the senders stopped.
    The idle window's rate is the server's fixed cost for these sessions (Ray processes, ICE consent, RTCP);
    what the media window spends above it is the cost of forwarding. `during` runs as the window starts,
    and is waited for before it ends."""
    if not await wait_media(counters, plan.expected_streams):
        live = [c for c in counters() if c.packets > 0]
        if not live:
            raise ScenarioError(
                f"no media forwarded: 0 of {plan.expected_streams} subscriber streams received a packet "
                f"within {MEDIA_WAIT:.0f} s (is the media plane forwarding?)"
            )
        log.warning("only %d of %d streams receive media", len(live), plan.expected_streams)
    await asyncio.sleep(WARMUP)
    for c in counters():
        c.reset()
    for s in senders():
        s.stats.late_ticks = 0
    background = asyncio.ensure_future(during()) if during is not None else None
    window = await measure_window(server_pid, duration)
    final = [c.snapshot() for c in counters()]  # what arrives after the window is not the window's
    if background is not None:
        await background
    await asyncio.gather(*(s.stop() for s in senders()))
    await asyncio.sleep(SETTLE)
    idle = await measure_window(server_pid, min(IDLE_WINDOW, duration))
    return window, idle, final


async def _raysfu_media(
    server: Server, plan: MediaPlan, duration: float, log_dir: Path, joiners: int = 0
) -> MediaRun:
    room = f"{plan.scenario}-{secrets.token_hex(3)}"
    pss_base = await server_pss_mb(server.pid)
    peers: list[LiveKitPeer] = []
    join_ms: list[float] = []
    others: list[LiveKitPeer] = []
    others_ms: list[float] = []

    async def join_others() -> None:
        """A round of `joiners` light peers joining other rooms (of two) at once every JOIN_ROUND_EVERY s,
        each round leaving as the next joins, for as long as the window lasts, while the media flows."""
        loop = asyncio.get_running_loop()
        end = loop.time() + duration
        rounds = 0
        while (started := loop.time()) < end:
            tag = f"{secrets.token_hex(2)}-{rounds}"
            batch = [
                LiveKitPeer(
                    server.url, server.token(f"j{i}", f"{plan.scenario}-joins-{tag}-{i // 2}"), f"j{i}"
                )
                for i in range(joiners)
            ]
            outcomes = await asyncio.gather(*(p.connect() for p in batch), return_exceptions=True)
            others_ms.extend(o for o in outcomes if isinstance(o, float))
            others.extend(batch)
            await asyncio.sleep(max(0.0, min(started + JOIN_ROUND_EVERY, end) - loop.time()))
            await asyncio.gather(*(p.close() for p in batch), return_exceptions=True)
            rounds += 1

    try:
        for start in range(0, plan.participants, JOIN_BATCH):
            batch = [
                LiveKitPeer(server.url, server.token(f"p{i}", room), f"p{i}")
                for i in range(start, min(plan.participants, start + JOIN_BATCH))
            ]
            peers.extend(batch)
            join_ms.extend(await asyncio.gather(*(p.connect() for p in batch)))
            if plan.is_audio_room:  # each publishes its microphone as it joins, as the SDKs' users do
                for p in batch:
                    await p.publish("audio", max_seconds=duration + 120)
                await asyncio.sleep(FILL_PAUSE)
        await asyncio.sleep(1)
        pss_joined = await server_pss_mb(server.pid)
        if not plan.is_audio_room:
            await peers[0].publish("video", video=plan.video(), max_seconds=duration + 120)
        subscribers = peers if plan.is_audio_room else peers[1:]

        run = await _measured_run(
            server.pid, plan, duration, peers, subscribers, join_ms, pss_base, pss_joined,
            lambda: {"client_errors": sorted({e for p in peers for e in p.errors})[:10]},
            join_others if joiners else None,
        )  # fmt: skip
        if plan.scenario in ("relay", "audio-room"):  # while everyone is still connected
            run.extra["media_workers"] = await asyncio.to_thread(_worker_summary, log_dir)
        if joiners:
            run.extra.update(
                joins_during_window=len(others),
                joins_during_window_connected=len(others_ms),
                joins_during_window_ms_p50=stats.rounded(stats.percentile(others_ms, 50), 1),
                joins_during_window_ms_p99=stats.rounded(stats.percentile(others_ms, 99), 1),
            )
        return run
    finally:
        await asyncio.gather(*(p.close() for p in [*peers, *others]), return_exceptions=True)


async def _measured_run(
    pid: int,
    plan: MediaPlan,
    duration: float,
    peers: Sequence[Any],
    subscribers: Sequence[Any],
    join_ms: list[float],
    pss_base: float,
    pss_joined: float,
    extra: Callable[[], dict[str, Any]],
    during: Callable[[], Awaitable[object]] | None = None,
) -> MediaRun:
    """Measure a connected room (raysfu's or Janus's, same peers' interface) and gather its figures."""

    def counters() -> list[StreamCounter]:
        return [c for p in subscribers for c in p.counters.values() if c.kind in ("audio", "video")]

    def senders() -> list[Any]:
        return [s for p in peers for s in p.senders]

    window, idle, final = await _measure(pid, plan, duration, counters, senders, during)
    pss_media = await server_pss_mb(pid)
    return MediaRun(
        join_ms=join_ms,
        first_media_ms=[c.first_media_ms for c in final if c.first_media_ms is not None],
        counters=final,
        window=window,
        idle=idle,
        pss_base=pss_base,
        pss_joined=pss_joined,
        pss_media=pss_media,
        sent_packets=sum(s.stats.packets for s in senders()),
        late_ticks=sum(s.stats.late_ticks for s in senders()),
        keyframe_requests=sum(s.listener.requests for s in senders()),
        extra=extra(),
    )


async def _janus_media(janus_pid: int, url: str, plan: MediaPlan, duration: float) -> MediaRun:
    session = JanusSession(url)
    await session.open()
    room = 1000 + secrets.randbelow(100000)
    peers: list[JanusPeer] = []
    try:
        pss_base = await server_pss_mb(janus_pid)
        await create_room(session, room, publishers=max(plan.n, 2) + 1)
        join_ms: list[float] = []
        if plan.is_audio_room:
            peers = [JanusPeer(session, room, i + 1, f"p{i}") for i in range(plan.n)]
            for p in peers:
                await p.publish(["audio"], max_seconds=duration + 120)
            pss_joined = await server_pss_mb(janus_pid)
            for p in peers:
                t = time.monotonic_ns()
                await p.subscribe([q.feed_id for q in peers if q is not p], started_ns=t)
                join_ms.append(p.connect_ms or 0.0)
            subscribers = peers
        else:
            publisher = JanusPeer(session, room, 1, "pub")
            peers = [publisher]
            await publisher.publish(["video"], video=plan.video(), max_seconds=duration + 120)
            pss_joined = await server_pss_mb(janus_pid)
            subscribers = [JanusPeer(session, room, i + 2, f"s{i}") for i in range(plan.n)]
            peers.extend(subscribers)
            for s in subscribers:
                await s.subscribe([1], started_ns=time.monotonic_ns())
                join_ms.append(s.connect_ms or 0.0)

        return await _measured_run(
            janus_pid, plan, duration, peers, subscribers, join_ms, pss_base, pss_joined, dict
        )
    finally:
        await asyncio.gather(*(p.close() for p in peers), return_exceptions=True)
        await session.close()


def media_figures(plan: MediaPlan, run: MediaRun) -> dict[str, Any]:
    total = summary(run.counters)
    forwarded = int(total["unique_packets"])
    w = run.window
    idle_rate = run.idle.server_cpu_s / run.idle.seconds
    lat = total["latencies_ms"]
    return {
        "cpu_us_per_forwarded_packet": stats.rounded(stats.cpu_us_per_packet(w.server_cpu_s, forwarded), 2),
        "cpu_us_per_forwarded_packet_above_idle": stats.rounded(
            stats.cpu_us_per_packet(w.server_cpu_s - idle_rate * w.seconds, forwarded), 2
        ),
        "forwarded_pps": round(forwarded / w.seconds, 1),
        "loss_pct": stats.rounded(stats.loss_pct(int(total["expected_packets"]), forwarded), 3),
        "latency_ms_p50": stats.rounded(stats.percentile(lat, 50), 3),
        "latency_ms_p99": stats.rounded(stats.percentile(lat, 99), 3),
        "join_ms_p50": stats.rounded(stats.percentile(run.join_ms, 50), 1),
        "join_ms_p99": stats.rounded(stats.percentile(run.join_ms, 99), 1),
        "first_media_ms_p50": stats.rounded(stats.percentile(run.first_media_ms, 50), 1),
        "first_media_ms_p99": stats.rounded(stats.percentile(run.first_media_ms, 99), 1),
        "pss_mb_per_participant": round((run.pss_joined - run.pss_base) / plan.participants, 2),
        "pss_mb_per_published_track": round((run.pss_media - run.pss_joined) / plan.published_tracks, 2),
        "server_cpu_pct": round(w.server_cpu_s * 100 / w.seconds, 1),
        "server_cpu_by_process_s": dict(list(w.server_cpu_by_process.items())[:12]),
        "media_workers_cpu_us_per_forwarded_packet": stats.rounded(
            stats.cpu_us_per_packet(_media_workers_cpu_s(w), forwarded), 2
        ),
        "server_idle_cpu_pct": round(idle_rate * 100, 1),
        "server_idle_cpu_ms_per_s_per_participant": round(idle_rate * 1000 / plan.participants, 2),
        "server_idle_cpu_by_process_s": dict(list(run.idle.server_cpu_by_process.items())[:12]),
        "idle_window_s": round(run.idle.seconds, 2),
        "generator_cpu_pct": round(w.generator_cpu_s * 100 / w.seconds, 1),
        "generator_cpu_ms_per_s_per_participant": round(
            w.generator_cpu_s * 1000 / w.seconds / plan.participants, 3
        ),
        "window_s": round(w.seconds, 2),
        "loadavg_at_end": [round(x, 2) for x in w.loadavg],
        "streams_receiving": sum(1 for c in run.counters if c.packets > 0),
        "streams_expected": plan.expected_streams,
        "sent_packets_total": run.sent_packets,
        "generator_late_ticks": run.late_ticks,
        "keyframe_requests_at_publishers": run.keyframe_requests,
        "packets_without_trailer": total["no_trailer"],
        **run.extra,
    }


def _media_workers_cpu_s(window: Window) -> float:
    """CPU of raysfu's media worker processes in a window (0 for a server without them)."""
    return window.server_cpu_by_process.get(MEDIA_WORKER_COMM, 0.0)


def _ratios(ours: dict[str, Any], peer: dict[str, Any]) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for key in (
        "cpu_us_per_forwarded_packet",
        "cpu_us_per_forwarded_packet_above_idle",
        "loss_pct",
        "latency_ms_p50",
        "latency_ms_p99",
    ):
        a, b = ours.get(key), peer.get(key)
        out[key] = (
            round(a / b, 2) if isinstance(a, int | float) and isinstance(b, int | float) and b else None
        )
    return out


def run_media(
    plan: MediaPlan,
    opts: Options,
    extra_args: tuple[str, ...] = (),
    with_janus: bool = True,
    joiners: int = 0,
) -> dict[str, Any]:
    result = new_result(
        f"{plan.scenario}-{plan.n}", n=plan.n, duration_s=opts.duration, server_args=list(extra_args),
        video_bitrate=None if plan.is_audio_room else plan.video_bitrate,
        fps=None if plan.is_audio_room else plan.fps, audio="opus-like 20 ms, 80 B payload",
    )  # fmt: skip
    log_dir = opts.log_dir / result["scenario"]
    with running_raysfu(log_dir, extra_args=extra_args) as server:
        run = asyncio.run(_raysfu_media(server, plan, opts.duration, log_dir, joiners))
        ours = media_figures(plan, run)
    result.update(ours)
    if with_janus:
        try:
            with running_janus(log_dir) as janus:
                peer_run = asyncio.run(_janus_media(janus.pid, janus.url, plan, opts.duration))
            peer = media_figures(plan, peer_run)
            result["janus"] = peer
            result["raysfu_over_janus"] = _ratios(ours, peer)
        except Exception as exc:  # the peer is reported, never silently left out
            log.exception("janus run failed")
            result["janus"] = {"error": f"{type(exc).__name__}: {exc}"}
    return result


def _worker_summary(log_dir: Path) -> dict[str, Any]:
    """Per media worker: participants, tracks, and subscribers per track (from its media_stats())."""
    try:
        raw = call_workers("media_stats")
    except ScenarioError as exc:
        return {"error": str(exc)}
    (log_dir / "media_stats.json").write_text(json.dumps(raw, indent=1))
    return {
        name: {
            "participants": len(s.get("participants", ())),
            "tracks": {
                sid: {
                    "subscribers": len(t.get("subscribers", {})),
                    **{k: v for k, v in t.items() if "relay" in k},
                }
                for sid, t in s.get("tracks", {}).items()
            },
            **{k: v for k, v in s.items() if "relay" in k},
        }
        for name, s in raw.items()
    }


SCENARIOS: dict[str, Callable[[Options], dict[str, Any] | list[dict[str, Any]]]] = {}


def _sizes(scenario: str, sizes: tuple[int, ...], opts: Options) -> list[dict[str, Any]]:
    """One result per size; a size that fails gets a result with its error, the next one still runs."""
    out: list[dict[str, Any]] = []
    for n in opts.sizes or sizes:
        try:
            out.append(run_media(MediaPlan(scenario, n), opts, with_janus=not opts.smoke))
        except ScenarioError as exc:
            failed = new_result(f"{scenario}-{n}", n=n)
            failed["error"] = str(exc)
            out.append(failed)
    return out


def _audio_room(opts: Options) -> list[dict[str, Any]]:
    results = _sizes("audio-room", (4,) if opts.smoke else (10, 25), opts)
    for result in results:
        result["notes"].append(
            f"raysfu: batches of {JOIN_BATCH} join, each publishing its audio at once, {FILL_PAUSE:g} s "
            "apart "
            "(placement sees the load so far); pss_mb_per_participant after joining and publishing, as for "
            "Janus; media_workers: where placement put them"
        )
    return results


def _fanout(opts: Options) -> list[dict[str, Any]]:
    return _sizes("fanout", (3,) if opts.smoke else (10, 50), opts)


def _relay_tag_us(count: int = 20_000) -> float:
    """µs to seal and unseal one 1,200-byte relay datagram (the MAC's cost per relayed packet)."""
    key = os.urandom(relay.KEY_SIZE)
    sender, receiver, body = relay.Sealer(key), relay.Sealer(key), os.urandom(1200)
    started = time.perf_counter()
    for _ in range(count):
        if receiver.unseal(sender.seal(body)) is None:
            raise ScenarioError("a sealed relay datagram did not verify")
    return (time.perf_counter() - started) * 1e6 / count


def _relay(opts: Options) -> list[dict[str, Any]]:
    n = 4 if opts.smoke else 10
    per_worker = math.ceil((n + 1) / 2)
    args = ("--workers", "2", "--participants-per-worker", str(per_worker))
    result = run_media(MediaPlan("relay", n), opts, extra_args=args, with_janus=False)
    result["relay_tag_us_per_packet"] = round(_relay_tag_us(), 3)
    result["notes"].append(
        "relay_tag_us_per_packet: sealing a 1,200-byte relay datagram (sending worker) and verifying it "
        "(receiving worker), in the bench process, averaged over 20,000"
    )
    result["notes"].append(
        f"--workers 2 --participants-per-worker {per_worker}: the publisher and "
        f"{per_worker - 1} subscribers on one worker, the other {n + 1 - per_worker} on the second"
    )
    return [result]


def _fanout_joins(opts: Options) -> list[dict[str, Any]]:
    """Fan-out 10 on one media worker, without and then with 20 light peers joining other rooms during the
    window: the rooms' and sessions' control work shares the worker's event loop with the media."""
    n, joiners = (3, 4) if opts.smoke else (10, 20)
    args = ("--workers", "1")
    quiet = run_media(MediaPlan("fanout-joins", n), opts, extra_args=args, with_janus=False)
    busy = run_media(MediaPlan("fanout-joins", n), opts, extra_args=args, with_janus=False, joiners=joiners)
    keys = ("latency_ms_p50", "latency_ms_p99", "loss_pct", "cpu_us_per_forwarded_packet", "forwarded_pps")
    busy["without_joins"] = {k: quiet.get(k) for k in keys}
    a, b = busy.get("latency_ms_p99"), quiet.get("latency_ms_p99")
    busy["latency_p99_with_over_without_joins"] = round(a / b, 2) if a and b else None
    busy["notes"].append(
        f"--workers 1: fan-out {n}, then the same with a round of {joiners} light peers joining other rooms "
        f"(of two) at once every {JOIN_ROUND_EVERY:.0f} s (leaving as the next round joins), for the whole "
        "window, on the same worker; without_joins: the first run"
    )
    return [busy]


SCENARIOS.update(
    {
        "join": run_join,
        "audio-room": _audio_room,
        "fanout": _fanout,
        "relay": _relay,
        "fanout-joins": _fanout_joins,
    }
)
