"""Reading an audit log back: one place that turns lines into records, for every picture.

`lines()` yields each line with its number and what is wrong with it (the checker's concern);
`read_session()` keeps the well-formed records of one session, in order, and answers the
questions the pictures ask: which path it took, how long it spent in each state, where it
rotated and resumed. A picture holds one session in memory (thousands of records, not millions);
the checker streams.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs

from ..core.table import State, current_name
from ..errors import LogError


@attrs.frozen
class Line:
    """One line of a log: its number, its text and record if they could be read, else why not."""

    number: int
    raw: bytes
    complete: bool  # ended with a newline
    text: str | None = None
    record: dict[str, Any] | None = None
    problem: str | None = None


def lines(path: Path) -> Iterator[Line]:
    """Every non-blank line of `path`, one at a time (constant memory)."""
    with path.open("rb") as f:
        for number, data in enumerate(f, start=1):
            raw = data.rstrip(b"\r\n")
            complete = data.endswith(b"\n")
            if not raw.strip():
                continue
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield Line(number, raw, complete, problem=(
                    f"not UTF-8 (byte {exc.start}): wrong encoding or a corrupted line"))
                continue
            try:
                record = json.loads(text)
            except ValueError:
                yield Line(number, raw, complete, text, problem=(
                    "truncated last line (the writer was cut off)" if not complete
                    else "not a JSON record"))
                continue
            if not isinstance(record, dict):
                yield Line(number, raw, complete, text,
                           problem="not an audit record: not a JSON object")
                continue
            yield Line(number, raw, complete, text, record)


_NEEDED = ("session", "seq", "mono", "kind", "name")


def records(path: Path) -> Iterator[dict[str, Any]]:
    """The readable audit records of `path`; damaged lines are skipped (`audit` reports them)."""
    for line in lines(path):
        record = line.record
        if record is not None and all(k in record for k in _NEEDED):
            yield record


@attrs.frozen
class SessionPath:
    """What one session did: edges taken (with counts), states in order of first visit, the
    state it ended in."""

    session: str
    edges: Counter[tuple[str, str, str]]
    visited: tuple[str, ...]
    final: str


@attrs.frozen
class SessionLog:
    """The records of one session, in log order."""

    session: str
    records: tuple[dict[str, Any], ...]

    @property
    def start(self) -> float:
        return float(self.records[0]["mono"])

    def at(self, record: dict[str, Any]) -> float:
        """Seconds since the session's first record."""
        return float(record["mono"]) - self.start

    @property
    def duration(self) -> float:
        return self.at(self.records[-1])

    def transitions(self) -> list[dict[str, Any]]:
        return [r for r in self.records if r["kind"] == "transition"]

    def path(self) -> SessionPath:
        edges: Counter[tuple[str, str, str]] = Counter()
        visited: list[str] = [State.IDLE.value]
        final = State.IDLE.value
        for record in self.transitions():
            edges[(record["source"], record["dest"], current_name(record["name"]))] += 1
            for state in (record["source"], record["dest"]):
                if state not in visited:
                    visited.append(state)
            final = record["dest"]
        return SessionPath(session=self.session, edges=edges, visited=tuple(visited),
                           final=final)

    def bands(self) -> list[tuple[str, float, float]]:
        """(state, start, end) in seconds since the first record, one per stay in a state."""
        state, since = State.IDLE.value, 0.0
        out: list[tuple[str, float, float]] = []
        for record in self.transitions():
            at = self.at(record)
            out.append((state, since, at))
            state, since = record["dest"], at
        out.append((state, since, max(since, self.duration)))
        return out


def sessions(path: Path) -> list[str]:
    """The session ids in a log, in order of first appearance."""
    seen: dict[str, None] = {}
    for record in records(path):
        seen.setdefault(str(record["session"]), None)
    return list(seen)


def read_session(path: Path, session: str | None = None) -> SessionLog:
    """The records of one session (the first in the log if none is named). Raises ValueError
    when there is none, naming the sessions the log holds."""
    chosen = session
    kept: list[dict[str, Any]] = []
    others: dict[str, None] = {}
    for record in records(path):
        sid = str(record["session"])
        chosen = chosen or sid
        if sid == chosen:
            kept.append(record)
        else:
            others.setdefault(sid, None)
    if not kept or chosen is None:
        holds = f"; it holds {', '.join(list(others)[:5])}" if others else ""
        raise LogError(f"no records of session {session or '(any)'} in {path}{holds}")
    return SessionLog(session=chosen, records=tuple(kept))
