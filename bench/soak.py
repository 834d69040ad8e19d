"""soak: a long run of churn with the light peers, watching memory and what the server holds.

For `minutes`, about five times a second one of: a light peer joins one of a few rooms, one leaves, one
publishes audio, one unpublishes, one mutes or unmutes a track, one unsubscribes from or subscribes again to a
track. Rooms come and go as in production: every ROOM_LIFETIME s joins go to rooms of new names, and the old
ones empty as their peers leave, then close (anything kept per room name would pile up). Every
SAMPLE_EVERY s: the server's PSS and the media workers' census (rooms, participants, tracks, peer
connections, up and down tracks, relay entries, asyncio tasks). Then everybody leaves, and the census must
come back to what it was after a short warm-up churn whose peers all left (per-worker loops start on first
use; everything per session must be gone): the result's `error` says what did not (and the exit status is
non-zero). Memory growth is from the end of the warm-up (the first quarter of the run) to the end of the
churn.
"""

import asyncio
import random
import secrets
import time
from collections import Counter
from typing import Any

import aiohttp
from aiortc.exceptions import InvalidStateError

from bench.proc import TreePss
from bench.result import ScenarioError, new_result
from bench.scenarios import Options
from bench.server import Server, running_raysfu
from bench.workers import call_workers
from loadgen import stats
from loadgen.livekit_peer import LiveKitPeer

SAMPLE_EVERY = 15.0
ACTION_EVERY = 0.2
ROOMS = 4
ROOM_LIFETIME = 120.0  # seconds a room takes joins before the next ones go to a room of a new name
MAX_PEERS = 24
SETTLE = 60.0  # seconds for the census to come back after everyone left
WARM_UP = 20.0  # seconds of churn before the reference census is taken
HOSTED = ("rooms", "participants", "track_forwarders", "peers", "up_tracks", "down_tracks")
TASK_SLACK = 3  # asyncio tasks a quiet worker may have in flight (a poll, this census)
ACTIONS = ("join", "leave", "publish", "unpublish", "mute", "subscription")
WEIGHTS = (5, 3, 3, 2, 2, 2)


async def _census() -> dict[str, int]:
    """The media workers' census, summed."""
    per_worker = await asyncio.to_thread(call_workers, "census")
    total: Counter[str] = Counter()
    for figures in per_worker.values():
        total.update(figures)
    return dict(total)


class Churn:
    def __init__(self, server: Server, seed: int) -> None:
        self.server = server
        self.rng = random.Random(seed)
        self.peers: list[LiveKitPeer] = []
        self.done: Counter[str] = Counter()
        self.failed: Counter[str] = Counter()
        self.muted: set[str] = set()
        self.unsubscribed: dict[str, set[str]] = {}
        self.rooms: set[str] = set()
        self._joined = 0
        self._started = time.monotonic()

    async def step(self) -> None:
        for peer in [p for p in self.peers if p.ended]:  # the server closed its PCs (counted: it should not)
            self.peers.remove(peer)
            self.failed["peer ended by the server"] += 1
            await peer.close()
        action = self.rng.choices(ACTIONS, WEIGHTS)[0]
        if action == "join" and len(self.peers) >= MAX_PEERS:
            action = "leave"
        try:
            if await getattr(self, f"_{action}")():
                self.done[action] += 1
        except (
            TimeoutError, ConnectionError, OSError, AssertionError, KeyError, InvalidStateError,
            aiohttp.ClientError,
        ) as exc:  # fmt: skip
            self.failed[f"{action}: {type(exc).__name__}"] += 1

    async def _join(self) -> bool:
        self._joined += 1
        identity = f"s{self._joined}"
        room = room_name(self.rng.randrange(ROOMS), time.monotonic() - self._started)
        self.rooms.add(room)
        peer = LiveKitPeer(self.server.url, self.server.token(identity, room), identity)
        self.peers.append(peer)
        await peer.connect()
        return True

    async def _leave(self) -> bool:
        if not self.peers:
            return False
        peer = self.peers.pop(self.rng.randrange(len(self.peers)))
        await peer.close()
        return True

    def _pick(self) -> LiveKitPeer | None:
        ready = [p for p in self.peers if p.join is not None]
        return self.rng.choice(ready) if ready else None

    def _published(self) -> list[tuple[LiveKitPeer, str]]:
        return [(p, sid) for p in self.peers for sid in p.published]

    async def _publish(self) -> bool:
        peer = self._pick()
        if peer is None or len(peer.published) >= 2:
            return False
        await peer.publish("audio", max_seconds=3600)
        return True

    async def _unpublish(self) -> bool:
        tracks = self._published()
        if not tracks:
            return False
        peer, sid = self.rng.choice(tracks)
        await peer.unpublish(sid)
        self.muted.discard(sid)
        return True

    async def _mute(self) -> bool:
        tracks = self._published()
        if not tracks:
            return False
        peer, sid = self.rng.choice(tracks)
        muted = sid not in self.muted
        await peer.mute(sid, muted)
        (self.muted.add if muted else self.muted.discard)(sid)
        return True

    async def _subscription(self) -> bool:
        peer, tracks = self._pick(), self._published()
        if peer is None or not tracks:
            return False
        _, sid = self.rng.choice(tracks)
        off = self.unsubscribed.setdefault(peer.identity, set())
        subscribe = sid in off
        await peer.subscribe([sid], subscribe)
        (off.discard if subscribe else off.add)(sid)
        return True

    async def close(self) -> None:
        await asyncio.gather(*(p.close() for p in self.peers), return_exceptions=True)
        self.peers.clear()


