"""The lifecycle diagram of one session, drawn without Graphviz: states in a row, edges as arcs.

States stand left to right in the table's order (the order a session meets them); an edge to a
later state is an arc above the row, an edge back is an arc below, a retry in place is a loop.
Each arc's label sits on its arc, and arcs go on levels so that no two labels (or arcs) share a
level where they overlap: the picture stays readable for the few edges a session takes, and
stays correct (if tall) for the whole table. Plain SVG, the same with or without Graphviz.
"""

from __future__ import annotations

from collections import Counter
from html import escape

import attrs

from ..core import table
from ..core.table import FINAL, INITIAL, State
from . import svgkit
from .reader import SessionPath
from .svgkit import Box

FONT = 11.0
NODE_FONT = 12.0
NODE_H = 28.0
NODE_GAP = 30.0
LEVEL_H = 17.0
MARGIN = 14.0
VISITED = ("#ddf4ff", "#0969da")
FINAL_COLORS = ("#ffebe9", "#cf222e")
TAKEN = "#0969da"
TIMES = "\u00d7"  # the multiplication sign, as in "taken 3 times"
UNTAKEN = "#afb8c1"


@attrs.frozen
class Picture:
    svg: str
    width: float
    height: float
    labels: list[tuple[str, Box]]
    nodes: list[tuple[str, Box]]


@attrs.frozen
class _Arc:
    source: str
    dest: str
    trigger: str
    count: int

    @property
    def label(self) -> str:
        return f"{self.trigger} {TIMES}{self.count}" if self.count > 1 else self.trigger


def _arcs(path: SessionPath | None, whole: bool) -> list[_Arc]:
    taken: Counter[tuple[str, str, str]] = path.edges if path is not None else Counter()
    keys = list(taken) if not whole else list(dict.fromkeys(
        (s.value, d.value, r.trigger.value) for s, d, r in table.edges()))
    return [_Arc(s, d, t, taken.get((s, d, t), 0)) for s, d, t in keys]


