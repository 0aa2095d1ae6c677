"""OpenTelemetry traces and metrics for sessions, opt-in (`connect(..., telemetry=True)`).

Only `statemachine.telemetry.observer` imports OpenTelemetry, and only when a session asks for
telemetry: without the `otel` extra nothing changes and nothing is imported. The observer is fed
the session's audit records (the same records as the audit log), so it sees every transition,
notice and connection, and never a payload, key, token or raw handle. See docs/telemetry.md.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs

from ..errors import SettingsError
from .definitions import METRICS, NAMESPACE

__all__ = ["METRICS", "NAMESPACE", "Telemetry", "resolve", "session_observer"]


@attrs.frozen(kw_only=True)
class Telemetry:
    """Where a session reports: `tracer_provider` and `meter_provider` (None: OpenTelemetry's
    global providers, as set by the application or its auto-instrumentation), and whether to
    report `traces` and `metrics` at all. `telemetry=True` is `Telemetry()`."""

    tracer_provider: Any = None
    meter_provider: Any = None
    traces: bool = True
    metrics: bool = True


def resolve(telemetry: Telemetry | bool | None) -> Telemetry | None:
    """The `telemetry=` argument as settings (None: off); SettingsError for anything else, or
    when OpenTelemetry is not installed."""
    if telemetry is None or telemetry is False:
        return None
    if telemetry is True:
        telemetry = Telemetry()
    if not isinstance(telemetry, Telemetry):
        raise SettingsError(f"telemetry= takes True, False or statemachine.Telemetry(...), not "
                            f"{type(telemetry).__name__}")
    if not (telemetry.traces or telemetry.metrics):
        return None
    try:
        import opentelemetry.metrics
        import opentelemetry.trace  # noqa: F401
    except ImportError as exc:
        raise SettingsError(
            "telemetry=True needs the OpenTelemetry API: pip install "
            "'gemini-live-statemachine[otel]' (and, to export anything, an OpenTelemetry SDK "
            "and exporter of your choice; see docs/telemetry.md)") from exc
    return telemetry


def session_observer(telemetry: Telemetry, *, core: Any, model: str,
                     vertex: bool) -> Callable[[dict[str, Any]], None]:
    """The audit-record observer that reports one session (imports OpenTelemetry)."""
    from .observer import SessionObserver

    return SessionObserver(telemetry, core=core, model=model, vertex=vertex)
