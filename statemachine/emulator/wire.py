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


# Close reasons of today's service. The deadline text is the one field reports quote; the others
# are the emulator's stand-ins, worded so that a client can tell each cause from the others.
CLOSE_INVALID_REASON = "Request contains an invalid argument."
CLOSE_HARD_LIMIT = "Maximum session duration reached."
CLOSE_IDLE = "Connection closed: no client input for too long (idle timeout)."
#: a resume refused while the server still holds the session's previous socket (field report)
CLOSE_OLD_SOCKET = "Cannot resume: the old socket of this session is still open."
CLOSE_QUOTA = "RESOURCE_EXHAUSTED: Quota exceeded for Live API sessions. Retry after a while."
CLOSE_CREDITS = "RESOURCE_EXHAUSTED: Your prepayment credits are depleted. Add credits to continue."
CLOSE_TOKEN_EXPIRED = "Ephemeral token expired."
CLOSE_TOKEN_USED = "Ephemeral token has no uses left for a new session."
CLOSE_ACTIVITY = (
    "Explicit activityStart/activityEnd need automatic activity detection disabled."
)
EXHAUSTION_REASONS = {"quota": CLOSE_QUOTA, "credits": CLOSE_CREDITS}
