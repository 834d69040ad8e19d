"""The workers' counters only grow, and the gateway exports histograms in Prometheus' cumulative form."""

import pytest

from actors.metrics import JOIN_TIME_BOUNDS, WORKER_HISTOGRAMS, Buckets, Totals, WorkerFigures
from gateway.metrics import families


def test_totals_keep_what_ended_tracks_counted_and_ignore_counts_going_down() -> None:
    totals = Totals()
    assert totals.update([("packets_in", "TR_a", 10), ("packets_lost", "TR_a", 3)]) == {
        "packets_in": 10,
        "packets_lost": 3,
    }
    totals.update([("packets_in", "TR_a", 25), ("packets_lost", "TR_a", 1)])  # a loss repaired
    totals.update([("packets_in", "TR_b", 4), ("packets_lost", "TR_b", 0)])  # TR_a ended, TR_b began
    assert totals.totals == {"packets_in": 29, "packets_lost": 3}


def test_histograms_are_exported_cumulative_with_their_sum() -> None:
    join = Buckets(JOIN_TIME_BOUNDS)
    for seconds in (0.05, 0.3, 0.3, 60.0):
        join.observe(seconds)
    histograms = {name: Buckets(bounds) for name, (_, bounds) in WORKER_HISTOGRAMS.items()}
    histograms["join_time_seconds"] = join
    figures = WorkerFigures("media:n1/0", "n1", {}, {}, histograms)
    exported = {f.name: f for f in families([figures])}["raysfu_join_time_seconds"]
    samples = {(s.name, s.labels.get("le")): s.value for s in exported.samples}
    assert samples[("raysfu_join_time_seconds_bucket", "0.1")] == 1
    assert samples[("raysfu_join_time_seconds_bucket", "0.5")] == 3
    assert samples[("raysfu_join_time_seconds_bucket", "20.0")] == 3
    assert samples[("raysfu_join_time_seconds_bucket", "+Inf")] == 4
    assert samples[("raysfu_join_time_seconds_count", None)] == 4
    assert samples[("raysfu_join_time_seconds_sum", None)] == pytest.approx(60.65)
