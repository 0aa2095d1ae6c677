"""`python -m statemachine audit LOG...`: read audit logs back as a stream and check them.

Per file: the hash chain (a removed, inserted, reordered or edited line breaks it). Per session:
sequence numbers contiguous, every transition a row of the table taken from the state the session
was in, the session ending in a sane place. Memory stays constant in the log's size: lines are
read one at a time and each session keeps counters, not records.

With public keys (`--public-key`), the signed checkpoints too: each one's signature, its count
of the lines before it, and a seal right after each session's `ended` notice. Then any edit,
insertion, deletion or reordering, even with the chain recomputed, is a violation; lines after the
last signature are reported as unsealed (a crash and a cut tail look alike; a cut right after a
writer's closing checkpoint cannot be seen in the file at all). Without a key the chain only
shows accidental damage: whoever can write the file can recompute it.

Exit status: 0 clean, 1 violations found (each with file:line and what is wrong) or, with a key,
records no signature covers; 2 unreadable input (a file that cannot be opened, an empty file, a
file that holds no audit record).
"""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import attrs
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ..core import table
from ..core.table import State, Trigger
from . import reader, signing
from .jsonl import CHECKPOINTS, GENESIS_BY_VERSION, HASH_HEX, line_hash, split_line, split_member
from .stats import percentile

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
    sealed: bool = False
    _resuming_since: float | None = None
    _resuming_by_rotation: bool = False

    def advance(self, record: dict[str, Any]) -> None:
        mono = float(record["mono"])
        if self.first_mono is None:
            self.first_mono = self.since = mono
        self.last_mono = mono
        kind, name = record["kind"], record["name"]
        if kind == "transition":
            dest, name = record["dest"], table.current_name(name)
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
            self.fresh_restarts += (name == Trigger.RESTART_OR_GIVE_UP.value
                                    and record.get("dest") == State.CONNECTING.value)
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
            "sealed": self.sealed,
        }


def _percentiles(values: list[float]) -> dict[str, float | None]:
    """p50, p95 and the maximum, in milliseconds."""
    if not values:
        return {"p50": None, "p95": None, "max": None, "n": 0}

    def ms(q: float) -> float:
        value = percentile(values, q)
        assert value is not None
        return round(value * 1000, 3)

    return {"p50": ms(0.5), "p95": ms(0.95), "max": ms(1.0), "n": len(values)}


@attrs.define
class Unsealed:
    """Lines after the last signature of a file: not tampering that can be shown, but nothing
    vouches for them (a writer that crashed, or a tail that was cut, look the same)."""

    file: str
    first: int
    last: int
    records: int
    sessions: dict[str, int]
    why: str

    def __str__(self) -> str:
        if not self.records:
            return f"{self.file}:{self.last}: unsealed: {self.why}"
        who = ", ".join(f"session {s}: {n}" for s, n in self.sessions.items())
        return (f"{self.file}:{self.first}-{self.last}: unsealed: {self.records} records not "
                f"covered by a signature ({who}); {self.why}")


@attrs.define
class Report:
    sessions: dict[str, SessionSummary] = attrs.field(factory=dict)
    violations: list[Violation] = attrs.field(factory=list)
    unreadable: list[str] = attrs.field(factory=list)
    #: Public keys by key id; empty: the chain alone is checked.
    keys: dict[str, Ed25519PublicKey] = attrs.field(factory=dict)
    unsealed: list[Unsealed] = attrs.field(factory=list)
    verified: Counter[str] = attrs.field(factory=Counter)  # checkpoints verified, per key id
    signed_by: set[str] = attrs.field(factory=set)  # key ids seen in checkpoints

    @property
    def exit_code(self) -> int:
        if self.unreadable:
            return 2
        return 1 if self.violations or self.unsealed else 0

    @property
    def integrity(self) -> str:
        if not self.keys:
            return UNKEYED
        ids = ", ".join(sorted(self.keys))
        if not self.verified:
            return f"signed, but no checkpoint verified with key id {ids}: nothing is vouched for"
        return (f"signed: {self.verified.total()} checkpoint(s) verified with key id {ids}; "
                "edits, insertions, deletions, reordering and a recomputed chain are detected")


UNKEYED = "unkeyed chain: detects accidental damage only"
_REQUIRED = ("v", "prev", "hash", "session", "seq", "mono", "kind", "name", "state")
_CHECKPOINT_REQUIRED = ("v", "prev", "hash", "kind", "name", "count", "key_id", "sig")
_HEX = re.compile(r"[0-9a-f]+")


