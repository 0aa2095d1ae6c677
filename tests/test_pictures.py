"""Pictures of a session: the report page, the timeline and the path diagram stay readable.

Checked on the demo's log and on a 200-rotation session: no two labels overlap (the layout's own
boxes, and the boxes a real browser draws), every state of the path is drawn and wide enough to
see, and the page renders in headless Chromium with no console error and no request.
"""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

from statemachine.audit import pathpicture, reader, report, timeline
from statemachine.audit.jsonl import JsonLinesWriter
from statemachine.audit.svgkit import Box
from statemachine.core import Lifecycle, events
from statemachine.core.policy import Policy

from . import chromium
from .drivers import Driver

needs_chromium = pytest.mark.skipif(chromium.EXE is None,
                                    reason="chromium not installed (.ci/run installs it)")


def rotation_log(path: Path, rotations: int = 200) -> Path:
    """One session through the core: `rotations` goAway rotations at a safe point, a drop every
    25th connection, a compression, then close; written by the real JSON Lines writer."""
    writer = JsonLinesWriter(path)
    engine = Lifecycle(policy=Policy(), audit=writer.write, rng=random.Random(7))
    d = Driver(engine)
    d.feed(events.Connect(at=d.tick()))
    d.feed(events.SetupComplete(at=d.tick(0.2), generation=d.gen))
    for n in range(rotations):
        d.tick(9.0)
        d.handle()
        if n == rotations // 2:
            trigger = engine.policy.compression_trigger_tokens
            d.feed(events.Usage(at=d.tick(), generation=d.gen, prompt_tokens=trigger + 10))
            d.feed(events.Usage(at=d.tick(), generation=d.gen, prompt_tokens=trigger // 2))
        if n % 25 == 24:
            d.feed(events.ConnectionLost(at=d.tick(0.5), generation=d.gen, code=1006,
                                         reason="abnormal closure"))
            d.feed(events.SetupComplete(at=d.tick(0.04), generation=d.gen))
            d.handle()
        d.feed(events.GoAway(at=d.tick(0.5), generation=d.gen, time_left=30.0))
        d.handle()  # a safe point: rotate
        d.feed(events.SetupComplete(at=d.tick(0.03), generation=d.gen))
    d.feed(events.Close(at=d.tick(1.0)))
    writer.close()
    return path


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    where = tmp_path_factory.mktemp("pictures")
    demo = where / "demo.jsonl"
    subprocess.run([sys.executable, "-m", "statemachine", "demo", "--log", str(demo)],
                   capture_output=True, timeout=120, check=True)
    return {"demo": demo, "rotations": rotation_log(where / "rotations.jsonl")}


def _overlaps(boxes: list[tuple[str, Box]]) -> list[tuple[str, str]]:
    return [(a, b) for i, (a, p) in enumerate(boxes) for b, q in boxes[i + 1:]
            if p.intersects(q)]


def test_the_rotation_log_is_what_it_says(logs: dict[str, Path]) -> None:
    """The generated long session holds 200 rotations and is clean for the checker."""
    transitions = [r for r in reader.records(logs["rotations"]) if r["kind"] == "transition"]
    assert sum(r["name"] == "safe_point" for r in transitions) == 200
    from statemachine.audit import check

    assert check.check([str(logs["rotations"])]).exit_code == 0


@pytest.mark.parametrize("name", ["demo", "rotations"])
def test_timeline_labels_never_overlap_and_every_state_shows(logs: dict[str, Path],
                                                             name: str) -> None:
    """Mark labels do not meet; each state of the path has a band at least MIN_W wide; every
    label lies inside the picture."""
    session = reader.read_session(logs[name])
    drawn = timeline.layout(timeline.from_session(session))
    assert drawn.labels and not _overlaps(drawn.labels)
    for _, box in drawn.labels:
        assert box.x >= 0 and box.x + box.w <= drawn.width and 0 <= box.y < drawn.height
    for state in session.path().visited:
        widths = [box.w for s, box in drawn.bands if s == state]
        assert widths and max(widths) >= timeline.MIN_W - 1e-6, state
    marks = {m.kind for m in timeline.from_session(session).marks}
    assert {"goaway", "rotation", "drop", "compression", "end"} <= marks


@pytest.mark.parametrize("name", ["demo", "rotations"])
@pytest.mark.parametrize("whole", [False, True])
def test_path_diagram_labels_never_overlap(logs: dict[str, Path], name: str,
                                           whole: bool) -> None:
    """Edge labels meet neither each other nor a state; path-only draws exactly the states the
    session visited, and an edge label for each edge it took."""
    path = reader.read_session(logs[name]).path()
    picture = pathpicture.draw(path, whole=whole)
    assert not _overlaps(picture.labels)
    assert not [(t, s) for t, p in picture.labels for s, q in picture.nodes if p.intersects(q)]
    drawn = {s for s, _ in picture.nodes}
    assert drawn >= set(path.visited)
    if not whole:
        assert drawn == set(path.visited)
        assert len(picture.labels) == len(path.edges)


def test_diagram_path_only_command(logs: dict[str, Path], tmp_path: Path) -> None:
    """`diagram --from-log --path-only` writes Mermaid, DOT and SVG of the path alone, with
    no Graphviz needed for the SVG."""
    prefix = tmp_path / "path"
    done = subprocess.run([sys.executable, "-m", "statemachine", "diagram", "--from-log",
                           str(logs["rotations"]), "--path-only", "-o", str(prefix)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    mmd = prefix.with_suffix(".mmd").read_text()
    assert "safe_point [at_safe_point] (x200)" in mmd
    assert "session_cap" not in mmd and "expired" not in mmd
    assert "expired" not in prefix.with_suffix(".dot").read_text()
    svg = prefix.with_suffix(".svg").read_text()
    assert svg.startswith("<?xml") and "safe_point \u00d7200" in svg and "expired" not in svg


def test_report_says_what_the_checker_says(logs: dict[str, Path], tmp_path: Path) -> None:
    """The page carries the checker's verdict: clean for the demo, not clean once a line is
    edited; the outage table names each close code's meaning."""
    out = tmp_path / "demo.html"
    done = subprocess.run([sys.executable, "-m", "statemachine", "report", str(logs["demo"]),
                           "-o", str(out)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    page = out.read_text()
    assert '<p class="verdict ok">Clean' in page
    assert "no close frame: network loss or keepalive failure" in page
    assert "on a resume, the handle was refused" in page
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    lines = logs["demo"].read_text().splitlines()
    record = json.loads(lines[5])
    lines[5] = lines[5].replace(f'"seq":{record["seq"]}', f'"seq":{record["seq"] + 100}')
    tampered = tmp_path / "tampered.jsonl"
    tampered.write_text("\n".join(lines) + "\n")
    assert '<p class="verdict bad">Not clean' in report.render(tampered)


def test_report_of_an_empty_log_is_an_error(tmp_path: Path) -> None:
    """A log with no session is a message and exit 2."""
    empty = tmp_path / "empty.jsonl"
    empty.write_text("not json\n")
    done = subprocess.run([sys.executable, "-m", "statemachine", "report", str(empty), "-o",
                           str(tmp_path / "x.html")], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "no records" in done.stderr


@needs_chromium
@pytest.mark.parametrize("name", ["demo", "rotations"])
def test_report_renders_in_chromium(logs: dict[str, Path], tmp_path: Path, name: str) -> None:
    """Headless Chromium loads the page with no console error and no request beyond the file;
    the labels it draws in both pictures do not overlap either."""
    out = tmp_path / f"{name}.html"
    report.write(logs[name], out, whole_table=name == "rotations")
    loaded = asyncio.run(chromium.load(out, chromium.OVERLAPS))
    assert loaded.errors == []
    assert loaded.requests == []
    assert loaded.value["svgs"] == 2 and loaded.value["labels"] > 10
    assert loaded.value["overlaps"] == []
    assert loaded.png.startswith(b"\x89PNG")


@needs_chromium
def test_the_browser_check_sees_an_overlap(tmp_path: Path) -> None:
    """The in-browser check is not blind: two labels drawn at one spot are reported, and a
    script error reaches the error list."""
    page = tmp_path / "bad.html"
    page.write_text(
        '<!DOCTYPE html><html><body><svg width="200" height="50">'
        '<text class="label" x="10" y="20">goAway</text>'
        '<text class="label" x="14" y="22">rotated</text></svg>'
        "<script>undefinedFunction()</script></body></html>")
    loaded = asyncio.run(chromium.load(page, chromium.OVERLAPS))
    assert loaded.value["overlaps"] == [["goAway", "rotated"]]
    assert loaded.errors



# -- the timeline at a glance: geometry of the SVG itself, spread, replays and drops, widths


def svg_geometry(svg: str) -> tuple[list[tuple[str, Box, str]], list[Box]]:
    """Every text the SVG draws, as (content, box, anchor), and every mark line, read from the
    SVG text itself (not from the layout's bookkeeping)."""
    import xml.etree.ElementTree as ET

    from statemachine.audit import svgkit

    ns = "{http://www.w3.org/2000/svg}"
    root = ET.fromstring(svg[svg.index("<svg"):])
    texts = []
    for node in root.iter(f"{ns}text"):
        anchor = node.get("text-anchor", "start")
        box = svgkit.text_box(float(node.get("x", 0)), float(node.get("y", 0)), node.text or "",
                              float(node.get("font-size", 11)), anchor)
        texts.append((node.text or "", box, anchor))
    lines = []
    for node in root.iter(f"{ns}line"):
        if node.get("class") == "mark":
            x, y1, y2 = float(node.get("x1", 0)), float(node.get("y1", 0)), float(node.get("y2", 0))
            assert float(node.get("x2", 0)) == x, "mark lines are vertical"
            lines.append(Box(x, min(y1, y2), 0.0, abs(y2 - y1)))
    return texts, lines


def _crosses(line: Box, box: Box) -> bool:
    return box.x < line.x < box.x + box.w and line.y < box.y + box.h and box.y < line.y + line.h


def dropping_log(path: Path) -> Path:
    """A session through the core whose resume replays a turn and a video frame and drops the
    audio that went stale meanwhile, written by the real JSON Lines writer."""
    from statemachine.core.journal import InputKind
    from statemachine.core.policy import ReplayPolicy

    writer = JsonLinesWriter(path)
    engine = Lifecycle(policy=Policy(replay=ReplayPolicy(audio_staleness=1.0)),
                       audit=writer.write, rng=random.Random(7))
    d = Driver(engine)
    d.feed(events.Connect(at=d.tick()))
    d.feed(events.SetupComplete(at=d.tick(), generation=d.gen))
    d.handle()
    for kind, done in ((InputKind.AUDIO, False), (InputKind.VIDEO, False),
                       (InputKind.CONTENT, True)):
        d.feed(events.ClientInput(at=d.tick(), kind=kind, payload=kind.value, turn_complete=done))
    d.tick(2.0)
    d.feed(events.ConnectionLost(at=d.tick(), generation=d.gen, code=1006))
    d.feed(events.SetupComplete(at=d.tick(), generation=d.gen))
    d.feed(events.Close(at=d.tick(1.0)))
    writer.close()
    return path


@pytest.mark.parametrize("name", ["demo", "rotations", "dropping"])
def test_timeline_no_label_crosses_a_line_or_another_text(logs: dict[str, Path], name: str,
                                                           tmp_path: Path) -> None:
    """In the SVG as written: no text meets another text (labels, state names, ticks, title,
    caption), no mark line runs through any text, and every label starts just right of its
    own line (one anchoring for all, so a label cannot be read as another mark's)."""
    log = logs[name] if name in logs else dropping_log(tmp_path / "dropping.jsonl")
    svg = timeline.svg_file(timeline.read(log))
    texts, lines = svg_geometry(svg)
    assert len(texts) > 10 and lines
    meeting = [(a, b) for i, (a, p, _) in enumerate(texts) for b, q, _ in texts[i + 1:]
               if p.intersects(q)]
    assert meeting == []
    crossed = [(t, round(line.x)) for t, box, _ in texts for line in lines
               if _crosses(line, box)]
    assert crossed == []
    marks = {m.label for m in timeline.read(log).marks}
    labels = [(t, box) for t, box, anchor in texts if t in marks]
    assert labels
    for text, box in labels:
        assert any(abs(line.x + 3 - box.x) < 0.1 and line.y <= box.y + box.h
                   for line in lines), text


def test_timeline_spreads_the_demo_over_the_width(logs: dict[str, Path]) -> None:
    """The demo's events are spread out, not crowded into its last quarter behind one long
    streaming bar, each with its label (both drops too); the order of what happened is kept,
    and the axis ticks rise left to right."""
    data = timeline.read(logs["demo"])
    drawn = timeline.layout(data)
    assert drawn.rows == 1
    assert sorted(t for t, _ in drawn.labels) == sorted(m.label for m in data.marks)  # all
    xs = sorted(box.x for _, box in drawn.labels)
    assert xs[-1] - xs[0] >= 0.5 * timeline.ROW_W, xs
    longest = max(box.w for _, box in drawn.bands)
    assert longest <= 0.5 * timeline.ROW_W, longest
    texts, _ = svg_geometry(drawn.svg)
    ticks = [(box.x, text) for text, box, anchor in texts if anchor == "middle"]
    seconds = [float(t.split()[0]) / (1000 if t.endswith("ms") else 1) if t != "0" else 0.0
               for _, t in sorted(ticks)]
    assert len(seconds) >= 5 and seconds == sorted(seconds)
    assert "each step of the log gets" in drawn.svg  # the scale says what it is


def test_timeline_draws_replays_and_drops(logs: dict[str, Path], tmp_path: Path) -> None:
    """A resume that replayed input, and input dropped at a resume, are marks on the picture,
    not only rows of a table."""
    demo = timeline.read(logs["demo"])
    assert "1 replayed" in [m.label for m in demo.marks if m.kind == "replay"]
    dropping = timeline.read(dropping_log(tmp_path / "dropping.jsonl"))
    labels = {m.kind: m.label for m in dropping.marks}
    assert labels["replay"] == "2 replayed, 1 dropped"  # the audio went stale: dropped
    assert [m.label for m in dropping.marks if m.kind == "dropped"] == ["input #1 dropped"]
    svg = timeline.svg_file(dropping)
    assert "input #1 dropped" in svg and "2 replayed, 1 dropped" in svg


#: in a page: the width of the page's content, of the window, the widest SVG as drawn, and the
#: texts of each SVG that meet another text or a mark line, as the browser lays them out
GLANCE = """
(() => {
  const found = [];
  let widest = 0;
  for (const svg of document.querySelectorAll('svg')) {
    widest = Math.max(widest, svg.getBoundingClientRect().width);
    const texts = [...svg.querySelectorAll('text')].map(t => [t.textContent, t.getBBox()]);
    const lines = [...svg.querySelectorAll('line.mark')].map(l => l.getBBox());
    for (let i = 0; i < texts.length; i++) {
      const [a, p] = texts[i];
      for (let j = i + 1; j < texts.length; j++) {
        const [b, q] = texts[j];
        if (p.x < q.x + q.width && q.x < p.x + p.width && p.y < q.y + q.height
            && q.y < p.y + p.height) found.push([a, b]);
      }
      for (const l of lines)
        if (p.x < l.x && l.x < p.x + p.width && l.y < p.y + p.height && p.y < l.y + l.height)
          found.push([a, 'line at ' + Math.round(l.x)]);
    }
  }
  return {scroll: document.documentElement.scrollWidth, window: window.innerWidth, widest,
          found: found.slice(0, 20)};
})()
"""


@needs_chromium
@pytest.mark.parametrize("width", [800, 1400])
@pytest.mark.parametrize("page", ["timeline.svg", "report.html"])
def test_pictures_fit_the_window_in_chromium(logs: dict[str, Path], tmp_path: Path,
                                             width: int, page: str) -> None:
    """At an 800 px and a 1400 px window, headless Chromium shows the timeline (alone, and on
    the report page) without a horizontal scroll bar, the pictures within the window, and no
    text meeting another text or a mark line as it draws them."""
    out = tmp_path / page
    if page == "timeline.svg":
        out.write_text(timeline.svg_file(timeline.read(logs["demo"])))
    else:
        report.write(logs["demo"], out)
    loaded = asyncio.run(chromium.load(out, GLANCE, width=width))
    assert loaded.errors == []
    seen = loaded.value
    assert seen["scroll"] <= width and seen["widest"] <= width, seen
    assert seen["found"] == []
