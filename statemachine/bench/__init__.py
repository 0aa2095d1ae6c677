"""`python -m statemachine bench [--quick] [--json PATH] [--check]`: the performance suite.

Figures are printed side by side with the baselines measured in the same run, then each target
(`targets.py`) as met or missed; `--check` exits 1 when one is missed. Nothing here asserts on
time in the tests (the machines are shared and noisy). See each module for what it measures.
`--from-json PATH` prints (and checks) a run saved with `--json`, without running anything.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

from . import capacity, corecost, handoff, memory, rotation, scale, throughput
from .targets import TARGETS, render, verdicts

__all__ = ["TARGETS", "assemble", "main", "report", "table"]

def machine() -> dict[str, Any]:
    from importlib.metadata import version

    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "google_genai": version("google-genai"),
        "websockets": version("websockets"),
        "load_avg": os.getloadavg(),
    }


def _step(number: int, what: str) -> None:
    """Progress on stderr, so a long run shows where it is (and stdout stays the report)."""
    print(f"bench [{number}/7] {what}...", file=sys.stderr, flush=True)


async def _suite(quick: bool) -> dict[str, Any]:
    rotations = 20 if quick else 100  # p99 needs ~100 samples to be more than the maximum
    lifetime = 0.4 if quick else 0.6
    _step(1, f"rotation: 4 scenarios of {rotations} goAway rotations")
    rot = await rotation.run(rotations, lifetime)
    _step(2, "receive overhead against the raw SDK")
    overhead = await throughput.run(2000 if quick else 5000, 9 if quick else 15)
    _step(3, "core events per second")
    core = corecost.run(150 if quick else 600)
    sizes = [100, 300] if quick else [100, 300, 1000]
    _step(4, f"scale: {', '.join(map(str, sizes))} concurrent rotating voice sessions at real "
             "rates, ours and the raw SDK")
    scaled = await scale.run(sizes, 12.0 if quick else 15.0, 10.0 if quick else 15.0)
    _step(5, "memory per idle session and per busy session (300, 20 ms audio) against the raw "
             "SDK")
    mem = await memory.run(100 if quick else 300, busy=memory.BUSY_SESSIONS)
    _step(6, "capacity: voice sessions per core at real rates, ours and the raw SDK")
    cap = await capacity.run(
        [10, 40, 70, 100, 140, 200, 280] if quick else [10, 25, 50, 75, 100, 150, 200, 300, 400],
        ramp=2.0 if quick else 4.0, warm=1.0, window=3.0 if quick else 10.0)
    _step(7, "hand-off between workers through SQLite, and the write-through's cost per turn")
    fleet = await handoff.run(20 if quick else 100, 100 if quick else 400)
    return assemble(rot, overhead, core, scaled, mem, cap, fleet)


def assemble(rot: dict[str, Any], overhead: dict[str, Any], core: dict[str, Any],
             scaled: dict[str, Any], mem: dict[str, Any] | None = None,
             cap: dict[str, Any] | None = None,
             fleet: dict[str, Any] | None = None) -> dict[str, Any]:
    """The results as `--json` writes them, from each benchmark's own figures."""
    ours = rot["ours"]
    return {
        "rotation": {
            "outage_p50_ms": ours["outage_p50_ms"],
            "outage_p99_ms": ours["outage_p99_ms"],
            "floor_ms": ours["floor_ms"],
            "floor_p99_ms": ours["floor_p99_ms"],
            "outage_p99_over_floor": ours["outage_p99_over_floor"],
            "outage_p99_over_floor_p99": ours.get("outage_p99_over_floor_p99"),
            "outage_p50_over_floor": ours["outage_p50_over_floor"],
            "floor_p99_over_floor": ours.get("floor_p99_over_floor"),
            "worst_input_delay_ms": ours["worst_input_delay_ms"],
            "rotations": ours["rotations"],
            "lost": ours["lost"],
            "duplicated": ours["duplicated"],
            "duplicated_per_rotation": ours.get("duplicated_per_rotation"),
            "cut_replies": ours["cut_replies"],
            "scenarios": rot,
        },
        "overhead": overhead,
        "core": core,
        "scale": scaled,
        "memory": mem,
        "capacity": cap,
        "handoff": fleet,
    }