@attrs.define
class _Coverage:
    """Per file, with public keys: which lines a verified signature covers, and the seals."""

    file: str
    report: Report
    first: int | None = None  # first line not yet covered by a signature
    last: int = 0
    records: int = 0
    sessions: Counter[str] = attrs.field(factory=Counter)
    segment: bool = False  # between a signing writer's open and close checkpoints
    last_checkpoint: tuple[int, str] | None = None
    awaiting_seal: tuple[str, int, Any] | None = None  # session, line of `ended`, its seq

    def line(self, number: int) -> None:
        self.first = number if self.first is None else self.first
        self.last = number

    def record(self, number: int, record: dict[str, Any], flag: Any) -> None:
        self._seal_missing(flag)
        sid = str(record["session"])
        self.records += 1
        self.sessions[sid] += 1
        if self.segment and record["kind"] == "notice" and record["name"] == "ended":
            self.awaiting_seal = (sid, number, record["seq"])

    def _seal_missing(self, flag: Any) -> None:
        if self.awaiting_seal is not None:
            sid, line, _ = self.awaiting_seal
            flag(f"session {sid} ended on line {line} but no seal follows it (the writer writes "
                 "both at once): a line was removed or inserted", sid)
            self.awaiting_seal = None

    def checkpoint(self, number: int, record: dict[str, Any], body: str, flag: Any) -> bool:
        """Check one checkpoint; True if its signature verified."""
        name, key_id = record["name"], str(record["key_id"])
        ok = True
        if record["count"] != number - 1:
            flag(f"checkpoint counts {record['count']} lines before it, but there are "
                 f"{number - 1}: lines were removed or inserted")
            ok = False
        if name == "seal":
            expected = self.awaiting_seal
            if expected is None or (expected[0], expected[2]) != (record.get("session"),
                                                                  record.get("seq")):
                flag(f"seal of session {record.get('session')} does not follow that session's "
                     "ended notice: lines were moved, removed or inserted")
                ok = False
            self.awaiting_seal = None
        else:
            self._seal_missing(flag)
        public = self.report.keys.get(key_id)
        if public is None:
            flag(f"checkpoint signed with key id {key_id}, which is not among the public keys "
                 "given: forged, or pass that key's --public-key")
            ok = False
        elif not signing.verify(public, body, str(record["sig"])):
            flag("signature does not verify: this checkpoint, or lines before it, were rewritten "
                 "(and the hash chain recomputed)")
            ok = False
        if ok:
            self.report.verified[key_id] += 1
        if name == "open":
            self._uncovered("written before a signing writer opened the file (by a writer "
                            "without a key, or one that stopped before signing them)", number - 1)
            self.segment = True
        elif name == "close":
            self.segment = False
        self.first, self.records, self.sessions = None, 0, Counter()
        self.last_checkpoint = (number, name)
        return ok

    def _uncovered(self, why: str, last: int) -> None:
        if self.records and self.first is not None:
            self.report.unsealed.append(Unsealed(self.file, self.first, last, self.records,
                                                 dict(self.sessions), why))

    def finish(self, flag: Any) -> None:
        self._seal_missing(flag)
        if self.last_checkpoint is None:
            self._uncovered("this log has no signed checkpoint: it was written without a signing "
                            "key (schema v1 logs never have one), or its checkpoints were removed",
                            self.last)
        elif self.records:
            self._uncovered("the writer stopped before signing them: a crash, or the tail was "
                            "cut; the signed lines before them are intact", self.last)
        elif self.segment:
            line, name = self.last_checkpoint
            self.report.unsealed.append(Unsealed(
                self.file, line, line, 0, {},
                f"the log ends at a {name} checkpoint, without the writer's closing one: a "
                "crash, or the lines after it were removed"))


def check_file(path: Path, report: Report) -> None:
    name = str(path)
    prev: str | None = None
    open_sessions: dict[str, SessionSummary] = {}
    coverage = _Coverage(name, report) if report.keys else None
    violations: list[Violation] = []
    audit_lines = total = written = 0
    try:
        for line in reader.lines(path):
            number, raw = line.number, line.raw
            total = number
            written += 1
            if coverage is not None:
                coverage.line(number)

            def flag(message: str, session: str | None = None, number: int = number) -> None:
                violations.append(Violation(name, number, message, session))

            if line.problem is not None or line.record is None:
                flag(line.problem or "not an audit record")
                continue
            record = _validated(line.record, flag)
            if record is None:
                continue
            audit_lines += 1
            version = record["v"]
            expected = prev if prev is not None else GENESIS_BY_VERSION[version]
            if record["prev"] != expected:
                flag("hash chain broken: a line before this one was removed, inserted, "
                     "reordered or edited")
            parts = split_line(raw.decode("utf-8").rstrip())
            if parts is None or line_hash(parts[0], version) != record["hash"]:
                flag("hash mismatch: this line was edited after it was written")
            prev = record["hash"]
            if record["kind"] == "checkpoint":
                report.signed_by.add(str(record["key_id"]))
                signed = split_member(parts[0], "sig") if parts is not None else None
                if signed is None:
                    flag("checkpoint without a signature at its end: edited")
                elif (coverage is not None and coverage.checkpoint(number, record, signed[0], flag)
                      and record["name"] == "seal" and record.get("session") in report.sessions):
                    report.sessions[str(record["session"])].sealed = True
                continue
            sid = str(record["session"])
            summary = report.sessions.get(sid)
            if summary is None:
                summary = SessionSummary(session=sid, file=name, first_line=number)
                report.sessions[sid] = summary
            open_sessions[sid] = summary
            if coverage is not None:
                coverage.record(number, record, flag)
            _check_record(record, summary, flag)
    except OSError as exc:
        report.unreadable.append(f"{name}: {exc.strerror or exc}")
        return
    if not audit_lines:
        report.unreadable.append(
            f"{name}: empty file: no audit records" if not written else
            f"{name}: not an audit log: none of its {total} lines is an audit record")
        return
    report.violations += violations
    if coverage is not None:
        coverage.finish(lambda message, session=None: report.violations.append(
            Violation(name, total, message, session)))
    for summary in open_sessions.values():
        summary.finish()
        if State(summary.state) not in SANE_ENDS:
            report.violations.append(Violation(
                name, summary.first_line,
                f"session ends in {summary.state!r}: neither closed nor live", summary.session))


