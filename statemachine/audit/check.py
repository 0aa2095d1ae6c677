"""`python -m statemachine audit LOG...`: read audit logs back as a stream and check them.

Per file: the hash chain (a removed, inserted, reordered or edited line breaks it). Per session:
sequence numbers contiguous, every transition a row of the table taken from the state the session
was in, the session ending in a sane place. Memory stays constant in the log's size: lines are
read one at a time and each session keeps counters, not records.

Exit status: 0 clean, 1 violations found (each with file:line and what is wrong), 2 unreadable
input (a file that cannot be opened, is empty, or holds no audit record at all: "clean" would
be a lie about a file that is not an audit log).
"""

from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs

from ..core import table
from ..core.records import SCHEMA_VERSION
from ..core.table import State, Trigger
from .jsonl import GENESIS, line_hash, split_line

#: States a log may end in without a violation: closed, or still live when the log was cut.
SANE_ENDS = frozenset({State.TERMINATED, State.STREAMING, State.COMPRESSED})
_ROTATION_TRIGGERS = frozenset(t.value for t in table.ROTATIONS)
_TRIGGERS = frozenset(t.value for t in Trigger)
_STATES = frozenset(s.value for s in State)


@attrs.define
class Violation:
    file: str
    line: int
    message: str
    session: str | None = None

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}"
        return f"{where}: {self.message}" + (f" (session {self.session})" if self.session else "")


@attrs.define
class SessionSummary:
    """What one session did, accumulated record by record."""

    session: str
    file: str
    first_line: int
    records: int = 0
    last_seq: int = 0
    state: str = State.IDLE.value
    since: float | None = None
    first_mono: float | None = None
    last_mono: float | None = None
    time_in: defaultdict[str, float] = attrs.field(factory=lambda: defaultdict(float))
    transitions: Counter[str] = attrs.field(factory=Counter)
    rotations: int = 0
    resumes: int = 0
    fresh_restarts: int = 0
    close_codes: Counter[str] = attrs.field(factory=Counter)
    replayed: int = 0
    dropped: int = 0
    rotation_outages: list[float] = attrs.field(factory=list)
    drop_outages: list[float] = attrs.field(factory=list)
    _resuming_since: float | None = None
    _resuming_by_rotation: bool = False

    def advance(self, record: dict[str, Any]) -> None:
        mono = float(record["mono"])
        if self.first_mono is None:
            self.first_mono = self.since = mono
        self.last_mono = mono
        kind, name = record["kind"], record["name"]
        if kind == "transition":
            dest = record["dest"]
            self.time_in[self.state] += mono - (self.since if self.since is not None else mono)
            self.since = mono
            self.transitions[f"{record['source']} -{name}-> {dest}"] += 1
            if dest == State.RESUMING.value and record["source"] != State.RESUMING.value:
                self._resuming_since = mono
                self._resuming_by_rotation = name in _ROTATION_TRIGGERS
                self.rotations += name in _ROTATION_TRIGGERS
            if self.state == State.RESUMING.value and dest != State.RESUMING.value:
                if self._resuming_since is not None and name == Trigger.SETUP_COMPLETE.value:
                    outage = mono - self._resuming_since
                    (self.rotation_outages if self._resuming_by_rotation
                     else self.drop_outages).append(outage)
                    self.resumes += 1
                self._resuming_since = None
            self.fresh_restarts += name == Trigger.RESTART_FRESH.value
            self.state = dest
        elif kind == "event" and name == "connection_lost" and not record.get("stale"):
            cause = record.get("cause") or {}
            self.close_codes[str(cause.get("http_status") or cause.get("code"))] += 1
        elif kind == "notice":
            cause = record.get("cause") or {}
            if name == "resumed":
                self.replayed += int(cause.get("replayed", 0))
            elif name == "input_dropped":
                self.dropped += 1

    def finish(self) -> None:
        if self.last_mono is not None and self.since is not None:
            self.time_in[self.state] += self.last_mono - self.since
            self.since = self.last_mono

    def as_dict(self) -> dict[str, Any]:
        return {
            "session": self.session,
            "file": self.file,
            "records": self.records,
            "final_state": self.state,
            "duration_s": round((self.last_mono or 0) - (self.first_mono or 0), 6),
            "time_in_state_s": {k: round(v, 6) for k, v in sorted(self.time_in.items())},
            "states_visited": sorted(self.time_in),
            "transitions": dict(sorted(self.transitions.items())),
            "rotations": self.rotations,
            "rotation_outage_ms": _percentiles(self.rotation_outages),
            "drop_outage_ms": _percentiles(self.drop_outages),
            "resumes": self.resumes,
            "fresh_restarts": self.fresh_restarts,
            "close_codes": dict(sorted(self.close_codes.items())),
            "replayed": self.replayed,
            "dropped": self.dropped,
        }


def _percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p95": None, "max": None, "n": 0}
    ordered = sorted(values)

    def pick(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)] * 1000, 3)

    return {"p50": pick(0.5), "p95": pick(0.95), "max": round(ordered[-1] * 1000, 3),
            "n": len(ordered)}


@attrs.define
class Report:
    sessions: dict[str, SessionSummary] = attrs.field(factory=dict)
    violations: list[Violation] = attrs.field(factory=list)
    unreadable: list[str] = attrs.field(factory=list)

    @property
    def exit_code(self) -> int:
        if self.unreadable:
            return 2
        return 1 if self.violations else 0


_REQUIRED = ("v", "prev", "hash", "session", "seq", "mono", "kind", "name", "state")


def _lines(path: Path) -> Iterator[tuple[int, bytes, bool]]:
    """(line number, raw bytes, ended with a newline), one at a time."""
    with path.open("rb") as f:
        for number, raw in enumerate(f, start=1):
            yield number, raw.rstrip(b"\r\n"), raw.endswith(b"\n")