#: rotation scenarios as column headings, and what each stands for (printed under the table)
_SCENARIOS = {
    "ours": ("ours", "statemachine.connect()"),
    "ours, silent after goAway": ("ours, silent", "the server goes silent after goAway"),
    "baseline (a): reconnect after close": (
        "peers (a)", "raw SDK, reconnect with the handle after the server closes"),
    "baseline (b): reconnect on goAway": (
        "peers (b)", "raw SDK, reconnect at once on goAway"),
}
_ROTATION_ROWS = (
    ("rotations", "rotations"),
    ("floor: bare connect()+setup p50 (ms)", "floor_ms"),
    ("outage p50 (ms)", "outage_p50_ms"),
    ("outage p99 (ms)", "outage_p99_ms"),
    ("outage p50 / floor p50 (x)", "outage_p50_over_floor"),
    ("outage p99 / floor p99 (x)", "outage_p99_over_floor_p99"),
    ("outage p99 / floor p50 (x)", "outage_p99_over_floor"),
    ("floor p99 / floor p50 (x)", "floor_p99_over_floor"),
    ("worst input delay (ms)", "worst_input_delay_ms"),
    ("inputs sent", "inputs"),
    ("inputs lost", "lost"),
    ("inputs duplicated", "duplicated"),
    ("duplicated per rotation", "duplicated_per_rotation"),
    ("replies cut", "cut_replies"),
)
_SCALE_COLUMNS = (
    ("sessions", "sessions"),
    ("", "side"),
    ("chunks/s", "chunks_per_s"),
    ("rotations", "rotations"),
    ("outage p50 (ms)", "outage_p50_ms"),
    ("outage p99 (ms)", "outage_p99_ms"),
    ("inputs lost", "lost"),
    ("unread at close", "lost_unread_at_close"),
    ("skipped", "skipped"),
    ("dropped", "dropped"),
    ("duplicated", "duplicated"),
    ("dup/rotation", "duplicated_per_rotation"),
    ("RSS KB/session", "rss_kb"),
    ("KB/session above SDK", "kb_per_session"),
    ("SDK KB/connection", "sdk_kb_per_connection"),
)


def _scale_rows(runs: list[dict[str, Any]]) -> list[list[Any]]:
    """Two rows per size: ours, then the raw SDK with the same traffic."""
    rows = []
    for run in runs:
        ours = {**run, "side": "ours", "rss_kb": run.get("ours_kb_per_session")}
        raw = {**run.get("raw", {}), "sessions": run["sessions"], "side": "raw SDK",
               "rss_kb": run.get("sdk_kb_per_connection"), "kb_per_session": None}
        rows.append([ours.get(k) for _, k in _SCALE_COLUMNS])
        rows.append([raw.get(k) for _, k in _SCALE_COLUMNS])
    return rows