def _validated(record: dict[str, Any], flag: Any) -> dict[str, Any] | None:
    """The record (a JSON object, as `reader.lines` read it) if it is an audit record or a
    checkpoint of a version this tool reads, or None (and a violation saying why)."""
    if record.get("v") not in GENESIS_BY_VERSION:
        if "v" in record and "prev" in record:
            flag(f"schema version {record['v']!r}; this tool reads versions "
                 f"{', '.join(map(str, GENESIS_BY_VERSION))}")
        else:
            flag("not an audit record: missing " + ", ".join(
                k for k in ("v", "prev", "hash") if k not in record))
        return None
    checkpoint = record.get("kind") == "checkpoint"
    required = _CHECKPOINT_REQUIRED if checkpoint else _REQUIRED
    missing = [k for k in required if k not in record]
    if missing:
        flag(f"not an audit record: missing {', '.join(missing)}")
        return None
    hex_len = HASH_HEX[record["v"]]
    for key in ("prev", "hash"):
        value = record[key]
        if not (isinstance(value, str) and _HEX.fullmatch(value)
                and len(value) in HASH_HEX.values()):
            flag(f"not an audit record: {key} is not a hash")
            return None
    if len(record["hash"]) != hex_len:
        flag(f"not an audit record: a version {record['v']} hash has {hex_len} hex digits")
        return None
    if checkpoint and (record["v"] < 2 or record["name"] not in CHECKPOINTS
                       or not isinstance(record["count"], int)):
        flag("not a valid checkpoint (version, name or count)")
        return None
    return record


def _check_record(record: dict[str, Any], summary: SessionSummary, flag: Any) -> None:
    sid = summary.session
    seq = record["seq"]
    if seq != summary.last_seq + 1:
        flag(f"sequence jumps from {summary.last_seq} to {seq}", sid)
    summary.last_seq = seq
    summary.records += 1
    kind = record["kind"]
    if kind == "transition":
        source, dest = record.get("source"), record.get("dest")
        name = table.current_name(record["name"])
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


def check(paths: list[str], public_keys: list[str] | None = None) -> Report:
    """Check the logs; with public key files, the signed checkpoints too.
    Raises SigningKeyError if a public key cannot be read."""
    report = Report(keys=dict(signing.load_public_key(p) for p in public_keys or []))
    for path in paths:
        check_file(Path(path), report)
    return report


def render(report: Report) -> str:
    out: list[str] = []
    for s in report.sessions.values():
        d = s.as_dict()
        sealed = ", sealed" if d["sealed"] else ""
        out.append(f"session {d['session']} ({d['file']}): {d['records']} records, "
                   f"{d['duration_s']:.3f} s, ends {d['final_state']}{sealed}")
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
    for w in report.unsealed:
        out.append(f"UNSEALED {w}")
    for u in report.unreadable:
        out.append(f"UNREADABLE {u}")
    integrity = report.integrity
    if not report.keys and report.signed_by:
        integrity += (f" (the log has checkpoints signed by key id "
                      f"{', '.join(sorted(report.signed_by))}: pass --public-key to verify them)")
    out.append(f"integrity: {integrity}")
    problems = [f"{len(report.violations)} violation(s)"] if report.violations else []
    if report.unsealed:
        problems.append(f"{sum(u.records for u in report.unsealed)} record(s) unsealed")
    verdict = {0: "clean", 1: ", ".join(problems), 2: "unreadable input"}
    out.append(f"{len(report.sessions)} session(s): {verdict[report.exit_code]}")
    return "\n".join(out)


def as_json(report: Report) -> str:
    return json.dumps({
        "sessions": [s.as_dict() for s in report.sessions.values()],
        "violations": [attrs.asdict(v) for v in report.violations],
        "unsealed": [attrs.asdict(u) for u in report.unsealed],
        "unreadable": report.unreadable,
        "integrity": "signed" if report.keys else "unkeyed",
        "verified_checkpoints": dict(report.verified),
        "exit_code": report.exit_code,
    }, indent=2)
