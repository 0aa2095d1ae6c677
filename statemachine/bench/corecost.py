"""Core cost: events per second through the sans-I/O engine, audit log off and on (JSON Lines to
a real file through structlog, hash chain included), and with OpenTelemetry reporting on
(`telemetry=True`: the observer fed every record, metrics and traces to the real SDK)."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import structlog

from ..audit import jsonl as auditlog
from ..core.actions import Send
from ..core.engine import Lifecycle
from ..core.events import (
    ClientInput,
    Connect,
    Event,
    InputKind,
    ModelOutput,
    ResumptionUpdate,
    SetupComplete,
    TurnComplete,
    Usage,
)
from ..core.records import structlog_sink


def _workload(turns: int) -> list[Event]:
    """A realistic mix per turn: 25 audio chunks, a text turn, 3 reply chunks, turnComplete,
    usage, a resumable handle."""
    events: list[Event] = [Connect(at=0.0), SetupComplete(at=0.0, generation=1)]
    t = 0.0
    for turn in range(turns):
        for _ in range(25):
            t += 0.02
            events.append(ClientInput(at=t, kind=InputKind.AUDIO, payload=b"x"))
        events.append(ClientInput(at=t, kind=InputKind.CONTENT, payload="q", turn_complete=True))
        for _ in range(3):
            events.append(ModelOutput(at=t, generation=1, text="chunk"))
        events.append(Usage(at=t, generation=1, prompt_tokens=100 + turn))
        events.append(TurnComplete(at=t, generation=1))
        events.append(ResumptionUpdate(at=t + 0.2, generation=1, handle=f"h{turn}",
                                       resumable=True))
    return events


def _rate(events: list[Event], sink: Any) -> float:
    """Events per second, the shell's part included as a shell does it: each `Send` reported
    written at once (without that nothing is ever covered, and the journal only grows)."""
    engine = Lifecycle(audit=sink)
    start = time.perf_counter()
    for event in events:
        for action in engine.feed(event):
            if type(action) is Send:
                engine.written(action.entry, action.generation, event.at)
    return len(events) / (time.perf_counter() - start)


def _telemetry_rate(events: list[Event]) -> float | None:
    """Events per second with the OpenTelemetry observer on (metrics and traces to the real
    SDK, read in memory), audit log off: what `telemetry=True` adds to the core's path. None
    without the OpenTelemetry SDK."""
    try:
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        from ..telemetry import Telemetry, session_observer
    except ImportError:
        return None
    tracers = TracerProvider()
    tracers.add_span_processor(SimpleSpanProcessor(InMemorySpanExporter()))
    meters = MeterProvider(metric_readers=[InMemoryMetricReader()])
    telemetry = Telemetry(tracer_provider=tracers, meter_provider=meters)
    observers: list[Any] = []

    def sink(record: Any) -> None:
        observers[0](record)

    def rate() -> float:
        engine = Lifecycle(audit=sink)
        observers[:] = [session_observer(telemetry, core=engine, model="bench", vertex=False)]
        start = time.perf_counter()
        for event in events:
            for action in engine.feed(event):
                if type(action) is Send:
                    engine.written(action.entry, action.generation, event.at)
        return len(events) / (time.perf_counter() - start)

    return rate()


def run(turns: int, rounds: int = 3) -> dict[str, Any]:
    events = _workload(turns)
    offs: list[float] = []
    telemetry: list[float] = []
    for _ in range(rounds):  # off and on alternately, so drift on a shared machine moves both
        offs.append(_rate(events, lambda record: None))
        rate = _telemetry_rate(events)
        if rate is not None:
            telemetry.append(rate)
    off = max(offs)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "audit.jsonl"
        writer = auditlog.configure(path, console=False)
        try:
            on = max(_rate(events, structlog_sink()) for _ in range(rounds))
        finally:
            if writer is not None:
                writer.close()
            structlog.reset_defaults()
        size = path.stat().st_size
    return {
        "events": len(events),
        "events_per_s_audit_off": round(off),
        "events_per_s_audit": round(on),
        "events_per_s_telemetry": round(max(telemetry)) if telemetry else None,
        "telemetry_ratio": round(max(telemetry) / off, 3) if telemetry else None,
        "audit_bytes_per_event": round(size / (len(events) * rounds)),
    }
