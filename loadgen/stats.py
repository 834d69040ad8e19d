"""Pure figures: percentiles, CPU per packet, loss."""

import math
from collections.abc import Sequence


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0..100) by linear interpolation between closest ranks; None when empty."""
    if not values:
        return None
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile {q} outside 0..100")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = math.ceil(rank)
    if low == high:
        return float(ordered[low])
    return float(ordered[low] + (ordered[high] - ordered[low]) * (rank - low))


def rounded(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def cpu_us_per_packet(cpu_seconds: float, packets: int) -> float | None:
    """Server CPU time per forwarded packet in µs; None when nothing was forwarded."""
    if packets <= 0:
        return None
    return cpu_seconds * 1e6 / packets


def loss_pct(expected: int, received: int) -> float | None:
    """Share of expected packets that never arrived (duplicates do not make it negative)."""
    if expected <= 0:
        return None
    return max(0.0, (expected - received) * 100.0 / expected)
