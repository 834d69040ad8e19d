from collections import Counter

import pytest

from actors.errors import ClusterFullError
from actors.placement import Candidate, choose_worker, node_label, worker_node_label


def c(worker: str, load: int) -> Candidate:
    return Candidate(worker, load)


def test_room_stays_on_its_worker_while_it_has_capacity() -> None:
    workers = [c("media:aaaa/0", 5), c("media:aaaa/1", 0)]
    assert choose_worker(workers, Counter({"media:aaaa/0": 5}), capacity=10) == "media:aaaa/0"


def test_full_worker_spills_to_the_least_loaded_on_the_same_node() -> None:
    workers = [c("media:aaaa/0", 2), c("media:aaaa/1", 1), c("media:bbbb/0", 0)]
    assert choose_worker(workers, Counter({"media:aaaa/0": 2}), capacity=2) == "media:aaaa/1"


def test_busiest_room_worker_wins_among_those_serving_it() -> None:
    workers = [c("media:aaaa/0", 3), c("media:aaaa/1", 4)]
    members = Counter({"media:aaaa/0": 1, "media:aaaa/1": 3})
    assert choose_worker(workers, members, capacity=10) == "media:aaaa/1"


def test_new_room_goes_to_least_loaded() -> None:
    workers = [c("media:aaaa/0", 3), c("media:bbbb/0", 1)]
    assert choose_worker(workers, Counter(), capacity=10) == "media:bbbb/0"


def test_a_new_rooms_first_participant_goes_to_its_home_while_it_has_room() -> None:
    workers = [c("media:aaaa/0", 3), c("media:bbbb/0", 1)]
    assert choose_worker(workers, Counter(), capacity=10, home="media:aaaa/0") == "media:aaaa/0"
    assert choose_worker(workers, Counter(), capacity=3, home="media:aaaa/0") == "media:bbbb/0"


def test_a_participant_goes_to_the_node_of_its_gateway_while_it_has_room() -> None:
    workers = [c("media:aaaa/0", 1), c("media:bbbb/0", 0), c("media:bbbb/1", 2)]
    members = Counter({"media:aaaa/0": 1})  # the room lives on node aaaa
    assert choose_worker(workers, members, capacity=3, home="media:aaaa/0", node="bbbb") == "media:bbbb/0"
    full = [c("media:aaaa/0", 1), c("media:bbbb/0", 3), c("media:bbbb/1", 3)]
    assert choose_worker(full, members, capacity=3, home="media:aaaa/0", node="bbbb") == "media:aaaa/0"


def test_every_worker_full_overloads_the_least_loaded() -> None:
    workers = [c("media:aaaa/0", 4), c("media:aaaa/1", 3)]
    assert choose_worker(workers, Counter({"media:aaaa/0": 4}), capacity=2) == "media:aaaa/1"


def test_no_workers_is_an_error() -> None:
    with pytest.raises(ClusterFullError):
        choose_worker([], Counter(), capacity=1)


def test_node_labels() -> None:
    assert node_label("0123456789abcdef") == "01234567"
    assert worker_node_label("media:01234567/3") == "01234567"


def test_a_worker_at_its_cpu_limit_takes_nobody() -> None:
    hot = Candidate("media:aaaa/0", 1, cpu=0.95)
    cool = Candidate("media:aaaa/1", 5, cpu=0.2)
    members = Counter({"media:aaaa/0": 1})
    assert (
        choose_worker([hot, cool], members, capacity=10, home="media:aaaa/0", max_cpu=0.9) == "media:aaaa/1"
    )


def test_every_worker_at_its_cpu_limit_refuses_the_join() -> None:
    hot = [Candidate("media:aaaa/0", 1, cpu=0.95), Candidate("media:bbbb/0", 0, cpu=0.91)]
    with pytest.raises(ClusterFullError, match="CPU limit"):
        choose_worker(hot, Counter(), capacity=10, max_cpu=0.9)
    assert choose_worker(hot, Counter(), capacity=10, max_cpu=0) == "media:bbbb/0"  # 0: no limit
