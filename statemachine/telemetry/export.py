"""Telemetry for `python -m statemachine demo --telemetry DEST`: the OpenTelemetry SDK's
exporters, to the console or to a JSON Lines file, and a line saying where the traces went.

Needs opentelemetry-sdk (the library itself needs only the API).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import IO, Any

from ..errors import SettingsError
from . import Telemetry


class DemoExport:
    """Spans as each ends, and the metrics once at the end, to stdout (`console`) or to a
    file (one JSON object per line)."""

    def __init__(self, dest: str) -> None:
        try:
            from opentelemetry.sdk.metrics import MeterProvider
            from opentelemetry.sdk.metrics.export import InMemoryMetricReader
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor
        except ImportError as exc:
            raise SettingsError("demo --telemetry needs the OpenTelemetry SDK: pip install "
                                "opentelemetry-sdk") from exc
        self.dest = dest
        self._file: IO[str] | None = None
        if dest != "console":
            self._file = Path(dest).open("w")  # noqa: SIM115 (closed in finish)
        self.spans: list[Any] = []
        exporter = ConsoleSpanExporter(
            out=self._file, formatter=self._format) if self._file else ConsoleSpanExporter(
            formatter=self._format)
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])

    def _format(self, span: Any) -> str:
        self.spans.append(span)
        if self._file is not None:
            return str(span.to_json(indent=None)) + "\n"
        return str(span.to_json()) + "\n"

    @property
    def telemetry(self) -> Telemetry:
        return Telemetry(tracer_provider=self.tracer_provider, meter_provider=self.meter_provider)

    def finish(self) -> list[str]:
        """Write the metrics, shut the providers down; the lines that say where it all went."""
        data = self.reader.get_metrics_data()
        metrics = json.loads(data.to_json()) if data is not None else {}
        names = sorted({m["name"] for rm in metrics.get("resource_metrics", [])
                        for sm in rm["scope_metrics"] for m in sm["metrics"]})
        if self._file is not None:
            self._file.write(json.dumps({"metrics": metrics}) + "\n")
        else:
            print(json.dumps({"metrics": metrics}, indent=2))
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()
        if self._file is not None:
            self._file.close()
        where = "printed above" if self._file is None else f"written to {self.dest}"
        traces = sorted({f"{s.context.trace_id:032x}" for s in self.spans})
        sessions = sum(1 for s in self.spans if s.name.startswith("realtime_session "))
        connections = sum(1 for s in self.spans if s.name.startswith("realtime_connection "))
        return [f"Telemetry ({where}): trace {', '.join(traces) or '(none)'}: {len(self.spans)} "
                f"spans ({sessions} session, {connections} connections); "
                f"{len(names)} metrics ({', '.join(names)})."]