def room_name(slot: int, elapsed: float) -> str:
    """The room a join into `slot` goes to, `elapsed` s into the churn."""
    return f"soak-{slot}-{int(elapsed // ROOM_LIFETIME)}"


async def _warm_up(server: Server) -> dict[str, int]:
    """A first short churn, everybody gone again, and the census then: the state a server that has served
    (its per-worker loops started on first use, the gateways' long polls) returns to."""
    churn = Churn(server, seed=1)
    loop = asyncio.get_running_loop()
    started = loop.time()
    while loop.time() < started + WARM_UP:
        await churn.step()
        await asyncio.sleep(ACTION_EVERY)
    await churn.close()
    census = await _census()
    while any(census.get(k) for k in HOSTED) and loop.time() < started + WARM_UP + SETTLE:
        await asyncio.sleep(2)
        census = await _census()
    return census


async def _soak(server: Server, seconds: float) -> dict[str, Any]:
    empty = await _warm_up(server)
    churn = Churn(server, seed=secrets.randbelow(2**31))
    samples: list[dict[str, Any]] = []
    loop = asyncio.get_running_loop()
    started = loop.time()
    next_sample = started
    pss = TreePss(server.pid)
    try:
        while (now := loop.time()) < started + seconds:
            await churn.step()
            if now >= next_sample:
                by_process = await asyncio.to_thread(pss.by_label)
                samples.append(
                    {
                        "t": round(now - started, 1),
                        "pss_mb": round(sum(by_process.values()), 1),
                        "pss_mb_by_process": by_process,
                        "peers_connected": len(churn.peers),
                        **await _census(),
                    }
                )
                next_sample += SAMPLE_EVERY
            await asyncio.sleep(ACTION_EVERY)
    finally:
        await churn.close()
    churned = loop.time() - started
    left_at = loop.time()
    final = await _census()
    while _leftovers(final, empty) and loop.time() - left_at < SETTLE:
        await asyncio.sleep(2)
        final = await _census()
    tasks = await asyncio.to_thread(call_workers, "task_names") if _leftovers(final, empty) else {}
    warm = [s for s in samples if s["t"] >= seconds / 4]
    growth = (samples[-1]["pss_mb"] / warm[0]["pss_mb"] - 1) * 100 if warm and samples else None
    by_process = _growth_by_process(warm[0], samples[-1]) if warm and samples else {}
    return {
        "churn_s": round(churned, 1),
        "actions": dict(churn.done),
        "rooms_joined": len(churn.rooms),
        "failed_actions": dict(churn.failed),
        "pss_growth_after_warmup_pct": stats.rounded(growth, 2),
        "pss_growth_after_warmup_mb_by_process": by_process,
        "empty_census": empty,
        "final_census": final,
        "seconds_to_empty": round(loop.time() - left_at, 1),
        "leftovers": _leftovers(final, empty),
        "tasks_left": tasks,
        "samples": samples,
    }


def _growth_by_process(first: dict[str, Any], last: dict[str, Any]) -> dict[str, float]:
    """MiB each kind of server process grew (or shrank) between two samples, largest change first."""
    a, b = first["pss_mb_by_process"], last["pss_mb_by_process"]
    change = {k: round(b.get(k, 0.0) - a.get(k, 0.0), 1) for k in a.keys() | b.keys()}
    return dict(sorted(change.items(), key=lambda kv: -abs(kv[1])))


def _leftovers(census: dict[str, int], empty: dict[str, int]) -> dict[str, int]:
    """What the server still holds beyond the empty server's census (asyncio tasks with TASK_SLACK)."""
    out = {}
    for key, value in census.items():
        allowed = empty.get(key, 0) + (TASK_SLACK if key == "asyncio_tasks" else 0)
        if value > allowed:
            out[key] = value - empty.get(key, 0)
    return out


def run_soak(opts: Options, minutes: float) -> list[dict[str, Any]]:
    result = new_result(
        "soak", minutes=minutes, max_peers=MAX_PEERS, rooms=ROOMS, room_lifetime_s=ROOM_LIFETIME
    )
    log_dir = opts.log_dir / "soak"
    started = time.monotonic()
    with running_raysfu(log_dir) as server:
        result.update(asyncio.run(_soak(server, minutes * 60)))
    result["wall_s"] = round(time.monotonic() - started, 1)
    if result["leftovers"]:
        result["error"] = f"the server did not return to its empty state: {result['leftovers']}"
    if not result["actions"].get("join"):
        raise ScenarioError(f"no peer could join: {result['failed_actions']}")
    result["notes"].append(
        "pss_growth_after_warmup_pct: the server's PSS at the last sample over the first sample after the "
        "first quarter of the run; leftovers: census entries above the empty server's after everyone left"
    )
    return [result]
