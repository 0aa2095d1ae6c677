"""`python -m statemachine timeline LOG -o FILE.svg`: one session over time, from its audit log.

Each state the session visited has a lane; each stay in a state is a band on it. goAway,
rotations, drops, replays, dropped input, compression, fresh restarts and the close are marks:
a line through the lanes and a label.

**Spread by what happened.** A session is minutes of quiet streaming and milliseconds of
rotation, so wall time alone would give one bar most of the width and crowd every event into a
corner. Here each step of the log (a change of state, a mark) gets the same few pixels, and each
second adds some more: x = STEP * (steps so far) + K * (seconds so far). Busy moments spread
out, quiet ones shrink, the order and the bands are exact, and the axis says so: its ticks are
at real round times, so their uneven spacing shows where time was stretched or shrunk (the
caption gives both rates). A long session wraps onto more rows rather than shrinking.

**Labels.** Every label starts just right of its own line, on a lane above the lanes; lanes
are given right to left so that a line never runs up through another label: a label sits higher
than every mark that starts under it. Rows are added until no row needs more than `MAX_LANES`
lanes. The SVG scales to the width of the window (no scrolling); plain SVG, no dependency.
"""

from __future__ import annotations

import bisect
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

ROW_W = 880.0  # width of the band area of one row
LEFT = 100.0  # room for the state names
MIN_W = 8.0  # the narrowest band: a 1 ms stay is still seen (one step is at least this)
MAX_LANES = 6  # rows are added until no row needs more label lanes than this
FONT = 13.0
LANE_H = 17.0
SMALL = 11.0  # state names, axis, caption
STATE_H = 13.0
STATE_GAP = 3.0
GAP = 8.0  # room kept free after a label on its lane
STEP_SHARE = 0.6  # the share of the width spread evenly over the steps (the rest: over time)
TURNS_H = 8.0  # the row of ticks for input sent and replies completed


@attrs.frozen
class Mark:
    """A labelled instant: `band` is the index of the band it belongs to, `step` the index of
    the record it comes from (its place in the order of what happened)."""

    at: float
    band: int
    kind: str
    label: str
    color: str
    step: int = 0


@attrs.frozen
class Turn:
    """Conversation on the `turns` row: input sent (a run of inputs of one kind is one tick)
    or a reply completed."""

    at: float
    step: int
    kind: str  # "input" or "reply"
    what: str  # e.g. "25 audio inputs", "reply"


@attrs.frozen
class Timeline:
    session: str
    bands: list[tuple[str, float, float]]  # state, start, end (seconds from the first record)
    marks: list[Mark]
    #: the record index each band starts at (the first band: -1), for spreading by steps
    band_steps: list[int] = attrs.field(factory=list)
    turns: list[Turn] = attrs.field(factory=list)


def _fmt_s(seconds: float) -> str:
    return f"{seconds:g} s" if seconds >= 1 else f"{seconds * 1000:g} ms"


def _close_label(cause: dict[str, Any]) -> str:
    if cause.get("http_status"):
        return f"HTTP {cause['http_status']}"
    code = cause.get("code")
    text = f"close {code}" if code is not None else "connection failed"
    return text + (" at setup" if cause.get("during_setup") else "")


def _replay_label(cause: dict[str, Any]) -> str:
    """What a resume replayed; empty (no mark) when it replayed nothing."""
    parts = [f"{n} {what}" for n, what in ((cause.get("replayed"), "replayed"),
                                            (cause.get("as_history"), "as history"),
                                            (cause.get("repeated"), "repeated"),
                                            (cause.get("dropped"), "dropped")) if n]
    return ", ".join(parts)


def _dropped_label(cause: dict[str, Any]) -> str:
    seq = cause.get("seq")
    return f"input #{seq} dropped" if seq is not None else "input dropped"


#: (record kind, name) -> (mark kind, color, label from the record's cause; "" for no mark)
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
    ("notice", "resumed"): ("replay", "#0969da", _replay_label),
    ("notice", "input_dropped"): ("dropped", "#cf222e", _dropped_label),
}


def _turns(log: SessionLog) -> list[Turn]:
    turns: list[Turn] = []
    run: tuple[int, float, str, int] | None = None  # first step, at, input kind, count

    def flush() -> None:
        nonlocal run
        if run is not None:
            step, at, kind, count = run
            turns.append(Turn(at=at, step=step, kind="input",
                              what=f"{count} {kind} input{'s' if count > 1 else ''}"))
            run = None

    for step, record in enumerate(log.records):
        if record["kind"] != "event":
            continue
        if record["name"] == "client_input":
            cause = record.get("cause") if isinstance(record.get("cause"), dict) else {}
            kind = str((cause or {}).get("kind", "input"))
            if run is not None and run[2] == kind:
                run = (run[0], run[1], kind, run[3] + 1)
                continue
            flush()
            run = (step, log.at(record), kind, 1)
        elif record["name"] == "turn_complete":
            flush()
            turns.append(Turn(at=log.at(record), step=step, kind="reply", what="reply complete"))
    flush()
    return turns


