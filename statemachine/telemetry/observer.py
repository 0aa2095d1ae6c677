"""One session's traces and metrics, from its audit records. The only module that imports
OpenTelemetry (the API: the application picks the SDK and exporters).

Traces: a span for the logical session (`realtime_session {model}`), a child span per
connection (`realtime_connection {model}`) linked to the connection before it, span events for
transitions and notices, usage and close codes as attributes. Metrics: `definitions.METRICS`.
Records carry no secrets (handles only as fingerprints), and this module adds none.

Client inputs (50 a second per session) are skipped at the first line; everything else is rare
(a few records per turn). Open sessions and journal depths are read when a reader collects.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterable
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode

from ..core.records import QuietLogger
from ..core.table import FINAL, LIVE, State, Trigger
from . import Telemetry
from .definitions import METRICS, NAMESPACE, Metric

SCOPE = "statemachine"
_NS = NAMESPACE + "."
_LIVE = frozenset(s.value for s in LIVE)
_OPENING = frozenset({State.CONNECTING.value, State.RESUMING.value})
_LEAVING = frozenset({State.RESUMING.value, State.EXPIRED.value, State.TERMINATED.value})
_DRAINING = State.DRAINING.value
_LOST = frozenset({Trigger.CONNECTION_LOST.value, Trigger.SETUP_REFUSED.value})
_OPEN_STATES = tuple(s.value for s in State if s not in FINAL)

#: InputDropped reasons (free text) as a short class for a metric attribute, by their start
DROP_REASONS: tuple[tuple[str, str], ...] = (
    ("audio older than the replay window", "stale_audio"),
    ("video frame superseded", "superseded_video"),
    ("answered tool response", "answered_tool_response"),
    ("the tool call was cancelled", "cancelled_tool_call"),
    ("tool response to a call the resumed session never issued", "unknown_tool_call"),
    ("google-genai refused to send it", "refused_by_sdk"),
    ("context lost", "context_lost"),
    ("the session ended before it could be sent", "session_ended"),
)

#: events reported by nothing but their effects (transitions, notices): the bulk of a session's
#: records, skipped at the first line. None is also a trigger's name (transitions use those).
SKIPPED = frozenset({"client_input", "model_output", "generation_complete", "turn_complete",
                     "resumption_update", "latency", "interrupted", "interaction_status",
                     "tool_call", "tool_call_cancellation", "timer_fired", "store_done",
                     "token_issued"})
assert not SKIPPED & {t.value for t in Trigger}

_log = QuietLogger("statemachine.telemetry")


def drop_reason(reason: str) -> str:
    for start, short in DROP_REASONS:
        if reason.startswith(start):
            return short
    return "other"


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("gemini-live-statemachine")
    except PackageNotFoundError:
        return "0"


def _ns(wall: float) -> int:
    return int(wall * 1e9)


class Instruments:
    """The instruments of one meter provider, shared by every session reporting to it. The
    observable ones read the open sessions when a reader collects (another thread, possibly)."""

    def __init__(self, meter: metrics.Meter) -> None:
        self._lock = threading.Lock()
        self._open: weakref.WeakSet[SessionObserver] = weakref.WeakSet()
        self._seen: set[tuple[str, str]] = set()
        #: tokens reported, by (provider, model, type, modality): summed here, read when a
        #: reader collects (an SDK measurement per report would cost 20 us each)
        self._tokens: dict[tuple[str, str, str, str], int] = {}
        self.by_name: dict[str, Any] = {m.name: self._create(meter, m) for m in METRICS}

    def _create(self, meter: metrics.Meter, m: Metric) -> Any:
        if m.kind == "counter":
            return meter.create_counter(m.name, unit=m.unit, description=m.description)
        if m.kind == "histogram":
            return meter.create_histogram(m.name, unit=m.unit, description=m.description,
                                          explicit_bucket_boundaries_advisory=m.buckets)
        callback = {"gemini_live.sessions": self._sessions,
                    "gemini_live.journal.depth": self._depth,
                    "gemini_live.journal.depth.max": self._depth_max,
                    "gemini_live.tokens": self._token_totals}[m.name]
        if m.kind == "observable_counter":
            return meter.create_observable_counter(
                m.name, callbacks=[callback], unit=m.unit, description=m.description)
        if m.kind == "updown":
            return meter.create_observable_up_down_counter(
                m.name, callbacks=[callback], unit=m.unit, description=m.description)
        return meter.create_observable_gauge(m.name, callbacks=[callback], unit=m.unit,
                                             description=m.description)

    def opened(self, observer: SessionObserver) -> None:
        with self._lock:
            self._open.add(observer)
            self._seen.add(observer.key)

    def closed(self, observer: SessionObserver) -> None:
        with self._lock:
            self._open.discard(observer)

    def count_tokens(self, key: tuple[str, str], tokens: int, audio: int, kind: str) -> None:
        with self._lock:
            for modality, n in (("audio", audio), ("other", tokens - audio)):
                at = (*key, kind, modality)
                self._tokens[at] = self._tokens.get(at, 0) + n

    def _token_totals(self, _options: CallbackOptions) -> Iterable[Observation]:
        with self._lock:
            totals = dict(self._tokens)
        return [Observation(n, {**_common((provider, model)), "gen_ai.token.type": kind,
                                "gemini_live.modality": modality})
                for (provider, model, kind, modality), n in totals.items()]

    def _sessions_now(self) -> tuple[list[SessionObserver], set[tuple[str, str]]]:
        with self._lock:
            return list(self._open), set(self._seen)

    def _sessions(self, _options: CallbackOptions) -> Iterable[Observation]:
        sessions, seen = self._sessions_now()
        counts = {(key, state): 0 for key in seen for state in _OPEN_STATES}
        for s in sessions:
            state = s.core.state.value
            if state in _OPEN_STATES:
                counts[s.key, state] += 1
        return [Observation(n, {**_common(key), "gemini_live.state": state})
                for (key, state), n in counts.items()]

    def _depths(self) -> dict[tuple[str, str], list[int]]:
        sessions, seen = self._sessions_now()
        depths: dict[tuple[str, str], list[int]] = {key: [] for key in seen}
        for s in sessions:
            depths[s.key].append(len(s.core.journal))
        return depths

    def _depth(self, _options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(sum(d), _common(key)) for key, d in self._depths().items()]

    def _depth_max(self, _options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(max(d, default=0), _common(key)) for key, d in self._depths().items()]


def _common(key: tuple[str, str]) -> dict[str, str]:
    return {"gen_ai.provider.name": key[0], "gen_ai.request.model": key[1]}


_instruments: dict[int, tuple[Any, Instruments]] = {}
_instruments_lock = threading.Lock()


def instruments_for(provider: Any) -> Instruments:
    """The instruments of `provider` (None: the global meter provider), made once."""
    provider = provider if provider is not None else metrics.get_meter_provider()
    with _instruments_lock:
        known = _instruments.get(id(provider))
        if known is None or known[0] is not provider:
            meter = provider.get_meter(SCOPE, _version())
            known = (provider, Instruments(meter))
            _instruments[id(provider)] = known
        return known[1]


class _Usage:
    """Token counts summed over usageMetadata reports."""

    __slots__ = ("audio_input", "audio_output", "input", "output", "reports")

    def __init__(self) -> None:
        self.input = self.output = self.audio_input = self.audio_output = self.reports = 0

    def add(self, inp: int, out: int, audio_in: int | None, audio_out: int | None) -> None:
        self.reports += 1
        self.input += inp
        self.output += out
        self.audio_input += audio_in or 0
        self.audio_output += audio_out or 0

    def attributes(self) -> dict[str, int]:
        if not self.reports:
            return {}
        return {"gen_ai.usage.input_tokens": self.input,
                "gen_ai.usage.output_tokens": self.output,
                "gen_ai.usage.audio.input_tokens": self.audio_input,
                "gen_ai.usage.audio.output_tokens": self.audio_output}


class SessionObserver:
    """Fed every audit record of one session (`LiveSession` chains it before `on_event`)."""

    def __init__(self, telemetry: Telemetry, *, core: Any, model: str, vertex: bool) -> None:
        self.core = core
        provider = "gcp.vertex_ai" if vertex else "gcp.gemini"
        self.key = (provider, model)
        self.common = _common(self.key)
        self.model = model
        self.tracer: trace.Tracer | None = None
        if telemetry.traces:
            tracers = telemetry.tracer_provider or trace.get_tracer_provider()
            self.tracer = tracers.get_tracer(SCOPE, _version())
        self.instruments = instruments_for(telemetry.meter_provider) if telemetry.metrics \
            else None
        self.m = self.instruments.by_name if self.instruments is not None else {}
        self.session_span: Span | None = None
        self.conn_span: Span | None = None
        self.conn_gen: int = core.conn.generation
        self.conn_usage = _Usage()
        self.session_usage = _Usage()
        self.previous: trace.SpanContext | None = None
        #: the transition that will open the next connection: when, why, with which handle
        self.opening: tuple[float, str, str | None] | None = None
        self.server_session: str | None = None
        #: what started the drain in progress (go_away, token_expiring)
        self.drained_by = ""
        #: when the session left its last live connection (monotonic), why (a drain's cause,
        #: else the trigger), by which trigger, and whether it was a planned move
        self.left: tuple[float, str, str, bool] | None = None
        self.resume_cause = ""
        self.degraded_since: float | None = None
        self.started = False
        self.went_live = False
        self.ended = False
        self.broken = False

    # -- dispatch --------------------------------------------------------------------------------

    def __call__(self, record: dict[str, Any]) -> None:
        name = record["name"]
        if name in SKIPPED or self.broken:
            return  # the hot path: nothing to report per input or model chunk
        try:
            self._record(name, record)
        except Exception as exc:  # telemetry must never take a session down
            self.broken = True
            if self.instruments is not None:
                self.instruments.closed(self)
            _log.error("telemetry.failed", session=self.core.session_id,
                       error=f"{type(exc).__name__}: {exc}")

    def _record(self, name: str, record: dict[str, Any]) -> None:
        if not self.started:
            self._start(record)
        if record["gen"] != self.conn_gen and self.opening is not None:
            self._connection_opened(record)
        kind = record["kind"]
        if kind == "transition":
            self._transition(name, record)
        elif kind == "notice":
            self._notice(name, record)
        elif kind == "event":
            if name == "usage":
                self._usage(record["cause"])
            elif name == "setup_complete":
                self.server_session = record["cause"].get("session_id")
        elif kind == "rejected":
            self._event("gemini_live.rejected", record, {
                "gemini_live.trigger": name, "gemini_live.state": record["state"]})

    # -- spans -----------------------------------------------------------------------------------

    def _start(self, record: dict[str, Any]) -> None:
        self.started = True
        if self.instruments is not None:
            self.instruments.opened(self)
        if self.tracer is None:
            return
        self.session_span = self.tracer.start_span(
            f"realtime_session {self.model}", kind=SpanKind.INTERNAL,
            start_time=_ns(record["wall"]),
            attributes={**self.common, "gen_ai.operation.name": "realtime_session",
                        "gen_ai.realtime_session.id": self.core.session_id})

    def _connection_opened(self, record: dict[str, Any]) -> None:
        assert self.opening is not None
        wall, opened_by, handle_fp = self.opening
        self.opening = None
        self.conn_gen = record["gen"]
        self.server_session = None
        if self.conn_span is not None:
            self._end_connection(record["wall"])
        if self.tracer is None:
            return
        attributes: dict[str, Any] = {
            **self.common, "gen_ai.operation.name": "realtime_connection",
            "gen_ai.realtime_session.id": self.core.session_id,
            "gemini_live.connection.generation": self.conn_gen,
            "gemini_live.connection.opened_by": opened_by,
            "gemini_live.connection.resumed": handle_fp is not None,
        }
        if handle_fp is not None:
            attributes["gemini_live.connection.handle_fp"] = handle_fp
        links = [Link(self.previous, {"gemini_live.link": "previous_connection"})] \
            if self.previous is not None else []
        self.conn_span = self.tracer.start_span(
            f"realtime_connection {self.model}", kind=SpanKind.CLIENT,
            context=trace.set_span_in_context(self.session_span) if self.session_span
            else None,
            links=links, start_time=_ns(wall), attributes=attributes)

    def _end_connection(self, wall: float, cause: dict[str, Any] | None = None) -> None:
        span, self.conn_span = self.conn_span, None
        if span is None:
            return
        span.set_attributes(self.conn_usage.attributes())
        self.conn_usage = _Usage()
        if self.server_session:
            span.set_attribute("gemini_live.connection.server_session_id", self.server_session)
        if cause is not None:
            code = cause.get("code")
            error = str(code) if code is not None else str(cause.get("failure") or "closed")
            span.set_attributes({
                "error.type": error,
                "gemini_live.close.class": str(cause.get("disposition") or ""),
                "gemini_live.close.failure": str(cause.get("failure") or ""),
                "gemini_live.close.reason": str(cause.get("reason") or ""),
                "gemini_live.close.why": str(cause.get("why") or ""),
            })
            if code is not None:
                span.set_attribute("gemini_live.close.code", int(code))
            if cause.get("http_status") is not None:
                span.set_attribute("http.response.status_code", int(cause["http_status"]))
            span.set_status(Status(StatusCode.ERROR, str(cause.get("why") or error)))
        self.previous = span.get_span_context()
        span.end(end_time=_ns(wall))

    def _event(self, name: str, record: dict[str, Any], attributes: dict[str, Any]) -> None:
        span = self.conn_span or self.session_span
        if span is not None:
            span.add_event(name, attributes, timestamp=_ns(record["wall"]))

    # -- records ---------------------------------------------------------------------------------

    def _transition(self, trigger: str, record: dict[str, Any]) -> None:
        source, dest = record["source"], record["dest"]
        self._event("gemini_live.transition", record, {
            "gemini_live.trigger": trigger, "gemini_live.source": source,
            "gemini_live.dest": dest})
        if trigger in _LOST:
            self._lost(record)
        elif dest in _LEAVING:
            self._end_connection(record["wall"])
        if dest == _DRAINING and source != _DRAINING:
            self.drained_by = trigger
        if source in _LIVE and dest not in _LIVE and dest != State.TERMINATED.value:
            planned = source == _DRAINING and trigger not in _LOST
            self.left = (record["mono"], self.drained_by if planned else trigger, trigger,
                         planned)
        if dest in _OPENING:
            self.opening = (record["wall"], trigger,
                            record["handle_fp"] if dest == State.RESUMING.value else None)
        elif dest in _LIVE and source in _OPENING:
            self._live(record)

    def _lost(self, record: dict[str, Any]) -> None:
        cause = record["cause"]
        code = cause.get("code")
        if self.instruments is not None:
            self.m["gemini_live.connection.closes"].add(1, {
                **self.common,
                "gemini_live.close.code": str(code) if code is not None else "none",
                "gemini_live.close.class": str(cause.get("disposition") or "unknown"),
                "gemini_live.close.failure": str(cause.get("failure") or "unknown")})
        self._end_connection(record["wall"], cause)

    def _live(self, record: dict[str, Any]) -> None:
        """A connection completed setup: the outage since the last live one ends."""
        if self.session_span is not None and not self.went_live:
            self.went_live = True
            self.session_span.add_event("gen_ai.client.realtime_session.started",
                                        timestamp=_ns(record["wall"]))
        if self.left is None:
            return
        left_at, cause, trigger, planned = self.left
        self.left = None
        self.resume_cause = cause
        if self.instruments is not None:
            name = "gemini_live.rotation.outage" if planned else "gemini_live.resume.outage"
            self.m[name].record((record["mono"] - left_at) * 1000.0, {
                **self.common, "gemini_live.cause": cause, "gemini_live.trigger": trigger})

    def _usage(self, cause: dict[str, Any]) -> None:
        prompt = int(cause.get("prompt_tokens") or 0)
        response = cause.get("response_tokens")
        if response is None:
            total = cause.get("total_tokens")
            response = max(0, total - prompt) if total is not None else 0
        audio_in, audio_out = cause.get("prompt_audio_tokens"), cause.get("response_audio_tokens")
        self.conn_usage.add(prompt, response, audio_in, audio_out)
        self.session_usage.add(prompt, response, audio_in, audio_out)
        if self.instruments is not None:
            self.instruments.count_tokens(self.key, prompt, min(prompt, audio_in or 0), "input")
            self.instruments.count_tokens(self.key, response, min(response, audio_out or 0),
                                          "output")

    def _notice(self, name: str, record: dict[str, Any]) -> None:
        cause = record["cause"]
        self._event(_NS + name, record, {
            _NS + key: value for key, value in cause.items()
            if isinstance(value, str | bool | int | float)})
        if name == "ended":
            self._ended(record)
            return
        if self.instruments is None:
            return
        m, common = self.m, self.common
        if name == "resumed":
            m["gemini_live.resumes"].add(1, {**common, "gemini_live.cause": self.resume_cause})
            if cause.get("replayed"):
                m["gemini_live.inputs.replayed"].add(cause["replayed"], common)
        elif name == "input_dropped":
            m["gemini_live.inputs.dropped"].add(1, {
                **common, "gemini_live.reason": drop_reason(str(cause.get("reason", ""))),
                "gemini_live.input.kind": str(cause.get("kind", ""))})
        elif name == "repeated_reply":
            m["gemini_live.inputs.repeated"].add(
                1, {**common, "gemini_live.possible": bool(cause.get("possible"))})
        elif name == "reply_interrupted":
            m["gemini_live.replies.cut"].add(
                1, {**common, "gemini_live.cause": str(cause.get("reason", ""))})
        elif name == "context_lost":
            m["gemini_live.context.lost"].add(1, common)
        elif name == "store_degraded":
            if self.degraded_since is None:
                self.degraded_since = record["wall"]
                m["gemini_live.store.degradations"].add(1, common)
        elif name == "store_recovered":
            self._recovered(record["wall"])
        elif name == "token_expiring":
            m["gemini_live.token.renewals"].add(
                1, {**common, "gemini_live.renewing": bool(cause.get("renewing"))})

    def _recovered(self, wall: float) -> None:
        since, self.degraded_since = self.degraded_since, None
        if since is not None and self.instruments is not None:
            self.m["gemini_live.store.degraded.time"].add(max(0.0, wall - since) * 1000.0,
                                                          self.common)

    def _ended(self, record: dict[str, Any]) -> None:
        if self.ended:
            return
        self.ended = True
        cause = record["cause"]
        failed = not cause.get("by_application")
        code = cause.get("code")
        error = str(cause.get("failure") or (code if code is not None else "ended"))
        self._end_connection(record["wall"])
        if self.instruments is not None:
            self._recovered(record["wall"])
            outcome = {**self.common, "gemini_live.outcome": "failed" if failed else "closed"}
            if failed:
                outcome["error.type"] = error
            self.m["gemini_live.sessions.ended"].add(1, outcome)
            self.instruments.closed(self)
        span, self.session_span = self.session_span, None
        if span is None:
            return
        counters = self.core.counters
        span.set_attributes({
            **self.session_usage.attributes(),
            "gemini_live.session.connections": counters.connections,
            "gemini_live.session.rotations": counters.rotations,
            "gemini_live.session.resumes": counters.resumes,
            "gemini_live.session.fresh_restarts": counters.fresh_restarts,
            "gemini_live.session.inputs": counters.inputs,
            "gemini_live.session.replayed": counters.replayed,
            "gemini_live.session.dropped": counters.dropped,
            "gemini_live.session.end_reason": str(cause.get("reason") or ""),
        })
        if code is not None:
            span.set_attribute("gemini_live.close.code", int(code))
        span.add_event("gen_ai.client.realtime_session.ended", timestamp=_ns(record["wall"]))
        if failed:
            span.set_attributes({"error.type": error})
            span.set_status(Status(StatusCode.ERROR, str(cause.get("reason") or error)))
        span.end(end_time=_ns(record["wall"]))
