"""`python -m statemachine bench [--quick] [--json PATH]`: the performance suite.

Figures are printed side by side with the baselines measured in the same run; nothing here
asserts on time (the machines are shared and noisy). See each module for what it measures.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

from . import capacity, corecost, memory, rotation, scale, throughput

TARGETS = {
    "rotation.lost": "0",
    "rotation.cut_replies": "0",
    "rotation.outage_p99_over_floor": "<= 1.5",
    "overhead.ratio": ">= 0.95",
    "core.events_per_s_audit": ">= 30000",
    "scale.lost": "0",
    "capacity.ratio": ">= 0.9",
    "memory.kb_per_session": "<= 20",
}


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


async def _suite(quick: bool) -> dict[str, Any]:
    rotations = 20 if quick else 100  # p99 needs ~100 samples to be more than the maximum
    lifetime = 0.4 if quick else 0.6
    rot = await rotation.run(rotations, lifetime)
    ours = rot["ours"]
    overhead = await throughput.run(2000 if quick else 5000, 9 if quick else 15)
    core = corecost.run(150 if quick else 600)
    sizes = [100, 300] if quick else [100, 1000]
    scaled = await scale.run(sizes, 2.0 if quick else 6.0, 3.0 if quick else 5.0)
    mem = await memory.run(100 if quick else 300)
    cap = await capacity.run(
        [10, 40, 70, 100, 140, 200, 280] if quick else [10, 25, 50, 75, 100, 150, 200, 300, 400],
        ramp=2.0 if quick else 4.0, warm=1.0, window=3.0 if quick else 10.0, refine=not quick)
    return {
        "rotation": {
            "outage_p50_ms": ours["outage_p50_ms"],
            "outage_p99_ms": ours["outage_p99_ms"],
            "floor_ms": ours["floor_ms"],
            "floor_p99_ms": ours["floor_p99_ms"],
            "outage_p99_over_floor": ours["outage_p99_over_floor"],
            "outage_p50_over_floor": ours["outage_p50_over_floor"],
            "worst_input_delay_ms": ours["worst_input_delay_ms"],
            "rotations": ours["rotations"],
            "lost": ours["lost"],
            "duplicated": ours["duplicated"],
            "cut_replies": ours["cut_replies"],
            "scenarios": rot,
        },
        "overhead": overhead,
        "core": core,
        "scale": scaled,
        "memory": mem,
        "capacity": cap,
    }


def _table(results: dict[str, Any]) -> str:
    lines = []
    rot = results["rotation"]["scenarios"]
    cols = ["rotations", "floor_ms", "outage_p50_ms", "outage_p99_ms", "outage_p99_over_floor",
            "worst_input_delay_ms", "inputs", "lost", "duplicated", "cut_replies"]
    lines.append("Rotation outage (20 ms audio + a turn every 250 ms; floor: bare connect()+setup "
                 "timed under the same load)")
    lines.append(f"  {'':38}" + "".join(f"{c[:13]:>14}" for c in cols))
    for name, row in rot.items():
        lines.append(f"  {name:38}" + "".join(f"{row[c]!s:>14}" for c in cols))
    o = results["overhead"]
    lines.append(f"Steady-state receive: ours {o['ours_msgs_per_s']} msg/s vs raw SDK "
                 f"{o['raw_sdk_msgs_per_s']} msg/s, ratio {o['ratio']} (median of paired "
                 f"rounds; {o['ratio_min']}-{o['ratio_max']})")
    c = results["core"]
    lines.append(f"Core: {c['events_per_s_audit']} events/s with the JSONL audit log, "
                 f"{c['events_per_s_audit_off']} without")
    lines.append("Scale (emulator in another process):")
    for run in results["scale"]["runs"]:
        lines.append(f"  {run['sessions']:>5} sessions: {run['rotations']} rotations, outage "
                     f"p50 {run['outage_p50_ms']} ms p99 {run['outage_p99_ms']} ms, lost "
                     f"{run['lost']}, duplicated {run['duplicated']}, memory "
                     f"{run['kb_per_session']} KB/session above the SDK's "
                     f"{run['sdk_kb_per_connection']} KB/connection")
    lines.extend(memory.table(results["memory"]))
    lines.extend(capacity.table(results["capacity"]))
    lines.append("Targets: " + "; ".join(f"{k} {v}" for k, v in TARGETS.items()))
    return "\n".join(lines)


def main(quick: bool, json_path: str | None) -> int:
    started = time.time()
    results = asyncio.run(_suite(quick))
    results["machine"] = machine()
    results["quick"] = quick
    results["duration_s"] = round(time.time() - started, 1)
    results["targets"] = TARGETS
    print(_table(results))
    print(f"({results['duration_s']} s)")
    if json_path:
        Path(json_path).write_text(json.dumps(results, indent=2, default=str))
        print(f"wrote {json_path}")
    return 0
