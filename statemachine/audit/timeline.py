"""`python -m statemachine timeline LOG -o FILE.svg`: one session over time, from its audit log.

Each state the session visited has a lane; each stay in a state is a band on it. A stay of a
millisecond gets a minimum width so it stays visible (the axis stretches there, and says so);
a long session wraps onto several rows instead of shrinking. goAway, rotations, drops,
compression, fresh restarts and the close are marks with a label; labels sit on lanes above the
bands so that no two of them overlap. Plain SVG, no dependency.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs

from ..core.table import State
from . import svgkit
from .reader import SessionLog, read_session
from .svgkit import Box

STATE_COLORS = {
    "idle": "#d0d7de", "connecting": "#fff1a8", "streaming": "#aceebb", "compressed": "#d8b9ff",
    "draining": "#ffc98a", "resuming": "#ffb8b0", "expired": "#ff8182", "terminated": "#8c959f",
}

ROW_W = 960.0  # width of the band area of one row
LEFT = 96.0  # room for the state names
MIN_W = 8.0  # the narrowest band: a 1 ms stay is still seen
LANES_TARGET = 3  # rows are added until labels need about this many lanes
FONT = 11.0
LANE_H = 15.0
STATE_H = 12.0
STATE_GAP = 3.0


@attrs.frozen
class Mark:
    """A labelled instant: `band` is the index of the band it belongs to."""

    at: float
    band: int
    kind: str
    label: str
    color: str


@attrs.frozen
class Timeline:
    session: str
    bands: list[tuple[str, float, float]]  # state, start, end (seconds from the first record)
    marks: list[Mark]


def _fmt_s(seconds: float) -> str:
    return f"{seconds:g} s" if seconds >= 1 else f"{seconds * 1000:g} ms"


def _close_label(cause: dict[str, Any]) -> str:
    if cause.get("http_status"):
        return f"HTTP {cause['http_status']}"
    code = cause.get("code")
    text = f"close {code}" if code is not None else "connection failed"
    return text + (" at setup" if cause.get("during_setup") else "")


#: (record kind, name) -> (mark kind, color, label from the record's cause)
MARKS: dict[tuple[str, str], tuple[str, str, Callable[[dict[str, Any]], str]]] = {
    ("event", "go_away"): (
        "goaway", "#9a6700", lambda c: f"goAway {_fmt_s(float(c.get('time_left', 0)))} left"),
    ("transition", "safe_point"): ("rotation", "#1a7f37", lambda c: "rotated"),
    ("transition", "rotation_deadline"): (
        "rotation", "#cf222e", lambda c: "rotated at deadline"),
    ("event", "connection_lost"): ("drop", "#cf222e", _close_label),
    ("transition", "compression_detected"): (
        "compression", "#8250df",
        lambda c: f"compressed {c.get('previous', '?')}→{c.get('prompt_tokens', '?')} tok"),
    ("transition", "retry>expired"): ("expiry", "#57606a", lambda c: "handle expired"),
    ("transition", "setup_refused>expired"): ("expiry", "#57606a", lambda c: "handle refused"),
    ("transition", "setup_refused>terminated"): ("end", "#cf222e", lambda c: "setup refused"),
    ("transition", "session_cap"): ("expiry", "#57606a", lambda c: "session cap"),
    ("transition", "restart_or_give_up>connecting"): (
        "fresh", "#57606a", lambda c: "fresh session"),
    ("transition", "close"): ("end", "#1f2328", lambda c: "closed"),
    ("transition", "fatal_error"): ("end", "#cf222e", lambda c: "fatal"),
    ("transition", "restart_or_give_up>terminated"): ("end", "#cf222e", lambda c: "gave up"),
    ("notice", "input_dropped"): ("dropped", "#cf222e", lambda c: "input dropped"),
}


def from_session(log: SessionLog) -> Timeline:
    marks: list[Mark] = []
    band = 0
    for record in log.records:
        if record["kind"] == "transition":
            band += 1
        spec = MARKS.get((record["kind"], f"{record['name']}>{record.get('dest')}")) or \
            MARKS.get((record["kind"], record["name"]))
        if spec is None or record.get("stale"):
            continue
        kind, color, label = spec
        cause = record.get("cause") if isinstance(record.get("cause"), dict) else {}
        marks.append(Mark(at=log.at(record), band=band, kind=kind, label=label(cause or {}),
                          color=color))
    return Timeline(session=log.session, bands=log.bands(), marks=marks)


def read(log: Path, session: str | None = None) -> Timeline:
    """The bands and marks of one session (the first in the log if none is named)."""
    return from_session(read_session(log, session))


@attrs.frozen
class Layout:
    """Where everything goes: the SVG, and the boxes the tests check."""

    svg: str
    width: float
    height: float
    labels: list[tuple[str, Box]]
    bands: list[tuple[str, Box]]
    rows: int


def _widths(bands: list[tuple[str, float, float]], scale: float) -> list[float]:
    return [max(MIN_W, (end - start) * scale) for _, start, end in bands]


def _scale(bands: list[tuple[str, float, float]], total_w: float) -> float:
    """Pixels per second so that the widened bands fill `total_w` exactly."""
    lo, hi = 0.0, 1.0
    while sum(_widths(bands, hi)) < total_w and hi < 1e12:
        hi *= 2
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if sum(_widths(bands, mid)) < total_w else (lo, mid)
    return lo


def layout(timeline: Timeline) -> Layout:
    bands = timeline.bands
    label_w = sum(svgkit.text_width(m.label, FONT) + 10 for m in timeline.marks)
    rows = max(1, math.ceil(len(bands) * MIN_W * 2 / ROW_W),
               math.ceil(label_w / (ROW_W * LANES_TARGET)))
    scale = _scale(bands, rows * ROW_W)
    widths = _widths(bands, scale)
    starts = [0.0]
    for w in widths:
        starts.append(starts[-1] + w)
    total = starts[-1]

    def virtual_x(band: int, at: float) -> float:
        _, t0, t1 = bands[band]
        frac = (at - t0) / (t1 - t0) if t1 > t0 else 0.0
        return starts[band] + min(1.0, max(0.0, frac)) * widths[band]

    def row_of(v: float) -> int:
        return min(rows - 1, int(v // ROW_W))

    # labels per row, on lanes
    placed: list[list[tuple[Mark, float, str, int]]] = [[] for _ in range(rows)]
    lanes = [svgkit.Lanes() for _ in range(rows)]
    for mark in sorted(timeline.marks, key=lambda m: virtual_x(m.band, m.at)):
        v = virtual_x(mark.band, mark.at)
        row = row_of(v)
        x = v - row * ROW_W
        w = svgkit.text_width(mark.label, FONT)
        anchor, start = ("start", x + 3) if x + 3 + w <= ROW_W else ("end", x - 3 - w)
        lane = lanes[row].place(start, start + w)
        placed[row].append((mark, x, anchor, lane))

    states = [s.value for s in State if any(b[0] == s.value for b in bands)]
    strip_h = len(states) * (STATE_H + STATE_GAP)
    body: list[str] = []
    labels: list[tuple[str, Box]] = []
    band_boxes: list[tuple[str, Box]] = []
    title = f"session {timeline.session}: {len(bands)} stays in {len(states)} states, " \
            f"{_fmt_s(round(bands[-1][2], 3))}"
    body.append(svgkit.text(8, 18, title, 13, cls="state"))
    top = 30.0
    ticks = [(t, _virtual_of_time(t, bands, starts, widths))
             for t in _ticks(bands[-1][2], rows)]
    for row in range(rows):
        n_lanes = len(lanes[row].rows)
        strip_top = top + n_lanes * LANE_H + 6
        for i, state in enumerate(states):
            y = strip_top + i * (STATE_H + STATE_GAP)
            body.append(f'<rect x="{LEFT}" y="{y:.1f}" width="{ROW_W}" height="{STATE_H}" '
                        'fill="#f6f8fa"/>')
            body.append(svgkit.text(LEFT - 6, y + STATE_H - 2, state, 10, anchor="end",
                                    cls="state"))
        for index, (state, t0, t1) in enumerate(bands):
            a, b = starts[index], starts[index] + widths[index]
            lo, hi = max(a, row * ROW_W), min(b, (row + 1) * ROW_W)
            if hi <= lo:
                continue
            y = strip_top + states.index(state) * (STATE_H + STATE_GAP)
            box = Box(LEFT + lo - row * ROW_W, y, hi - lo, STATE_H)
            band_boxes.append((state, box))
            body.append(
                f'<rect class="band" data-state="{state}" x="{box.x:.2f}" y="{y:.1f}" '
                f'width="{box.w:.2f}" height="{STATE_H}" fill="{STATE_COLORS[state]}" '
                f'stroke="#57606a" stroke-width="0.5"><title>{state} '
                f'{_fmt_s(round(t1 - t0, 4))} (from {t0:.3f} s)</title></rect>')
        strip_bottom = strip_top + strip_h
        for mark, x, _anchor, lane in placed[row]:
            baseline = strip_top - 6 - lane * LANE_H - 3
            body.append(f'<line x1="{LEFT + x:.2f}" y1="{baseline + 3:.1f}" x2="{LEFT + x:.2f}" '
                        f'y2="{strip_bottom:.1f}" stroke="{mark.color}" stroke-width="1" '
                        'stroke-opacity="0.8"/>')
        for mark, x, anchor, lane in placed[row]:
            baseline = strip_top - 6 - lane * LANE_H - 3
            tx = LEFT + x + (3 if anchor == "start" else -3)
            drawn, box = svgkit.label(tx, baseline, mark.label, FONT, anchor=anchor,
                                      fill=mark.color)
            body.append(drawn)
            labels.append((mark.label, box))
        axis_y = strip_bottom + 12
        last_end = -1e9
        for t, v in ticks:
            if row_of(v) != row or v > total:
                continue
            x = LEFT + v - row * ROW_W
            label = f"{round(t, 6):g} s"
            box = svgkit.text_box(x, axis_y, label, 9, "middle")
            if box.x < last_end + 8 or box.x + box.w > LEFT + ROW_W + 20:
                continue
            last_end = box.x + box.w
            body.append(f'<line x1="{x:.2f}" y1="{strip_bottom:.1f}" x2="{x:.2f}" '
                        f'y2="{strip_bottom + 3:.1f}" stroke="#57606a"/>')
            body.append(svgkit.text(x, axis_y, label, 9, anchor="middle", cls="axis"))
        top = axis_y + 16
    note = (f"time since the session's first record; stays shorter than "
            f"{_fmt_s(round(MIN_W / scale, 4))} are widened to {MIN_W:g} px, so the axis is "
            "not linear")
    body.append(svgkit.text(8, top + 4, note, 9, cls="axis"))
    height = top + 14
    width = LEFT + ROW_W + 24
    svg = svgkit.document(width, height, body, title)
    return Layout(svg=svg, width=width, height=height, labels=labels, bands=band_boxes,
                  rows=rows)


def _virtual_of_time(t: float, bands: list[tuple[str, float, float]], starts: list[float],
                     widths: list[float]) -> float:
    for index, (_, t0, t1) in enumerate(bands):
        if t0 <= t < t1 or index == len(bands) - 1:
            frac = (t - t0) / (t1 - t0) if t1 > t0 else 0.0
            return starts[index] + min(1.0, max(0.0, frac)) * widths[index]
    return starts[-1]


def _ticks(duration: float, rows: int) -> list[float]:
    """Round times, about eight per row."""
    want = max(1, rows * 8)
    raw = max(duration, 1e-3) / want
    step = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 5, 10):
        if step * factor >= raw:
            step *= factor
            break
    return [i * step for i in range(int(duration / step) + 1)]


def svg_file(timeline: Timeline) -> str:
    """The timeline as the text of a standalone SVG file."""
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + layout(timeline).svg


def render(timeline: Timeline, out: Path) -> None:
    """Write the timeline as a standalone SVG file."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(svg_file(timeline))