def from_session(log: SessionLog) -> Timeline:
    marks: list[Mark] = []
    band = 0
    band_steps = [-1]
    for step, record in enumerate(log.records):
        if record["kind"] == "transition":
            band += 1
            band_steps.append(step)
        spec = MARKS.get((record["kind"], f"{record['name']}>{record.get('dest')}")) or \
            MARKS.get((record["kind"], record["name"]))
        if spec is None or record.get("stale"):
            continue
        kind, color, label = spec
        cause = record.get("cause") if isinstance(record.get("cause"), dict) else {}
        text = label(cause or {})
        if text:
            marks.append(Mark(at=log.at(record), band=band, kind=kind, label=text, color=color,
                              step=step))
    return Timeline(session=log.session, bands=log.bands(), marks=marks, band_steps=band_steps,
                    turns=_turns(log))


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
    #: every mark line drawn, as a zero-width box (x, top, 0, length)
    lines: list[Box] = attrs.field(factory=list)
    #: every other text drawn (state names, axis, title, caption)
    texts: list[tuple[str, Box]] = attrs.field(factory=list)


@attrs.frozen
class Scale:
    """x of each step: STEP px per step plus K px per second, over `rows` rows."""

    steps: list[tuple[int, float]]  # (record index, seconds), in order; the end is last
    step_px: float
    sec_px: float
    rows: int

    def x_of_step(self, index: int) -> float:
        return index * self.step_px + self.steps[index][1] * self.sec_px

    def x_of_time(self, t: float) -> float:
        """x of an instant: between the steps around it, in proportion to time."""
        times = [s[1] for s in self.steps]
        j = bisect.bisect_right(times, t) - 1
        if j >= 0 and times[j] == t:
            j = bisect.bisect_left(times, t)
        if j < 0:
            return 0.0
        if j >= len(times) - 1:
            return self.x_of_step(len(times) - 1)
        t0, t1 = times[j], times[j + 1]
        x0, x1 = self.x_of_step(j), self.x_of_step(j + 1)
        return x0 + (x1 - x0) * ((t - t0) / (t1 - t0) if t1 > t0 else 0.0)


def _scale(timeline: Timeline, rows: int) -> Scale:
    bands = timeline.bands
    order = sorted({*timeline.band_steps, *(m.step for m in timeline.marks),
                    *(t.step for t in timeline.turns)})
    when = {timeline.band_steps[i]: bands[i][1] for i in range(len(bands))}
    for mark in timeline.marks:
        when.setdefault(mark.step, mark.at)
    for turn in timeline.turns:
        when.setdefault(turn.step, turn.at)
    steps = [(i, when[i]) for i in order]
    steps.append((order[-1] + 1, max(bands[-1][2], steps[-1][1])))  # the end of the last band
    total = rows * ROW_W
    duration = steps[-1][1]
    n = len(steps) - 1
    # STEP_SHARE of the width for steps, the rest for time; a step is never narrower than MIN_W
    step_px = max(MIN_W, total * STEP_SHARE / max(n, 1)) if duration > 0 else total / max(n, 1)
    sec_px = max(0.0, total - n * step_px) / duration if duration > 0 else 0.0
    if n * step_px > total:
        step_px = total / n
    return Scale(steps=steps, step_px=step_px, sec_px=sec_px, rows=rows)


def _lanes(xs: list[tuple[float, float]]) -> list[int]:
    """Label lanes for marks at (x, label width), sorted by x: right to left, each label one
    lane above every mark that starts under it (x within its span), so no line runs up through
    a label and no two labels meet."""
    lanes = [0] * len(xs)
    for i in range(len(xs) - 1, -1, -1):
        x, w = xs[i]
        under = [lanes[j] for j in range(i + 1, len(xs)) if xs[j][0] <= x + 3 + w + GAP]
        lanes[i] = 1 + max(under) if under else 0
    return lanes


