"""The Prometheus endpoint (`prometheus_port`): this node's media workers' figures, labelled node and worker.

Each node's `raysfu serve` serves its own node's workers, as each LiveKit node serves its own figures. A
scrape asks every worker for its figures (actors.metrics.WorkerFigures, one Ray call each, at once);
prometheus_client's HTTP server answers scrapes on a thread of its own, so a scrape never waits for the
gateway's event loop, nor the gateway for it. A worker that does not answer in time is left out of that
scrape and logged.
"""

import logging
from collections.abc import Iterable, Iterator
from typing import Any

import ray
from prometheus_client import start_http_server
from prometheus_client.core import (
    CollectorRegistry,
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from actors.hosting import worker_handle
from actors.media.ratelog import RateLimitedLog
from actors.metrics import WORKER_COUNTERS, WORKER_GAUGES, WORKER_HISTOGRAMS, Buckets, WorkerFigures

log = logging.getLogger(__name__)
_ratelog = RateLimitedLog(log)

SCRAPE_TIMEOUT = 5.0  # seconds a scrape waits for the workers
LABELS = ["node", "worker"]


class WorkersCollector(Collector):
    def __init__(self, workers: Iterable[str]) -> None:
        self._workers = list(workers)

    def describe(self) -> list[Metric]:
        return []  # no figures are gathered when the collector is registered

    def collect(self) -> Iterator[Metric]:
        return iter(families(self._gather()))

    def _gather(self) -> list[WorkerFigures]:
        refs: dict[str, Any] = {name: worker_handle(name).figures.remote() for name in self._workers}
        ready, _ = ray.wait(list(refs.values()), num_returns=len(refs), timeout=SCRAPE_TIMEOUT)
        figures: list[WorkerFigures] = []
        for name, ref in refs.items():
            try:
                if ref not in ready:
                    raise TimeoutError(f"no answer within {SCRAPE_TIMEOUT} s")
                figures.append(ray.get(ref))
            except Exception as exc:  # a dead or busy worker: the others are still served
                _ratelog.warning(name, "metrics of %s left out of a scrape: %r", name, exc)
        return figures


def families(figures: list[WorkerFigures]) -> list[Metric]:
    """The Prometheus metric families of the workers' figures."""
    out: list[Metric] = []
    for name, text in WORKER_GAUGES.items():
        gauge = GaugeMetricFamily(f"raysfu_{name}", text, labels=LABELS)
        for f in figures:
            gauge.add_metric([f.node, f.worker], f.gauges.get(name, 0.0))
        out.append(gauge)
    for name, text in WORKER_COUNTERS.items():
        counter = CounterMetricFamily(f"raysfu_{name}", text, labels=LABELS)
        for f in figures:
            counter.add_metric([f.node, f.worker], f.counters.get(name, 0.0))
        out.append(counter)
    for name, (text, _) in WORKER_HISTOGRAMS.items():
        histogram = HistogramMetricFamily(f"raysfu_{name}", text, labels=LABELS)
        for f in figures:
            buckets = f.histograms[name]
            histogram.add_metric([f.node, f.worker], _cumulative(buckets), buckets.total)
        out.append(histogram)
    return out


def _cumulative(buckets: Buckets) -> list[tuple[str, float]]:
    bounds = [*(repr(float(b)) for b in buckets.bounds), "+Inf"]
    running = 0
    out: list[tuple[str, float]] = []
    for bound, count in zip(bounds, buckets.counts, strict=True):
        running += count
        out.append((bound, float(running)))
    return out


def serve_metrics(port: int, addresses: Iterable[str], workers: Iterable[str]) -> None:
    """Serve this node's workers' figures at http://ADDRESS:port/metrics, on each address."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(WorkersCollector(workers))
    for address in addresses:
        start_http_server(port, addr=address, registry=registry)
