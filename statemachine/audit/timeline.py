"""`python -m statemachine timeline LOG -o FILE.svg`: one session over time, from its audit log.

States are bands on a time axis; goAway, rotations, drops, compression and expiry are marked.
Needs matplotlib (`pip install "gemini-live-statemachine[plot]"`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import attrs

from ..core.table import State

#: Markers: (record kind, name) -> (label, color, line style)
MARKS: dict[tuple[str, str], tuple[str, str, str]] = {
    ("event", "go_away"): ("goAway", "#bf8700", "--"),
    ("transition", "safe_point"): ("rotation (safe point)", "#1a7f37", "-"),
    ("transition", "rotation_deadline"): ("rotation (deadline)", "#cf222e", "-"),
    ("event", "connection_lost"): ("drop / close", "#cf222e", ":"),
    ("transition", "compression_detected"): ("compression", "#8250df", "-."),
    ("transition", "restart_fresh"): ("expired -> fresh session", "#57606a", "-"),
}


@attrs.frozen
class Timeline:
    session: str
    bands: list[tuple[str, float, float]]  # state, start, end (seconds from the first record)
    marks: list[tuple[str, float]]  # mark key, time


def read(log: Path, session: str | None = None) -> Timeline:
    """The bands and marks of one session (the first in the log if none is named)."""
    chosen = session
    start: float | None = None
    state, since = State.IDLE.value, 0.0
    bands: list[tuple[str, float, float]] = []
    marks: list[tuple[str, float]] = []
    last = 0.0
    with log.open("rb") as f:
        for raw in f:
            try:
                record: dict[str, Any] = json.loads(raw)
            except ValueError:
                continue
            if not isinstance(record, dict) or "mono" not in record:
                continue
            chosen = chosen or record.get("session")
            if record.get("session") != chosen:
                continue
            if start is None:
                start = float(record["mono"])
            at = float(record["mono"]) - start
            last = at
            key = (record.get("kind", ""), record.get("name", ""))
            if key in MARKS and not record.get("stale"):
                marks.append((f"{key[0]}:{key[1]}", at))
            if record.get("kind") == "transition":
                bands.append((state, since, at))
                state, since = record["dest"], at
    if start is None or chosen is None:
        raise ValueError(f"no records of session {session or '(any)'} in {log}")
    bands.append((state, since, last))
    return Timeline(session=chosen, bands=bands, marks=marks)


def render(timeline: Timeline, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    matplotlib.rcParams["svg.hashsalt"] = "statemachine"  # deterministic ids in the SVG
    states = [s.value for s in State]
    colors = {"idle": "#d0d7de", "connecting": "#fff8c5", "streaming": "#aceebb",
              "compressed": "#d8b9ff", "draining": "#ffd8b5", "resuming": "#ffb8b0",
              "expired": "#ff8182", "terminated": "#8c959f"}
    total = max((end for _, _, end in timeline.bands), default=1.0) or 1.0
    fig, ax = plt.subplots(figsize=(11, 4.2))
    for state, begin, end in timeline.bands:
        width = max(end - begin, total / 400)  # instantaneous states stay visible
        ax.broken_barh([(begin, width)], (states.index(state) - 0.4, 0.8),
                       facecolors=colors[state], edgecolors="#57606a", linewidth=0.4)
    shown: set[str] = set()
    for key, at in timeline.marks:
        kind, name = key.split(":", 1)
        label, color, style = MARKS[(kind, name)]
        ax.axvline(at, color=color, linestyle=style, linewidth=1,
                   label=None if label in shown else label)
        shown.add(label)
    ax.set_yticks(range(len(states)), states)
    ax.set_ylim(-0.6, len(states) - 0.4)
    ax.invert_yaxis()
    ax.set_xlim(0, total * 1.01)
    ax.set_xlabel("seconds since the session's first record")
    ax.set_title(f"session {timeline.session}")
    ax.grid(axis="x", linewidth=0.3)
    if shown:
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=3, fontsize=8,
                  frameon=False)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, metadata={"Date": None} if out.suffix == ".svg" else None)
    plt.close(fig)
