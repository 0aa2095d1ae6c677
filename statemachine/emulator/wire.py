"""Wire-format helpers: key spelling, durations, close reasons."""

from __future__ import annotations

import re
from typing import Any

CLOSE_INVALID = 1007
CLOSE_DEADLINE = "Deadline expired before operation could complete."

_CAMEL = re.compile(r"(?<=[a-z0-9])([A-Z])")
#: values under these keys are user data (function args and results): left as sent
_OPAQUE = {"args", "response"}


def snake(key: str) -> str:
    return _CAMEL.sub(r"_\1", key).lower()


def normalize(value: Any) -> Any:
    """Accept camelCase and snake_case at every level: return snake_case keys throughout."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            name = snake(key)
            out[name] = item if name in _OPAQUE else normalize(item)
        return out
    if isinstance(value, list):
        return [normalize(v) for v in value]
    return value


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


def close_reason(reason: str) -> str:
    """WebSocket close reasons are limited to 123 bytes of UTF-8."""
    data = reason.encode()
    if len(data) <= 123:
        return reason
    return data[:123].decode(errors="ignore")
