"""Values of the Live API wire format that both sides parse: protobuf Durations."""

from __future__ import annotations

import math


def duration(seconds: float) -> str:
    """A protobuf Duration as JSON: "50s", "0.500s"."""
    if seconds == int(seconds):
        return f"{int(seconds)}s"
    return f"{seconds:.3f}s"


def parse_duration(text: str) -> float:
    """Inverse of `duration` (also used by the client side)."""
    text = text.strip()
    if not text.endswith("s"):
        raise ValueError(f"not a protobuf Duration: {text!r}")
    return float(text[:-1])


def parse_time_left(text: str | None) -> float | None:
    """A `goAway.timeLeft` in seconds; None when it is missing or not a Duration a client can
    use (unparseable, NaN, infinite): the engine then plans with its own notice. Zero and
    negative values ("-5s": the server has already given up) mean now: 0."""
    if text is None:
        return None
    try:
        seconds = parse_duration(text)
    except ValueError:
        return None
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)
