"""Wire-format helpers: key spelling, durations, close reasons."""

from __future__ import annotations

import re
from typing import Any

from ..core.wire import duration, parse_duration

__all__ = ["duration", "parse_duration"]

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


def close_reason(reason: str) -> str:
    """WebSocket close reasons are limited to 123 bytes of UTF-8."""
    data = reason.encode()
    if len(data) <= 123:
        return reason
    return data[:123].decode(errors="ignore")
