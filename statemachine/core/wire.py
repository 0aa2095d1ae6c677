"""Values of the Live API wire format that both sides parse: protobuf Durations."""

from __future__ import annotations


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
