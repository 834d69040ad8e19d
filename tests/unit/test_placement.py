from collections import Counter

import pytest

from actors.errors import ClusterFullError
from actors.placement import Candidate, choose_worker, node_label, worker_node_label
from actors.settings import MediaSettings


def c(worker: str, load: int, cpu: float = 0.0, packets_per_s: float = 0.0) -> Candidate:
    return Candidate(worker, load, cpu, packets_per_s)


def media(capacity: int, cpu: float = 0.9, packets: float = 30_000) -> MediaSettings:
    return MediaSettings(participants_per_worker=capacity, max_worker_cpu=cpu, max_worker_packets=packets)


def test_room_stays_on_its_worker_while_it_has_capacity() -> None:
    workers = [c("media:aaaa/0", 5), c("media:aaaa/1", 0)]
    assert choose_worker(workers, Counter({"media:aaaa/0": 5}), media(10)) == "media:aaaa/0"


def test_full_worker_spills_to_the_least_loaded_on_the_same_node() -> None:
    workers = [c("media:aaaa/0", 2), c("media:aaaa/1", 1), c("media:bbbb/0", 0)]
    assert choose_worker(workers, Counter({"media:aaaa/0": 2}), media(2)) == "media:aaaa/1"


def test_busiest_room_worker_wins_among_those_serving_it() -> None:
    workers = [c("media:aaaa/0", 3), c("media:aaaa/1", 4)]
    members = Counter({"media:aaaa/0": 1, "media:aaaa/1": 3})
    assert choose_worker(workers, members, media(10)) == "media:aaaa/1"


def test_new_room_goes_to_least_loaded() -> None:
    workers = [c("media:aaaa/0", 3), c("media:bbbb/0", 1)]
    assert choose_worker(workers, Counter(), media(10)) == "media:bbbb/0"


def test_a_new_rooms_first_participant_goes_to_its_home_while_it_has_room() -> None:
    workers = [c("media:aaaa/0", 3), c("media:bbbb/0", 1)]
    assert choose_worker(workers, Counter(), media(10), home="media:aaaa/0") == "media:aaaa/0"
    assert choose_worker(workers, Counter(), media(3), home="media:aaaa/0") == "media:bbbb/0"


def test_a_participant_goes_to_the_node_of_its_gateway_while_it_has_room() -> None:
    workers = [c("media:aaaa/0", 1), c("media:bbbb/0", 0), c("media:bbbb/1", 2)]
    members = Counter({"media:aaaa/0": 1})  # the room lives on node aaaa
    assert choose_worker(workers, members, media(3), home="media:aaaa/0", node="bbbb") == "media:bbbb/0"
    full = [c("media:aaaa/0", 1), c("media:bbbb/0", 3), c("media:bbbb/1", 3)]
    assert choose_worker(full, members, media(3), home="media:aaaa/0", node="bbbb") == "media:aaaa/0"


def test_every_worker_full_overloads_the_least_loaded() -> None:
    workers = [c("media:aaaa/0", 4), c("media:aaaa/1", 3)]
    assert choose_worker(workers, Counter({"media:aaaa/0": 4}), media(2)) == "media:aaaa/1"


def test_no_workers_is_an_error() -> None:
    with pytest.raises(ClusterFullError):
        choose_worker([], Counter(), media(1))


def test_node_labels() -> None:
    assert node_label("0123456789abcdef") == "01234567"
    assert worker_node_label("media:01234567/3") == "01234567"


def test_a_worker_at_its_cpu_limit_takes_nobody() -> None:
    hot = Candidate("media:aaaa/0", 1, cpu=0.95)
    cool = Candidate("media:aaaa/1", 5, cpu=0.2)
    members = Counter({"media:aaaa/0": 1})
    assert choose_worker([hot, cool], members, media(10), home="media:aaaa/0") == "media:aaaa/1"


def test_every_worker_at_its_cpu_limit_refuses_the_join() -> None:
    hot = [Candidate("media:aaaa/0", 1, cpu=0.95), Candidate("media:bbbb/0", 0, cpu=0.91)]
    with pytest.raises(ClusterFullError, match="load limit"):
        choose_worker(hot, Counter(), media(10, cpu=0.9))
    assert choose_worker(hot, Counter(), media(10, cpu=0)) == "media:bbbb/0"  # 0: no limit


def test_a_worker_at_its_packet_limit_takes_nobody() -> None:
    busy = c("media:aaaa/0", 1, cpu=0.3, packets_per_s=31_000)
    idle = c("media:aaaa/1", 5)
    members = Counter({"media:aaaa/0": 1})
    assert choose_worker([busy, idle], members, media(10), home="media:aaaa/0") == "media:aaaa/1"
    with pytest.raises(ClusterFullError, match="30000 RTP packets/s"):
        choose_worker([busy], members, media(10))
    assert choose_worker([busy], members, media(10, packets=0)) == "media:aaaa/0"  # 0: no limit


def test_a_room_stays_compact_while_its_worker_has_headroom() -> None:
    members = Counter({"media:aaaa/0": 8})
    warm = c("media:aaaa/0", 8, cpu=0.4, packets_per_s=15_000)  # half its limits
    idle = c("media:aaaa/1", 0)
    assert choose_worker([warm, idle], members, media(100)) == "media:aaaa/0"


def test_a_room_spills_when_its_worker_is_near_its_limit() -> None:
    members = Counter({"media:aaaa/0": 8})
    hot = c("media:aaaa/0", 8, cpu=0.5, packets_per_s=24_000)  # 0.8 of the packet limit
    idle = c("media:bbbb/0", 20)
    assert choose_worker([hot, idle], members, media(100)) == "media:bbbb/0"


def test_with_no_headroom_anywhere_the_least_utilised_takes_the_participant() -> None:
    a = c("media:aaaa/0", 2, cpu=0.8)  # 0.89 of its CPU limit
    b = c("media:bbbb/0", 9, cpu=0.3, packets_per_s=25_000)  # 0.83 of its packet limit
    assert choose_worker([a, b], Counter({"media:aaaa/0": 2}), media(100)) == "media:bbbb/0"


def test_least_loaded_orders_by_measured_load_before_counts() -> None:
    quiet = c("media:aaaa/0", 30, cpu=0.05)
    loud = c("media:bbbb/0", 3, cpu=0.4, packets_per_s=12_000)
    assert choose_worker([quiet, loud], Counter(), media(100)) == "media:aaaa/0"
    noisy = c("media:bbbb/0", 3, cpu=0.1)  # within one LOAD_STEP of quiet: counts decide
    assert choose_worker([quiet, noisy], Counter(), media(100)) == "media:bbbb/0"


def test_workers_full_by_count_but_idle_overflow_by_count_and_name_not_by_noise() -> None:
    """An idle machine's CPU readings differ by noise: they must not pick the worker (3439ba5)."""
    a = c("media:aaaa/0", 1, cpu=0.03)
    b = c("media:aaaa/1", 1, cpu=0.01)
    assert choose_worker([a, b], Counter({"media:aaaa/1": 1}), media(1)) == "media:aaaa/0"