def _place(timeline: Timeline, scale: Scale, quiet_repeats: bool = False,
           ) -> list[list[tuple[Mark, float, int]]]:
    """Per row: (mark, x within the row, lane); lane -1: drawn without its label."""
    index = {step: i for i, (step, _) in enumerate(scale.steps)}
    rows: list[list[tuple[Mark, float, float]]] = [[] for _ in range(scale.rows)]
    for mark in timeline.marks:
        v = scale.x_of_step(index[mark.step])
        row = min(scale.rows - 1, int(v // ROW_W))
        rows[row].append((mark, v - row * ROW_W, svgkit.text_width(mark.label, FONT)))
    placed: list[list[tuple[Mark, float, int]]] = []
    for row_marks in rows:
        row_marks.sort(key=lambda m: (m[1], m[0].step))
        # when asked (a crowded row), a label repeating the previous one of its kind in the
        # row is left out: its mark is a line through the lanes only, its label a tooltip
        said: dict[str, str] = {}
        loud: list[tuple[Mark, float, float]] = []
        quiet: list[tuple[Mark, float, float]] = []
        for mark, x, w in row_marks:
            repeated = quiet_repeats and said.get(mark.kind) == mark.label
            (quiet if repeated else loud).append((mark, x, w))
            said[mark.kind] = mark.label
        lanes = _lanes([(x, w) for _, x, w in loud])
        placed.append([(m, x, lane) for (m, x, _), lane in zip(loud, lanes, strict=True)]
                      + [(m, x, -1) for m, x, _ in quiet])
    return placed


def layout(timeline: Timeline) -> Layout:
    bands = timeline.bands
    if not timeline.band_steps:  # built by hand: bands in order, marks at their band's start
        timeline = attrs.evolve(timeline, band_steps=[2 * i - 1 for i in range(len(bands))],
                                marks=[attrs.evolve(m, step=2 * m.band) for m in timeline.marks])
    steps = len({*timeline.band_steps, *(m.step for m in timeline.marks),
                 *(t.step for t in timeline.turns)})
    rows = max(1, math.ceil(steps * MIN_W / (ROW_W * STEP_SHARE)))  # a step is >= MIN_W
    while True:
        scale = _scale(timeline, rows)
        for quiet in (False, True):
            placed = _place(timeline, scale, quiet)
            deepest = max((lane for row in placed for _, _, lane in row), default=0)
            if deepest < MAX_LANES:
                break
        if deepest < MAX_LANES or rows >= 400:
            break
        rows += max(1, rows // 4)
    return _draw(timeline, scale, placed)


def _draw(timeline: Timeline, scale: Scale, placed: list[list[tuple[Mark, float, int]]],
          ) -> Layout:
    bands = timeline.bands
    rows = scale.rows
    states = [s.value for s in State if any(b[0] == s.value for b in bands)]
    turns_h = TURNS_H + STATE_GAP if timeline.turns else 0.0
    strip_h = turns_h + len(states) * (STATE_H + STATE_GAP)
    body: list[str] = []
    labels: list[tuple[str, Box]] = []
    texts: list[tuple[str, Box]] = []
    lines: list[Box] = []
    band_boxes: list[tuple[str, Box]] = []
    duration = scale.steps[-1][1]
    title = (f"session {timeline.session}: {len(bands)} stays in {len(states)} states, "
             f"{_fmt_s(round(duration, 3))}")
    body.append(svgkit.text(8, 18, title, 13, cls="state"))
    texts.append((title, svgkit.text_box(8, 18, title, 13)))
    band_x = [scale.x_of_step(i) for i in range(len(scale.steps))]
    index = {step: i for i, (step, _) in enumerate(scale.steps)}
    starts = [band_x[index[s]] for s in timeline.band_steps] + [band_x[-1]]
    overflow = 0.0
    top = 30.0
    for row in range(rows):
        n_lanes = 1 + max((lane for _, _, lane in placed[row]), default=-1)
        strip_top = top + n_lanes * LANE_H + (6 if n_lanes else 0)
        if timeline.turns:
            body.append(f'<rect x="{LEFT}" y="{strip_top:.1f}" width="{ROW_W}" '
                        f'height="{TURNS_H}" fill="#f6f8fa"/>')
            body.append(svgkit.text(LEFT - 6, strip_top + TURNS_H - 1, "turns", 9,
                                    anchor="end", cls="state"))
            texts.append(("turns", svgkit.text_box(LEFT - 6, strip_top + TURNS_H - 1, "turns",
                                                   9, "end")))
            for turn in timeline.turns:
                v = scale.x_of_step(index[turn.step])
                if min(rows - 1, int(v // ROW_W)) != row:
                    continue
                x = LEFT + v - row * ROW_W
                color = "#0969da" if turn.kind == "input" else "#1a7f37"
                body.append(f'<rect class="turn" data-kind="{turn.kind}" x="{x - 1:.2f}" '
                            f'y="{strip_top:.1f}" width="2.5" height="{TURNS_H}" '
                            f'fill="{color}"><title>{turn.what} at {turn.at:.3f} s</title>'
                            '</rect>')
        for i, state in enumerate(states):
            y = strip_top + turns_h + i * (STATE_H + STATE_GAP)
            body.append(f'<rect x="{LEFT}" y="{y:.1f}" width="{ROW_W}" height="{STATE_H}" '
                        'fill="#f6f8fa"/>')
            body.append(svgkit.text(LEFT - 6, y + STATE_H - 1, state, SMALL, anchor="end",
                                    cls="state"))
            texts.append((state, svgkit.text_box(LEFT - 6, y + STATE_H - 1, state, SMALL,
                                                 "end")))
        for number, (state, t0, t1) in enumerate(bands):
            a, b = starts[number], max(starts[number + 1], starts[number] + MIN_W)
            lo, hi = max(a, row * ROW_W), min(b, (row + 1) * ROW_W)
            if hi <= lo:
                continue
            y = strip_top + turns_h + states.index(state) * (STATE_H + STATE_GAP)
            box = Box(LEFT + lo - row * ROW_W, y, hi - lo, STATE_H)
            band_boxes.append((state, box))
            body.append(
                f'<rect class="band" data-state="{state}" x="{box.x:.2f}" y="{y:.1f}" '
                f'width="{box.w:.2f}" height="{STATE_H}" fill="{STATE_COLORS[state]}" '
                f'stroke="#57606a" stroke-width="0.5"><title>{state} '
                f'{_fmt_s(round(t1 - t0, 4))} (from {t0:.3f} s)</title></rect>')
        strip_bottom = strip_top + strip_h
        for mark, x, lane in placed[row]:
            if lane < 0:  # a repeated label, left out: the line through the lanes only
                lines.append(Box(LEFT + x, strip_top, 0.0, strip_h))
                body.append(f'<line class="mark" x1="{LEFT + x:.2f}" y1="{strip_top:.1f}" '
                            f'x2="{LEFT + x:.2f}" y2="{strip_bottom:.1f}" '
                            f'stroke="{mark.color}" stroke-width="1.2"><title>{mark.label} at '
                            f'{mark.at:.3f} s</title></line>')
                continue
            baseline = strip_top - 6 - lane * LANE_H - 3
            line_top = baseline - FONT * 0.8
            lines.append(Box(LEFT + x, line_top, 0.0, strip_bottom - line_top))
            body.append(f'<line class="mark" x1="{LEFT + x:.2f}" y1="{line_top:.1f}" '
                        f'x2="{LEFT + x:.2f}" y2="{strip_bottom:.1f}" stroke="{mark.color}" '
                        'stroke-width="1.2"/>')
            drawn, box = svgkit.label(LEFT + x + 3, baseline, mark.label, FONT, fill=mark.color)
            body.append(f'<g><title>{mark.label} at {mark.at:.3f} s</title>{drawn}</g>')
            labels.append((mark.label, box))
            overflow = max(overflow, box.x + box.w - (LEFT + ROW_W))
        axis_y = strip_bottom + 14
        last_end = -1e9
        for t in _ticks(duration, scale):
            v = scale.x_of_time(t)
            if min(rows - 1, int(v // ROW_W)) != row:
                continue
            x = LEFT + v - row * ROW_W
            label = _fmt_s(round(t, 6)) if t else "0"
            box = svgkit.text_box(x, axis_y, label, SMALL, "middle")
            if box.x < last_end + 10 or box.x + box.w > LEFT + ROW_W + 20:
                continue
            last_end = box.x + box.w
            body.append(f'<line x1="{x:.2f}" y1="{strip_bottom:.1f}" x2="{x:.2f}" '
                        f'y2="{strip_bottom + 3:.1f}" stroke="#57606a"/>')
            body.append(svgkit.text(x, axis_y, label, SMALL, anchor="middle", cls="axis"))
            texts.append((label, box))
        top = axis_y + 18
    notes = [f"Spread by what happened: each step of the log gets {scale.step_px:.1f} px and each "
             f"second {scale.sec_px:.3g} px,",
             "so quiet stretches shrink and busy moments widen; the ticks are at real times "
             "(hover a band or a label for exact ones)."]
    if any(lane < 0 for row in placed for _, _, lane in row):
        notes.append("Where a row is crowded, a label that repeats the one before it of its "
                     "kind is left out (hover its line).")
    if timeline.turns:
        notes.append("turns: blue, input sent (a run of audio chunks is one tick); green, a "
                     "reply complete.")
    for i, note in enumerate(notes):
        body.append(svgkit.text(8, top + 4 + i * 14, note, SMALL, cls="axis"))
        texts.append((note, svgkit.text_box(8, top + 4 + i * 14, note, SMALL)))
    height = top + 4 + 14 * len(notes)
    width = LEFT + ROW_W + max(overflow, 0.0) + 12
    width = max(width, max(b.x + b.w for _, b in texts) + 8)
    svg = svgkit.document(width, height, body, title)
    return Layout(svg=svg, width=width, height=height, labels=labels, bands=band_boxes,
                  rows=rows, lines=lines, texts=texts)


def _ticks(duration: float, scale: Scale) -> list[float]:
    """Round times, about 24 per row (those that would crowd each other are left out)."""
    want = max(1, scale.rows * 24)
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
