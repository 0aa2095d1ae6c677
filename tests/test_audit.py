"""The audit log format (schema, hash chain) and `python -m statemachine audit`."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import tracemalloc
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import structlog
from hypothesis import given
from hypothesis import strategies as st

from statemachine.audit import check as auditcheck
from statemachine.audit.jsonl import JsonLinesWriter, configure
from statemachine.core import Lifecycle
from statemachine.core.events import ClientInput, InputKind
from statemachine.core.persistence import Persistence
from statemachine.core.records import describe, describe_input
from statemachine.core.table import shortest_paths

from .drivers import Driver
from .strategies import input_kinds


def write_log(path: Path, sessions: int = 2) -> None:
    """Sessions that go through every state (shortest paths, then close), via structlog."""
    writer = configure(path, console=False)
    try:
        for target, steps in shortest_paths().items():
            for _ in range(sessions):
                engine = Lifecycle(rng=random.Random(3),  # a store: hand-off rows need one
                                   persistence=Persistence(key="audited"))
                driver = Driver(engine)
                for src, row in steps:
                    driver.take(src, row)
                if engine.state.value != "terminated":
                    from statemachine.core.events import Close

                    driver.feed(Close(at=driver.tick()))
            del target
    finally:
        assert writer is not None
        writer.close()
        structlog.reset_defaults()


@pytest.fixture
def log(tmp_path: Path) -> Path:
    path = tmp_path / "audit.jsonl"
    write_log(path)
    return path


def audit(*paths: Path, json_out: bool = False) -> subprocess.CompletedProcess[str]:
    args = [sys.executable, "-m", "statemachine", "audit", *map(str, paths)]
    return subprocess.run(args + (["--json"] if json_out else []), capture_output=True,
                          text=True, timeout=60)


def test_records_match_the_published_schema(log: Path) -> None:
    """Every line validates against the JSON Schema shipped in the package."""
    schema_text = resources.files("statemachine").joinpath("schemas/audit-record.v2.json")
    schema = json.loads(schema_text.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert {r["kind"] for r in records} == {"event", "transition", "notice"}
    for record in records:
        validator.validate(record)


def test_clean_log_passes_with_a_summary(log: Path) -> None:
    """A log as written is clean: exit 0 and a summary per session."""
    done = audit(log)
    assert done.returncode == 0, done.stdout
    assert done.stdout.strip().endswith("session(s): clean")
    data = json.loads(audit(log, json_out=True).stdout)
    assert data["exit_code"] == 0 and len(data["sessions"]) == 2 * len(shortest_paths())
    visited = set().union(*(s["states_visited"] for s in data["sessions"]))
    assert "resuming" in visited and "compressed" in visited


def tamper(log: Path, how: str) -> Path:
    lines = log.read_text().splitlines(keepends=True)
    if how == "removed":
        del lines[10]
    elif how == "inserted":
        lines.insert(10, lines[5])
    elif how == "reordered":
        lines[10], lines[11] = lines[11], lines[10]
    elif how == "edited":
        record = json.loads(lines[10])
        record["journal"] = 99
        lines[10] = json.dumps(record, sort_keys=True, separators=(",", ":")) + "\n"
    out = log.with_name(f"{how}.jsonl")
    out.write_text("".join(lines))
    return out


@pytest.mark.parametrize("how", ["removed", "inserted", "reordered", "edited"])
def test_tampering_is_detected_with_file_and_line(log: Path, how: str) -> None:
    """A removed, inserted, reordered or edited line breaks the chain: exit 1, file:line."""
    bad = tamper(log, how)
    done = audit(bad)
    assert done.returncode == 1
    assert f"{bad}:11: hash" in done.stdout or f"{bad}:12: hash" in done.stdout, done.stdout


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (b"this is not json\n", "not a JSON record"),
        (b'{"v": 1, "half": tr', "truncated last line"),
        ('{"v": 1, "caf\u00e9": 1}\n'.encode("latin-1"), "not UTF-8"),
        (b'{"v": 9, "prev": "", "hash": "", "session": "s", "seq": 1, "mono": 0, '
         b'"kind": "event", "name": "x", "state": "idle"}\n', "schema version 9"),
        (b'{"some": "other log"}\n', "not an audit record"),
    ],
)
def test_damaged_lines_are_reported_never_a_traceback(log: Path, damage: bytes,
                                                      message: str) -> None:
    """Garbage, truncated, mis-encoded and foreign lines are violations with a reason."""
    bad = log.with_name("damaged.jsonl")
    bad.write_bytes(log.read_bytes() + damage)
    done = audit(bad)
    assert done.returncode == 1
    assert message in done.stdout and "Traceback" not in done.stderr


def test_unreadable_input_exits_2(tmp_path: Path, log: Path) -> None:
    """A file that cannot be read: exit 2, the other files still checked."""
    done = audit(tmp_path / "missing.jsonl", log)
    assert done.returncode == 2
    assert "UNREADABLE" in done.stdout and "No such file" in done.stdout


def _forge(path: Path, records: list[dict[str, Any]]) -> None:
    writer = JsonLinesWriter(path)
    for record in records:
        writer.write(record)
    writer.close()


def _rec(seq: int, kind: str, name: str, state: str, **kw: Any) -> dict[str, Any]:
    return {"session": "s1", "seq": seq, "mono": float(seq), "wall": 0.0, "kind": kind,
            "name": name, "state": state, "cause": {}, "gen": 1, "handle_fp": None,
            "attempt": 0, "journal": 0, **kw}


def test_illegal_transitions_and_gaps_are_violations(tmp_path: Path) -> None:
    """A correctly chained log can still be wrong: a transition not in the table, one from the
    wrong state, a gap in sequence numbers, a session stuck mid-resume."""
    path = tmp_path / "forged.jsonl"
    _forge(path, [
        _rec(1, "transition", "connect", "connecting", source="idle", dest="connecting"),
        _rec(2, "transition", "go_away", "draining", source="connecting", dest="draining"),
        _rec(4, "transition", "setup_complete", "streaming", source="streaming",
             dest="streaming"),
        _rec(5, "transition", "connection_lost", "resuming", source="streaming",
             dest="resuming"),
    ])
    out = audit(path).stdout
    assert "illegal transition: go_away from 'connecting' to 'draining'" in out
    assert "transition setup_complete from 'streaming', but the session was in 'draining'" in out
    assert "sequence jumps from 2 to 4" in out
    assert "session ends in 'resuming'" in out


def _old_names_start() -> list[dict[str, Any]]:
    """A session as the table before the trigger renames logged it: a refused resume, then a
    fresh restart (`resume_rejected`, `restart_fresh`). New dicts each time (the writer may
    add to them)."""
    return [
        _rec(1, "transition", "connect", "connecting", source="idle", dest="connecting"),
        _rec(2, "transition", "setup_complete", "streaming", source="connecting",
             dest="streaming"),
        _rec(3, "transition", "connection_lost", "resuming", source="streaming",
             dest="resuming"),
        _rec(4, "transition", "resume_rejected", "expired", source="resuming", dest="expired"),
        _rec(5, "transition", "restart_fresh", "connecting", source="expired",
             dest="connecting"),
        _rec(6, "transition", "setup_complete", "streaming", source="connecting",
             dest="streaming"),
    ]


def test_a_log_from_before_the_trigger_renames_still_reads_as_legal(tmp_path: Path) -> None:
    """Logs written by the earlier table used resume_rejected, handle_expired, restart_fresh
    and give_up; each is checked as the trigger whose rows replaced it (same states), and an
    old name used between other states is still illegal."""
    path = tmp_path / "old.jsonl"
    _forge(path, [
        *_old_names_start(),
        _rec(7, "transition", "connection_lost", "resuming", source="streaming",
             dest="resuming"),
        _rec(8, "transition", "handle_expired", "expired", source="resuming", dest="expired"),
        _rec(9, "transition", "give_up", "terminated", source="expired", dest="terminated"),
    ])
    done = audit(path)
    assert done.returncode == 0, done.stdout
    _forge(path, [
        _rec(1, "transition", "connect", "connecting", source="idle", dest="connecting"),
        _rec(2, "transition", "give_up", "terminated", source="connecting", dest="terminated"),
    ])
    assert "illegal transition" in audit(path).stdout


def test_processor_in_an_application_structlog_chain(tmp_path: Path) -> None:
    """An application that configures structlog itself adds the writer as one processor; its
    own processors and output stay, and the audit log is still valid."""
    path = tmp_path / "app.jsonl"
    writer = JsonLinesWriter(path)
    seen: list[dict[str, Any]] = []

    def app_sink(_logger: Any, _method: str, event: Any) -> Any:
        seen.append(dict(event))
        raise structlog.DropEvent

    structlog.configure(processors=[structlog.processors.add_log_level, writer, app_sink])
    try:
        engine = Lifecycle()
        from statemachine.core.events import Close, Connect

        engine.feed(Connect(at=0.0))
        engine.feed(Close(at=1.0))
        structlog.get_logger("app").info("unrelated application line")
    finally:
        writer.close()
        structlog.reset_defaults()
    assert audit(path).returncode == 0
    assert len(path.read_text().splitlines()) == sum(
        1 for e in seen if str(e["event"]).startswith("lifecycle."))
    assert seen[-1]["event"] == "unrelated application line"


def test_memory_stays_flat_as_the_log_grows(tmp_path: Path) -> None:
    """The checker streams: peak memory for a 10x larger log of one session stays about the same
    (a property of the algorithm, measured with tracemalloc, not a timing)."""

    def peak(n: int) -> int:
        path = tmp_path / f"big{n}.jsonl"
        writer = JsonLinesWriter(path)
        writer.write(_rec(1, "transition", "connect", "connecting", source="idle",
                          dest="connecting"))
        for seq in range(2, n):
            writer.write(_rec(seq, "event", "client_input", "connecting"))
        writer.close()
        tracemalloc.start()
        report = auditcheck.check([str(path)])
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert report.exit_code == 1  # it ends in connecting
        return top

    small, large = peak(2_000), peak(20_000)
    assert large < small * 2 + 200_000, (small, large)


def test_an_old_log_counts_its_fresh_restart(tmp_path: Path) -> None:
    """A log written before the renames names the fresh restart `restart_fresh`: it is legal
    now, and the summary must count it as the fresh restart it is."""
    path = tmp_path / "old.jsonl"
    _forge(path, [
        *_old_names_start(),
        _rec(7, "transition", "close", "terminated", source="streaming", dest="terminated"),
    ])
    done = audit(path, json_out=True)
    assert done.returncode == 0, done.stdout
    report = json.loads(done.stdout)
    sessions = report["sessions"] if isinstance(report, dict) else report
    summary = sessions[0] if isinstance(sessions, list) else next(iter(sessions.values()))
    assert summary["fresh_restarts"] == 1, summary


@given(kind=input_kinds, turn_complete=st.booleans(),
       tool_ids=st.lists(st.text(max_size=4), max_size=3).map(tuple))
def test_the_input_fast_path_records_what_every_event_records(
        kind: InputKind, turn_complete: bool, tool_ids: tuple[str, ...]) -> None:
    """The engine describes a ClientInput without the generic field walk (50 a second per
    session): the name and the cause, keys in order, are what `describe` gives."""
    event = ClientInput(at=1.0, kind=kind, payload={"audio": b"secret"},
                        turn_complete=turn_complete, tool_ids=tool_ids)
    name, cause = describe(event)
    assert name == "client_input"
    assert list(describe_input(event).items()) == list(cause.items())
