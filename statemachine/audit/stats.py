"""The one percentile the audit summary and the benchmarks use: nearest rank, so a p99 of a
hundred samples is the 99th value, never an interpolation between two."""

from __future__ import annotations

import math


def percentile(values: list[float], q: float) -> float | None:
    """The `q` quantile (0 < q <= 1) of `values` by nearest rank; None without values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]
