"""Diagrams generated from the table: current, parseable, complete, and overlays from a log."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from statemachine.audit import diagram, timeline
from statemachine.core import table
from statemachine.core.table import State

ROOT = Path(__file__).resolve().parents[1]
needs_dot = pytest.mark.skipif(shutil.which("dot") is None,
                               reason="Graphviz 'dot' not installed (.ci/run installs it)")

# The subset of Mermaid stateDiagram-v2 the renderer emits, line by line.
_ID = r"[a-z_]+"
MERMAID_LINE = re.compile(
    rf"^(stateDiagram-v2"
    rf"|    \[\*\] --> {_ID}"
    rf"|    {_ID} --> \[\*\]"
    rf"|    {_ID} --> {_ID} : [a-z_]+( \[[a-z_ &|]+\])?( \(x\d+\))?"
    rf"|    classDef [a-z]+ [a-z-]+:[#0-9a-z]+(,[a-z-]+:[#0-9a-z]+)*"
    rf"|    class {_ID}(,{_ID})* [a-z]+)$"
)


def test_committed_diagrams_are_current() -> None:
    """`diagram --check` passes on the repository: diagrams and README match the table."""
    done = subprocess.run([sys.executable, "-m", "statemachine", "diagram", "--check"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_check_fails_on_a_stale_diagram(tmp_path: Path) -> None:
    """A diagram that differs from the table is reported stale."""
    (tmp_path / "diagrams").mkdir()
    for target, content in diagram.outputs(tmp_path / "diagrams", with_svg=False).items():
        target.write_text(content.replace("safe_point", "whenever"))
    assert any("lifecycle.mmd" in s for s in diagram.check(tmp_path))


def test_rendering_is_deterministic() -> None:
    """The same table renders to the same bytes."""
    assert diagram.mermaid() == diagram.mermaid() and diagram.dot() == diagram.dot()


def test_mermaid_is_valid_and_complete() -> None:
    """Every line is valid stateDiagram-v2 of the form we emit; initial and final markers, every
    state and every (source, trigger, dest) of the table appear."""
    text = diagram.mermaid()
    for line in text.splitlines():
        assert MERMAID_LINE.match(line), line
    assert "    [*] --> idle" in text and "    terminated --> [*]" in text
    for src, dest, row in table.edges():
        assert re.search(rf"^    {src.value} --> {dest.value} : {row.trigger.value}\b", text,
                         re.M), row
    for guard in table.Guard:
        assert guard.value in text


@needs_dot
def test_dot_parses_with_graphviz_and_is_complete() -> None:
    """Graphviz itself parses the DOT; every state and every edge of the table is in it."""
    text = diagram.dot()
    done = subprocess.run(["dot", "-Tcanon"], input=text, capture_output=True, text=True,
                          timeout=30)
    assert done.returncode == 0, done.stderr
    for state in State:
        assert re.search(rf"^\s+{state.value}\b", done.stdout, re.M)
    for src, dest, row in table.edges():
        assert row.trigger.value in dot_label(text, src.value, dest.value), (src, dest, row)
    assert '<table border="2"' in text.split("terminated [", 1)[1].split("\n", 1)[0]


def dot_label(text: str, src: str, dest: str) -> str:
    """Where the DOT shows a table edge: in `src`'s box for a transition to itself, on the
    `src -> dest` arrow, or on the dashed arrow from "any other state" that names `src`."""
    if src == dest:
        node = re.search(rf"^  {src} \[label=<(.*)>\];$", text, re.M)
        assert node, src
        return " ".join(re.findall(r"&#8635; ([^<]*)", node.group(1)))
    arrow = re.search(rf'^  {src} -> {dest} \[label="([^"]*)"', text, re.M)
    shared = re.search(r'^  __any -> terminated \[style=dashed, label="([^"]*)"', text, re.M)
    found = arrow.group(1) if arrow else ""
    if dest == "terminated" and shared:
        for trigger, where in re.findall(r"(\w+)(?:\\n\[[^]]*\])?\\n\(from ([^)]*)\)",
                                         shared.group(1)):
            every = where.startswith("every other state")
            but = where.split(" but ", 1)[1].split(", ") if " but " in where else []
            if (every and src not in but) or (not every and src in where.split(", ")):
                found += " " + trigger
    return found


@needs_dot
def test_the_whole_table_diagram_is_readable() -> None:
    """The Graphviz picture of the whole table is one a person can follow: at most 1,600 px
    wide (it was 3,150), no transition of a state to itself drawn as a loop whose line strikes
    its label (they are listed in the state's box), one arrow per pair of states, and it
    scales down to a narrow window."""
    text = diagram.dot()
    svg = diagram.svg(text)
    width_pt = float(re.search(r'width="([\d.]+)pt"', svg).group(1))
    assert width_pt * 4 / 3 <= 1600, width_pt
    arrows = re.findall(r"^  (\w+) -> (\w+) \[", text, re.M)
    assert all(a != b for a, b in arrows) and len(arrows) == len(set(arrows))
    assert 'style="max-width:100%;height:auto"' in svg


def _demo_log(tmp_path: Path) -> Path:
    log = tmp_path / "demo.jsonl"
    subprocess.run([sys.executable, "-m", "statemachine", "demo", "--log", str(log)],
                   capture_output=True, timeout=120, check=True)
    return log


@pytest.fixture(scope="module")
def demo_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _demo_log(tmp_path_factory.mktemp("demo"))


def test_diagram_from_log_highlights_the_path(demo_log: Path, tmp_path: Path) -> None:
    """--from-log: visited states and edges highlighted with counts, the final state marked."""
    prefix = tmp_path / "session"
    done = subprocess.run([sys.executable, "-m", "statemachine", "diagram", "--from-log",
                           str(demo_log), "-o", str(prefix)], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    mmd = prefix.with_suffix(".mmd").read_text()
    for line in mmd.splitlines():
        assert MERMAID_LINE.match(line), line
    assert "class terminated final" in mmd
    assert re.search(r"draining --> resuming : safe_point \[at_safe_point\] \(x1\)", mmd)
    assert re.search(r"idle --> connecting : connect \(x1\)", mmd)
    dot_text = prefix.with_suffix(".dot").read_text()
    assert 'terminated [label=<<table border="3" color="#cf222e" bgcolor="#ffd7d5"' in dot_text
    assert re.search(r'draining -> resuming \[label="safe_point\\n\[at_safe_point\] \(x1\)'
                     r'[^"]*", color="#1f6feb"', dot_text)
    if shutil.which("dot"):
        assert prefix.with_suffix(".svg").read_text().startswith("<?xml")


def test_timeline_svg(demo_log: Path, tmp_path: Path) -> None:
    """timeline: an SVG of the session's states over time, with its marks; deterministic."""
    data = timeline.read(demo_log)
    assert {band[0] for band in data.bands} >= {"connecting", "streaming", "resuming",
                                                "expired", "terminated"}
    assert {m.kind for m in data.marks} >= {"goaway", "rotation", "drop", "compression",
                                            "fresh", "end"}
    first, second = tmp_path / "a.svg", tmp_path / "b.svg"
    for out in (first, second):
        done = subprocess.run([sys.executable, "-m", "statemachine", "timeline",
                               str(demo_log), "-o", str(out)], capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 0, done.stderr
    svg = first.read_text()
    assert svg.startswith("<?xml") and "resuming" in svg and "goAway" in svg
    assert first.read_bytes() == second.read_bytes()


def test_unreadable_log_is_reported(tmp_path: Path) -> None:
    """A log with no session in it is an error message and exit 2, not a traceback."""
    empty = tmp_path / "empty.jsonl"
    empty.write_text("garbage\n")
    for command in (["diagram", "--from-log", str(empty)],
                    ["timeline", str(empty), "-o", str(tmp_path / "x.svg")]):
        done = subprocess.run([sys.executable, "-m", "statemachine", *command],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 2 and "Traceback" not in done.stderr