def check_file(path: Path, report: Report) -> None:
    name = str(path)
    prev = GENESIS
    open_sessions: dict[str, SessionSummary] = {}
    try:
        lines = _lines(path)
        for number, raw, complete in lines:
            if not raw.strip():
                continue

            def flag(message: str, session: str | None = None, number: int = number) -> None:
                report.violations.append(Violation(name, number, message, session))

            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                flag(f"not UTF-8 (byte {exc.start}): wrong encoding or a corrupted line")
                continue
            try:
                record = json.loads(text)
            except ValueError:
                flag("truncated last line (the writer was cut off)" if not complete
                     else "not a JSON record")
                continue
            if not isinstance(record, dict) or any(k not in record for k in _REQUIRED):
                missing = [k for k in _REQUIRED if not isinstance(record, dict) or k not in record]
                flag(f"not an audit record: missing {', '.join(missing)}")
                continue
            if record["v"] != SCHEMA_VERSION:
                flag(f"schema version {record['v']!r}; this tool reads version {SCHEMA_VERSION}")
                continue
            if record["prev"] != prev:
                flag("hash chain broken: a line before this one was removed, inserted, "
                     "reordered or edited")
            parts = split_line(text.rstrip())
            if parts is None or line_hash(parts[0]) != record["hash"]:
                flag("hash mismatch: this line was edited after it was written")
            prev = record["hash"]
            sid = str(record["session"])
            summary = report.sessions.get(sid)
            if summary is None:
                summary = SessionSummary(session=sid, file=name, first_line=number)
                report.sessions[sid] = summary
            open_sessions[sid] = summary
            _check_record(record, summary, flag)
    except OSError as exc:
        report.unreadable.append(f"{name}: {exc.strerror or exc}")
        return
    for summary in open_sessions.values():
        summary.finish()
        if State(summary.state) not in SANE_ENDS:
            report.violations.append(Violation(
                name, summary.first_line,
                f"session ends in {summary.state!r}: neither closed nor live", summary.session))


def _check_record(record: dict[str, Any], summary: SessionSummary, flag: Any) -> None:
    sid = summary.session
    seq = record["seq"]
    if seq != summary.last_seq + 1:
        flag(f"sequence jumps from {summary.last_seq} to {seq}", sid)
    summary.last_seq = seq
    summary.records += 1
    kind = record["kind"]
    if kind == "transition":
        source, dest, name = record.get("source"), record.get("dest"), record["name"]
        if source != summary.state:
            flag(f"transition {name} from {source!r}, but the session was in {summary.state!r}",
                 sid)
        legal = (
            name in _TRIGGERS
            and isinstance(source, str)
            and source in _STATES
            and any(row.dest.value == dest for row in table.rows_for(Trigger(name), State(source)))
        )
        if not legal:
            flag(f"illegal transition: {name} from {source!r} to {dest!r} is not in the table",
                 sid)
    elif kind in ("event", "notice", "rejected") and record["state"] != summary.state:
        flag(f"{kind} {record['name']} recorded in {record['state']!r}, but the session was in "
             f"{summary.state!r}", sid)
    summary.advance(record)


def not_an_audit_log(path: Path) -> str | None:
    """Why `path` is not an audit log (empty, or no line is a record), or None if it holds at
    least one record (or cannot be opened: `check_file` reports that). Stops at the first record,
    so a real log costs one line."""
    try:
        with path.open("rb") as f:
            empty = True
            for raw in f:
                empty = empty and not raw.strip()
                try:
                    record = json.loads(raw)
                except ValueError:
                    continue
                if isinstance(record, dict) and all(k in record for k in _REQUIRED):
                    return None
    except OSError:
        return None
    if empty:
        return f"{path}: empty: no audit records to check"
    return (f"{path}: not an audit log: no line is an audit record (a JSON object with "
            f"{', '.join(_REQUIRED)})")


def check(paths: list[str]) -> Report:
    report = Report()
    for path in paths:
        reason = not_an_audit_log(Path(path))
        if reason is not None:
            report.unreadable.append(reason)
            continue
        check_file(Path(path), report)
    return report


def render(report: Report) -> str:
    out: list[str] = []
    for s in report.sessions.values():
        d = s.as_dict()
        out.append(f"session {d['session']} ({d['file']}): {d['records']} records, "
                   f"{d['duration_s']:.3f} s, ends {d['final_state']}")
        times = ", ".join(f"{k} {v:.3f}s" for k, v in d["time_in_state_s"].items())
        out.append(f"  time in state: {times}")
        r = d["rotation_outage_ms"]
        out.append(f"  rotations {d['rotations']} (outage ms p50 {r['p50']} p95 {r['p95']} "
                   f"max {r['max']}), resumes {d['resumes']}, fresh restarts "
                   f"{d['fresh_restarts']}")
        codes = ", ".join(f"{k}x{v}" for k, v in d["close_codes"].items()) or "none"
        out.append(f"  close codes {codes}; replayed {d['replayed']}, dropped {d['dropped']}")
    for v in report.violations:
        out.append(f"VIOLATION {v}")
    for u in report.unreadable:
        out.append(f"UNREADABLE {u}")
    verdict = {0: "clean", 1: f"{len(report.violations)} violation(s)", 2: "unreadable input"}
    out.append(f"{len(report.sessions)} session(s): {verdict[report.exit_code]}")
    return "\n".join(out)


def as_json(report: Report) -> str:
    return json.dumps({
        "sessions": [s.as_dict() for s in report.sessions.values()],
        "violations": [attrs.asdict(v) for v in report.violations],
        "unreadable": report.unreadable,
        "exit_code": report.exit_code,
    }, indent=2)