def grid(headers: list[str], rows: list[list[Any]], indent: str = "  ") -> list[str]:
    """A right-aligned table whose columns are as wide as their longest cell: no heading is
    cut off. The first column is left-aligned."""
    cells = [headers, *[["-" if c is None else str(c) for c in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = []
    for row in cells:
        first = row[0].ljust(widths[0])
        rest = "".join(f"  {c.rjust(w)}" for c, w in zip(row[1:], widths[1:], strict=True))
        lines.append((indent + first + rest).rstrip())
    return lines


def table(results: dict[str, Any]) -> str:
    """The report: every figure with its unit, the baselines beside ours, then the verdict."""
    lines = ["Rotation: 20 ms audio + a text turn every 250 ms through goAway rotations"]
    scenarios = results["rotation"]["scenarios"]
    names = list(scenarios)
    heads = [_SCENARIOS.get(n, (n, n))[0] for n in names]
    lines += grid(["", *heads], [[label, *(scenarios[n].get(key) for n in names)]
                                 for label, key in _ROTATION_ROWS])
    for name in names:
        head, meaning = _SCENARIOS.get(name, (name, name))
        lines.append(f"  {head}: {meaning}")
    lines.append("  floor: a bare connect() + setup, timed on this machine during the same run")
    lines.append("  outage: the last input on the old connection to the first on the new one")
    o = results["overhead"]
    lines.append(f"Receive overhead ({o.get('rounds')} paired rounds of "
                 f"{o.get('messages_per_round')} messages, emulator in its own process):")
    lines += grid(["", "msg/s (median)"], [
        ["raw SDK AsyncSession.receive()", o.get("raw_sdk_msgs_per_s")],
        ["ours LiveSession.receive()", o.get("ours_msgs_per_s")],
    ])
    lines.append(f"  ratio ours/raw: {o.get('ratio')}, the median of the per-round ratios (range "
                 f"{o.get('ratio_min')}-{o.get('ratio_max')});")
    lines.append("  each round paired with the raw one beside it: steadier on a shared machine "
                 "than dividing the medians")
    c = results["core"]
    lines.append("Core (sans-I/O engine alone):")
    lines += grid(["", "events/s"], [["JSONL audit log on", c.get("events_per_s_audit")],
                                     ["audit off", c.get("events_per_s_audit_off")],
                                     ["OpenTelemetry on (audit off)",
                                      c.get("events_per_s_telemetry")]])
    if c.get("telemetry_ratio") is not None:
        lines.append(f"  OpenTelemetry on/off: {c['telemetry_ratio']} (metrics and traces to the "
                     "SDK; nothing per client input, a few records per turn)")
    sc = results["scale"]
    procs = sc["runs"][-1].get("processes", 1) if sc.get("runs") else 1
    lines.append(f"Scale (concurrent rotating voice sessions at real rates: 20 ms audio, a turn "
                 f"every {capacity.TURN_EVERY:g} s; over {procs} client processes, the emulator "
                 "in another):")
    lines += grid([h for h, _ in _SCALE_COLUMNS], _scale_rows(sc["runs"]))
    lines.append("  RSS KB/session: the client processes' RSS growth over N; chunks/s: the audio "
                 "rate reached per session (50 = real rate; lower: the machine saturated)")
    lines.append(f"  duplicated per rotation over every run: {sc.get('duplicated_per_rotation')}; "
                 "skipped: raw audio sent while it had no connection (lost to the application)")
    lines.append("  inputs lost: never taken in and not reported dropped (a real loss); unread "
                 "at close: never taken in, but still held uncovered by ours' session when the "
                 "run closed it (a saturated server may not have read it yet)")
    for run in sc["runs"]:
        raw_rate = run.get("raw", {}).get("chunks_per_s", scale.REAL_RATE)
        if scale.saturated(run["chunks_per_s"], raw_rate):
            lines.append(
                f"  SATURATED at {run['sessions']} sessions: this machine carried "
                f"{run['chunks_per_s']} chunks/s per session for ours and {raw_rate} for the raw "
                f"SDK, not the real rate of {scale.REAL_RATE:g}: the figures at this N are not "
                "those of a real-rate fleet")
    if results.get("memory"):
        lines.extend(memory.table(results["memory"]))
    if "capacity" in results:
        lines.extend(capacity.table(results["capacity"]))
    if results.get("handoff"):
        lines.extend(handoff.table(results["handoff"], results["rotation"]))
    lines += render(verdicts(results))
    return "\n".join(lines)


def report(results: dict[str, Any], check: bool) -> int:
    """Print the report; with `check`, exit status 1 when a target was missed."""
    found = verdicts(results)
    results["targets"] = [v.as_dict() for v in found]
    print(table(results))
    return 1 if check and not all(v.met for v in found) else 0


def main(quick: bool, json_path: str | None, check: bool = False,
         from_json: str | None = None) -> int:
    if from_json is not None:
        return report(json.loads(Path(from_json).read_text()), check)
    started = time.time()
    results = asyncio.run(_suite(quick))
    results["machine"] = machine()
    results["quick"] = quick
    results["duration_s"] = round(time.time() - started, 1)
    status = report(results, check)
    print(f"({results['duration_s']} s)")
    if json_path:
        Path(json_path).write_text(json.dumps(results, indent=2, default=str))
        print(f"wrote {json_path}")
    return status
