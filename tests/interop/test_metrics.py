"""The Prometheus endpoint on `prometheus_port`, scraped with real HTTP GETs during a call with the SDK, and
the same figures in Ray's metrics (the node's Ray metrics agent, which the dashboard's Metrics view reads),
with the per-room gauges that `media.room_gauges` turns on."""

import asyncio
import re
from collections.abc import Iterator

import aiohttp
import pytest
from livekit import rtc
from prometheus_client.parser import text_string_to_metric_families

from bench.server import Server
from tests.interop.conftest import running_server
from tests.interop.media import MediaSession, ray_metrics_text
from tests.interop.sdk import wait_for

PROMETHEUS_PORT = 7912
DASHBOARD = 8277

Samples = dict[str, float]  # "name{label=value,...}" -> value, every worker's summed


@pytest.fixture(scope="module")
def metered(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    directory = tmp_path_factory.mktemp("metrics")
    config = directory / "livekit.yaml"
    config.write_text(f"prometheus_port: {PROMETHEUS_PORT}\nmedia:\n  room_gauges: true\n")
    with running_server(7902, DASHBOARD, directory, ["--config", str(config), "--workers", "2"]) as (srv, _):
        yield srv


async def scrape(http: aiohttp.ClientSession) -> tuple[Samples, set[str]]:
    """Every sample summed over the workers, by name (and `le` for buckets); the workers named."""
    async with http.get(f"http://127.0.0.1:{PROMETHEUS_PORT}/metrics") as reply:
        assert reply.status == 200
        text = await reply.text()
    samples: Samples = {}
    workers: set[str] = set()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            workers.add(sample.labels["worker"])
            assert sample.labels["node"] and sample.labels["worker"].startswith(
                f"media:{sample.labels['node']}"
            )
            key = f"{sample.name}{{le={sample.labels['le']}}}" if "le" in sample.labels else sample.name
            samples[key] = samples.get(key, 0.0) + sample.value
    return samples, workers


async def _connect(srv: Server, identity: str, room: str) -> rtc.Room:
    client = rtc.Room()
    await client.connect(srv.url, srv.token(identity, room))
    return client


async def test_the_figures_move_during_a_call(metered: Server, media: MediaSession) -> None:
    async with aiohttp.ClientSession() as http:
        before, workers = await scrape(http)
        assert len(workers) == 2  # both workers of the node, each its own series
        assert before["raysfu_participants"] == 0 and before["raysfu_join_time_seconds_count"] == 0
        alice = await _connect(metered, "alice", "metered")
        bob = await _connect(metered, "bob", "metered")
        await media.publish(alice, video=False)
        await media.receive(bob).wait_tone(15.0, identity="alice")
        first: Samples = {}

        async def figures_settled() -> bool:
            nonlocal first
            first, _ = await scrape(http)
            return first["raysfu_subscriptions"] == 1 and first["raysfu_packets_out_total"] > 0

        for _ in range(50):  # the workers count their media once a second
            if await figures_settled():
                break
            await asyncio.sleep(0.2)
        assert first["raysfu_rooms"] == 1
        assert first["raysfu_participants"] == 2
        assert first["raysfu_published_tracks"] == 1
        assert first["raysfu_subscriptions"] == 1
        assert first["raysfu_join_time_seconds_count"] == 2
        assert 0 < first["raysfu_join_time_seconds_sum"] < 60
        assert first["raysfu_join_time_seconds_bucket{le=+Inf}"] == 2
        await asyncio.sleep(2.5)
        second, _ = await scrape(http)
        for name in ("packets_in", "bytes_in", "packets_out", "bytes_out"):
            assert second[f"raysfu_{name}_total"] > first[f"raysfu_{name}_total"] > 0, name
        assert (
            second["raysfu_forwarding_latency_seconds_count"]
            > first["raysfu_forwarding_latency_seconds_count"]
        )
        assert second["raysfu_forwarding_latency_seconds_sum"] > 0
        await bob.disconnect()
        await wait_for(lambda: not alice.remote_participants)
        after: Samples = {}

        async def bob_gone() -> bool:
            nonlocal after
            after, _ = await scrape(http)
            return after["raysfu_participants"] == 1

        for _ in range(50):
            if await bob_gone():
                break
            await asyncio.sleep(0.2)
        assert after["raysfu_participants"] == 1 and after["raysfu_subscriptions"] == 0
        assert (
            after["raysfu_packets_out_total"] >= second["raysfu_packets_out_total"]
        )  # counters never go back
        await alice.disconnect()


async def test_the_same_figures_reach_rays_metrics(metered: Server) -> None:
    alice = await _connect(metered, "alice", "in-ray")
    participants = re.compile(r'raysfu_participants\{[^}]*worker="media:[^"]+"[^}]*\} (\S+)')
    joins = re.compile(r'raysfu_join_time_seconds_count\{[^}]*worker="media:[^"]+"[^}]*\} (\S+)')
    found: tuple[float, float] = (0.0, 0.0)
    for _ in range(60):  # Ray's agent exports what the workers recorded every few seconds
        text = await asyncio.to_thread(ray_metrics_text, DASHBOARD)
        found = (
            sum(float(v) for v in participants.findall(text)),
            sum(float(v) for v in joins.findall(text)),
        )
        if found[0] == 1 and found[1] >= 1:
            break
        await asyncio.sleep(0.5)
    assert found[0] == 1 and found[1] >= 1, found
    await alice.disconnect()


async def test_room_gauges_reach_rays_metrics_when_asked_for(metered: Server) -> None:
    """With `media.room_gauges`, per-room figures tagged room and worker, in the node's Ray metrics."""
    alice = await _connect(metered, "alice", "gauged")
    bob = await _connect(metered, "bob", "gauged")
    pattern = re.compile(r'raysfu_room_participants\{[^}]*room="gauged"[^}]*\} (\S+)')
    found: list[float] = []
    for _ in range(60):
        found = [float(v) for v in pattern.findall(await asyncio.to_thread(ray_metrics_text, DASHBOARD))]
        if sum(found) == 2:
            break
        await asyncio.sleep(0.5)
    assert sum(found) == 2, found
    for client in (alice, bob):
        await client.disconnect()
