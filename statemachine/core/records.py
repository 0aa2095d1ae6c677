"""The audit vocabulary: one record per fed event and per transition (accepted or rejected).

A record is a flat dict with these keys (the JSON Lines schema of the audit log):

| key | meaning |
|---|---|
| `session` | session id (stable across connections and fresh restarts) |
| `seq` | 1, 2, 3... per session, no gaps |
| `mono` | monotonic seconds from the session's clock (the event's timestamp) |
| `wall` | Unix time in seconds |
| `kind` | `event` (fed to the core), `transition`, `rejected`, or `notice` (told to the app) |
| `name` | event (`go_away`...), trigger, or notice name (`input_dropped`, `resumed`...) |
| `state` | state when the record was made (for transitions: the destination) |
| `source`, `dest` | transitions and rejections only |
| `cause` | what explains it: close code and reason, `time_left`, timer, input kind... |
| `gen` | connection generation (1 for the first connection, +1 per connection attempt) |
| `handle_fp` | fingerprint of the latest resumable handle (never the handle) or null |
| `attempt` | failure retries in the current drop |
| `journal` | journal depth (input not yet covered by a handle) |
| `stale` | events only: it came from a connection the session already left |

Secrets never appear: handles only as `fingerprint()`, payloads never, API keys are never seen here.

In the log file the writer adds `v`, `prev` and `hash` (the chain) to each record, and, with a
signing key, checkpoint lines of their own (`kind` `checkpoint`; see `statemachine/audit/jsonl.py`).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from typing import Any

import attrs
import structlog

from .events import ClientInput, Event

#: 2: full SHA-256 chain hashes and signed checkpoint lines (see audit/jsonl.py); 1 still reads.
SCHEMA_VERSION = 2

AuditRecord = dict[str, Any]
AuditSink = Callable[[AuditRecord], None]

_LOGGER_NAME = "statemachine.audit"


def fingerprint(handle: str | None) -> str | None:
    """A short, stable, non-reversible name for a resumption handle."""
    if not handle:
        return None
    return "h-" + hashlib.sha256(handle.encode()).hexdigest()[:12]


def structlog_sink(logger: Any = None) -> AuditSink:
    """An audit sink writing each record through structlog as `lifecycle.<kind>`. The logger is
    bound once, when the session is created: configure structlog before creating sessions (an
    unbound proxy would rebuild the logger for every record, halving the throughput)."""
    log = (logger if logger is not None else structlog.get_logger(_LOGGER_NAME)).bind()
    info = log.info
    names = {kind: "lifecycle." + kind for kind in ("event", "transition", "rejected", "notice")}

    def sink(record: AuditRecord) -> None:
        info(names[record["kind"]], **record)

    return sink


def default_sink() -> AuditSink:
    """The sink of a session given none. A library prints nothing unless asked: records go
    through structlog only when the application configured it (itself, or with
    `statemachine.audit.configure`) before creating the session; otherwise they are dropped here
    and stay available through `audit=`, `on_event` and `session.events()`."""
    if structlog.is_configured():
        return structlog_sink()
    return _discard


def _discard(_record: AuditRecord) -> None:
    return None


#: Active `statemachine.testing.capture()` blocks: (audit sink, notice hook) pairs. Read only when
#: a session is created, so a capture costs nothing per record when none is active.
_CAPTURES: list[tuple[AuditSink, Callable[[Any], None]]] = []


def start_capture(sink: AuditSink, on_notice: Callable[[Any], None]) -> None:
    """Give every session created from now on a copy of its records and notices."""
    _CAPTURES.append((sink, on_notice))


def stop_capture(sink: AuditSink, on_notice: Callable[[Any], None]) -> None:
    """End a `start_capture` (sessions already created keep feeding it)."""
    _CAPTURES.remove((sink, on_notice))


def captured(sink: AuditSink) -> AuditSink:
    """`sink`, also copying each record to the active captures (itself when none is active)."""
    if not _CAPTURES:
        return sink
    sinks = (sink, *(s for s, _ in _CAPTURES))

    def tee(record: AuditRecord) -> None:
        for each in sinks:
            each(record)

    return tee


def capture_notice_hooks() -> tuple[Callable[[Any], None], ...]:
    """The notice hooks of the active captures, for a session being created."""
    return tuple(hook for _, hook in _CAPTURES)


class QuietLogger:
    """A structlog logger that stays silent while structlog is unconfigured (its default printer
    would write to stdout on behalf of an application that asked for nothing). Checked at each
    call, so configuring structlog later turns it on."""

    def __init__(self, name: str) -> None:
        self._name = name

    def _emit(self, level: str, message: str, **fields: Any) -> None:
        if structlog.is_configured():
            getattr(structlog.get_logger(self._name), level)(message, **fields)

    def info(self, message: str, **fields: Any) -> None:
        self._emit("info", message, **fields)

    def warning(self, message: str, **fields: Any) -> None:
        self._emit("warning", message, **fields)

    def error(self, message: str, **fields: Any) -> None:
        self._emit("error", message, **fields)


def notice_name(notice: Any) -> str:
    return _snake(type(notice).__name__)


def notice_fields(notice: Any) -> dict[str, Any]:
    """A notice's fields for the audit log: entries are counted, never written out."""
    fields: dict[str, Any] = {}
    for field in attrs.fields(type(notice)):
        value = getattr(notice, field.name)
        fields[field.name] = len(value) if isinstance(value, tuple) else value
    return fields


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


_SECRET_FIELDS = {"payload"}
_DESCRIBERS: dict[type, tuple[str, tuple[str, ...]]] = {}


def describe(event: Event) -> tuple[str, dict[str, Any]]:
    """The event's audit name and its cause fields, with secrets removed."""
    cls = type(event)
    cached = _DESCRIBERS.get(cls)
    if cached is None:
        names = tuple(
            f.name for f in attrs.fields(cls) if f.name not in _SECRET_FIELDS and f.name != "at"
        )
        cached = (_snake(cls.__name__), names)
        _DESCRIBERS[cls] = cached
    name, fields = cached
    cause: dict[str, Any] = {}
    for field in fields:
        value = getattr(event, field)
        if field == "handle":
            cause["handle_fp"] = fingerprint(value)
        elif field == "text":
            cause["chars"] = len(value) if value else 0
        elif field == "generation":
            continue
        else:
            cause[field] = value.value if hasattr(value, "value") else value
    return name, cause


def describe_input(event: ClientInput) -> dict[str, Any]:
    """`describe(event)`'s cause for a `ClientInput`, built directly: the hot path (50 audio
    chunks a second per session) skips the generic field walk. `tests/test_audit.py` checks
    that both agree, so a field added to `ClientInput` cannot be left out here."""
    return {"kind": event.kind.value, "turn_complete": event.turn_complete,
            "tool_ids": event.tool_ids, "scheduled": event.scheduled}
