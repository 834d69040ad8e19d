"""Two MediaWorker actors on a local Ray: data from a sender on A reaches receivers on B in order,
with one deliver_data call per packet per destination worker (not per recipient)."""

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
import ray

from actors.directory import Directory, Member
from actors.media.hooks import restrict_host_addresses
from actors.media.relay import cluster_relay_key
from actors.naming import NAMESPACE, media_actor
from actors.settings import MediaSettings
from actors.worker import create_media_worker
from tests.unit.worker_clients import Subscriber, chat, publish, subscribe

A, B = media_actor("test", 0), media_actor("test", 1)
PACKETS = 200


@pytest.fixture(scope="module")
def workers() -> Iterator[tuple[Any, Any]]:
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        namespace=NAMESPACE,
        _node_ip_address="127.0.0.1",
    )
    restrict_host_addresses(["127.0.0.1"])  # this process plays the clients
    settings = MediaSettings(ice_addresses=("127.0.0.1",))
    handles = (create_media_worker(A, settings), create_media_worker(B, settings))
    try:
        assert ray.get([h.ready.remote() for h in handles], timeout=60) == [A, B]
        yield handles
    finally:
        for handle in handles:
            ray.kill(handle)
        ray.shutdown()


def remote(handle: Any, method: str) -> Any:
    async def call(*args: Any) -> Any:
        return await getattr(handle, method).remote(*args)

    return call


async def test_cross_worker_data_in_order(workers: tuple[Any, Any]) -> None:
    a, b = workers
    members = (
        Member("PA_s", "sender", A, True),
        Member("PA_local", "local", A, True),
        Member("PA_r1", "r1", B, True),
        Member("PA_r2", "r2", B, True),
    )
    for m in members:
        await (a if m.worker == A else b).add_participant.remote("r", m.sid, m.identity)
    directory = Directory("r", 1, members)
    await asyncio.gather(a.update_directory.remote(directory), b.update_directory.remote(directory))

    def sub(handle: Any, sid: str) -> Any:
        return subscribe(remote(handle, "subscriber_offer"), remote(handle, "subscriber_answer"), sid)

    receivers: list[Subscriber] = await asyncio.gather(sub(a, "PA_local"), sub(b, "PA_r1"), sub(b, "PA_r2"))
    sender = await publish(remote(a, "publisher_offer"), remote(a, "add_ice_candidate"), "PA_s")
    try:
        for i in range(PACKETS):
            sender.send(chat(f"m{i}", sequence=i))
        for receiver in receivers:
            got = [(await receiver.next()).sequence for _ in range(PACKETS)]
            assert got == list(range(PACKETS))
        stats_a, stats_b = await asyncio.gather(a.stats.remote(), b.stats.remote())
        assert stats_a["data_received"] == PACKETS
        assert stats_a["relay_calls"] == PACKETS  # one per packet for B, though B hosts two recipients
        assert stats_b["deliver_calls"] == PACKETS
        assert stats_b["data_delivered"] == 2 * PACKETS
    finally:
        for pc in [sender.pc, *(r.pc for r in receivers)]:
            await pc.close()
        for m in members:
            await (a if m.worker == A else b).remove_participant.remote(m.sid)


def test_the_relay_key_is_made_once_for_the_cluster(workers: tuple[Any, Any]) -> None:
    """Whoever asks (the workers did, at start) gets the same 32 bytes from Ray's key-value store: this
    driver and another process alike. (That the workers use it is shown by every relay test.)"""

    @ray.remote(num_cpus=0)
    def key_in_another_process() -> bytes:
        return cluster_relay_key()

    here = cluster_relay_key()
    assert len(here) == 32 and ray.get(key_in_another_process.remote(), timeout=60) == here