def draw(path: SessionPath | None, *, whole: bool = False) -> Picture:
    """The session's path (only what it took), or with `whole` the table with the path on it."""
    arcs = _arcs(path, whole or path is None)
    visited = set(path.visited) if path is not None else set()
    states = [s.value for s in State if whole or path is None or s.value in visited]
    # node boxes along a row (y fixed later)
    xs: dict[str, tuple[float, float]] = {}
    x = MARGIN + 40  # room for the start marker
    for state in states:
        w = svgkit.text_width(state, NODE_FONT) + 22
        xs[state] = (x, w)
        x += w + NODE_GAP
    width = x - NODE_GAP + MARGIN
    order = {s: i for i, s in enumerate(states)}

    def center(state: str) -> float:
        left, w = xs[state]
        return left + w / 2

    # ports: the arcs that meet a node on one side spread over its width
    ends: dict[tuple[str, str], list[tuple[float, int]]] = {}
    sides: list[str] = []
    for i, arc in enumerate(arcs):
        side = "up" if order[arc.dest] >= order[arc.source] else "down"
        sides.append(side)
        for state, other in ((arc.source, arc.dest), (arc.dest, arc.source)):
            if state == other and state == arc.dest and arc.source == arc.dest:
                continue
            ends.setdefault((state, side), []).append((center(other), i))
    port: dict[tuple[int, str], float] = {}
    for (state, _side), items in ends.items():
        left, w = xs[state]
        items.sort()
        for k, (_, i) in enumerate(items):
            port[(i, state)] = left + w * (k + 1) / (len(items) + 1)

    # levels: shorter arcs nearer the row; a level holds arcs whose spans (and labels) don't meet
    lanes = {"up": svgkit.Lanes(gap=8), "down": svgkit.Lanes(gap=8)}
    placed: list[tuple[int, _Arc, str, float, float, int]] = []
    by_span = sorted(range(len(arcs)), key=lambda i: (
        abs(order[arcs[i].dest] - order[arcs[i].source]), order[arcs[i].source]))
    for i in by_span:
        arc, side = arcs[i], sides[i]
        if arc.source == arc.dest:
            left, w = xs[arc.source]
            a, b = left + w * 0.3, left + w * 0.7
        else:
            a, b = sorted((port[(i, arc.source)], port[(i, arc.dest)]))
        label_w = svgkit.text_width(arc.label, FONT) + 6
        mid = (a + b) / 2
        lo, hi = min(a, mid - label_w / 2), max(b, mid + label_w / 2)
        level = lanes[side].place(lo, hi)
        placed.append((i, arc, side, a, b, level))
    up_levels, down_levels = len(lanes["up"].rows), len(lanes["down"].rows)
    node_top = 40 + up_levels * LEVEL_H + 12
    node_bottom = node_top + NODE_H
    height = node_bottom + 12 + down_levels * LEVEL_H + 28
    width = max(width, max((hi for r in lanes.values() for row in r.rows for _, hi in row),
                           default=0) + MARGIN)

    body: list[str] = [
        '<defs><marker id="arrow-taken" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
        f'markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" '
        f'fill="{TAKEN}"/></marker><marker id="arrow-untaken" viewBox="0 0 10 10" refX="9" '
        'refY="5" markerWidth="6" markerHeight="6" orient="auto-start-reverse">'
        f'<path d="M0,0 L10,5 L0,10 z" fill="{UNTAKEN}"/></marker></defs>']
    title = ("lifecycle table" if path is None else
             f"session {path.session}: " + ("the whole table, its path in blue" if whole
                                            else f"its path through {len(states)} states"))
    body.append(svgkit.text(MARGIN, 20, title, 13, cls="state"))
    labels: list[tuple[str, Box]] = []
    lines: list[str] = []
    texts: list[str] = []
    for i, arc, side, a, b, level in placed:
        taken = arc.count > 0
        color = TAKEN if taken else UNTAKEN
        stroke = 2.0 if taken else 1.0
        if side == "up":
            y0, y = node_top, node_top - 12 - level * LEVEL_H
        else:
            y0, y = node_bottom, node_bottom + 12 + level * LEVEL_H
        if arc.source == arc.dest:
            d = f"M{a:.1f},{y0} L{a:.1f},{y:.1f} L{b:.1f},{y:.1f} L{b:.1f},{y0}"
        else:
            src_x, dst_x = port[(i, arc.source)], port[(i, arc.dest)]
            d = f"M{src_x:.1f},{y0} L{src_x:.1f},{y:.1f} L{dst_x:.1f},{y:.1f} L{dst_x:.1f},{y0}"
        marker = "arrow-taken" if taken else "arrow-untaken"
        lines.append(f'<path d="{d}" fill="none" stroke="{color}" stroke-width="{stroke}" '
                     f'marker-end="url(#{marker})"><title>{escape(arc.source)} → '
                     f'{escape(arc.dest)}: {escape(arc.label)}</title></path>')
        mid = (a + b) / 2
        baseline = y + FONT * 0.35
        drawn, box = svgkit.label(mid, baseline, arc.label, FONT, anchor="middle",
                                  fill="#0550ae" if taken else "#6e7781")
        texts.append(drawn)
        labels.append((arc.label, box))
    body += lines
    nodes: list[tuple[str, Box]] = []
    for state in states:
        left, w = xs[state]
        box = Box(left, node_top, w, NODE_H)
        nodes.append((state, box))
        if path is not None and state == path.final:
            fill, edge = FINAL_COLORS
        elif state in visited:
            fill, edge = VISITED
        else:
            fill, edge = "#ffffff", UNTAKEN
        width_ = 2 if state in visited else 1
        body.append(f'<rect class="node" data-state="{state}" x="{left:.1f}" y="{node_top}" '
                    f'width="{w:.1f}" height="{NODE_H}" rx="6" fill="{fill}" stroke="{edge}" '
                    f'stroke-width="{width_}"/>')
        if State(state) in FINAL:
            body.append(f'<rect x="{left + 3:.1f}" y="{node_top + 3}" width="{w - 6:.1f}" '
                        f'height="{NODE_H - 6}" rx="4" fill="none" stroke="{edge}"/>')
        body.append(svgkit.text(left + w / 2, node_top + NODE_H / 2 + 4, state, NODE_FONT,
                                anchor="middle", cls="state"))
    if INITIAL.value in xs:
        left, _ = xs[INITIAL.value]
        cy = node_top + NODE_H / 2
        body.append(f'<circle cx="{MARGIN + 8}" cy="{cy}" r="5" fill="#1f2328"/>')
        body.append(f'<path d="M{MARGIN + 13},{cy} L{left - 2:.1f},{cy}" stroke="#1f2328" '
                    'stroke-width="1.5" marker-end="url(#arrow-untaken)"/>')
    body += texts
    note = ("arcs above go forward in the table's order, arcs below go back; "
            f"{TIMES}n: taken n times"
            if path is not None else "arcs above go forward, arcs below go back")
    body.append(svgkit.text(MARGIN, height - 8, note, 9, cls="axis"))
    svg = svgkit.document(width, height, body, title)
    return Picture(svg=svg, width=width, height=height, labels=labels, nodes=nodes)
