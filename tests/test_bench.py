"""The benchmark machinery at toy sizes: it runs, it reports every figure, our side loses
nothing, and the report gives a verdict on each target. Times are printed by
`python -m statemachine bench`, never asserted here."""

from __future__ import annotations

import asyncio
import copy
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from statemachine.bench import (
    assemble,
    capacity,
    corecost,
    handoff,
    memory,
    report,
    rotation,
    scale,
    table,
    throughput,
)
from statemachine.bench.targets import TARGETS, figure

#: the module's shared toy run of every benchmark takes about 80 s on a quiet 2-core machine and
#: went past the suite's 120 s bound under load: a bound still, with room for a busy machine
pytestmark = pytest.mark.timeout(360)


async def _quick() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    ours = (await rotation.run_ours(3, 0.4, silent=False)).summary()
    base = (await rotation.run_baseline(3, 0.4, on_go_away=True)).summary()
    overhead = await throughput.run(200, 1)
    core = corecost.run(5, rounds=1)
    scaled = await scale.run([3], 1.0, 3.0)
    mem = await memory.run(5, busy=4, ramp=0.5, warm=2.0, lifetime=2.0)
    # connections of 3 s, so the 1 s window sees a rotation (the loaded outage target)
    # what is reported, not how fast: a delay bound no load reaches, so a busy machine cannot
    # turn a step into a miss and take figures (the ratios) out of the run
    cap = await capacity.run([3], ramp=0.5, warm=0.2, window=1.0, refine=False, lifetime=3.0,
                             delay_bound_ms=60_000)
    fleet = await handoff.run(3, 5)
    rot = {"ours": ours, "baseline (b): reconnect on goAway": base}
    return rot, {"overhead": overhead, "core": core, "scale": scaled, "memory": mem,
                 "capacity": cap, "handoff": fleet}, assemble(rot, overhead, core, scaled, mem,
                                                              cap, fleet)


@pytest.fixture(scope="module")
def quick() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """One toy run of every benchmark, shared by the tests below."""
    return asyncio.run(_quick())


def test_rotation_benchmark_ours_and_a_baseline(quick: Any) -> None:
    """A few rotations: ours loses and cuts nothing; the figures are all there."""
    rot, _, _ = quick
    ours, base = rot["ours"], rot["baseline (b): reconnect on goAway"]
    assert ours["rotations"] >= 3 and ours["lost"] == 0 and ours["cut_replies"] == 0
    assert ours["floor_ms"] is not None and ours["outage_p99_ms"] is not None
    assert base["rotations"] >= 3 and base["inputs"] > 0


def test_throughput_core_and_scale_benchmarks_report(quick: Any) -> None:
    """The overhead, core and scale benchmarks produce their figures."""
    _, parts, _ = quick
    assert parts["overhead"]["raw_sdk_msgs_per_s"] > 0 and parts["overhead"]["ours_msgs_per_s"] > 0
    assert parts["core"]["events_per_s_audit"] > 0 and parts["core"]["audit_bytes_per_event"] > 100
    assert parts["core"]["events_per_s_telemetry"] > 0 and parts["core"]["telemetry_ratio"] > 0
    assert parts["scale"]["sessions"] == 3 and parts["scale"]["lost"] == 0


def test_scale_runs_ours_beside_the_raw_sdk_at_the_same_n(quick: Any) -> None:
    """Each size runs a fleet of voice sessions (audio at real rates, rotations) for ours and
    for the raw SDK with the same traffic, over client processes, and reports memory per
    session, outages, lost and duplicated inputs (per rotation too) for both."""
    _, parts, _ = quick
    [run] = parts["scale"]["runs"]
    assert run["processes"] >= 1 and run["raw"]["inputs"] > 0 and run["inputs"] > 0
    for side in (run, run["raw"]):
        for key in ("outage_p50_ms", "outage_p99_ms", "lost", "duplicated", "chunks_per_s",
                    "duplicated_per_rotation", "rotations"):
            assert key in side, key
        assert side["chunks_per_s"] > 0
    assert run["sdk_kb_per_connection"] is not None and run["ours_kb_per_session"] is not None
    assert run["lost"] == 0 and run["failed_sessions"] == 0
    assert parts["scale"]["duplicated_per_rotation"] == round(
        parts["scale"]["duplicated"] / max(1, parts["scale"]["rotations"]), 3)


def test_scale_and_capacity_tell_unread_input_from_lost_input(quick: Any) -> None:
    """What the model never took in is split by identity: what ours' sessions still held
    uncovered when the run closed them (`lost_unread_at_close`) apart from a real loss
    (`lost`, what the targets read); every chunk of ours is accounted for by its session's
    ledger; the raw SDK has no journal to say it (None). Both are printed and in the JSON."""
    _, parts, results = quick
    [run] = parts["scale"]["runs"]
    assert run["lost_unread_at_close"] == 0 and run["raw"]["lost_unread_at_close"] is None
    assert run["unmatched_sessions"] == 0 and run["lost_examples"] == []
    assert parts["scale"]["lost_unread_at_close"] == run["lost_unread_at_close"]
    assert "unread at close" in table(results)
    steps = parts["capacity"]["steps"]
    for step in steps:
        expected = None if step["kind"] == "raw" else 0
        assert step["lost_unread_at_close"] == expected, step["kind"]
        assert step["unmatched_sessions"] == 0
    assert any("unread@close" in line for line in capacity.table(parts["capacity"]))


def test_busy_memory_is_broken_down_by_owner_beside_its_floor(quick: Any) -> None:
    """Busy sessions' memory above the raw SDK's with the same traffic, by owner (the journal's
    entries, payloads and pool among them), with the floor (uncovered input a resume would
    send) printed beside the figure."""
    busy = quick[1]["memory"]["busy"]
    assert busy["sessions"] == 4 and busy["raw_kb_per_connection"] > 0
    assert {"journal entries and pool", "journal payloads", "tasks, futures and timers",
            "TLS and socket buffers"} <= set(busy["owners_kb"])
    assert busy["kb_per_session"] == pytest.approx(sum(busy["owners_kb"].values()), abs=0.2)
    assert busy["floor_kb_per_session"] >= 0 and busy["lost"] == 0
    journal = busy["journal_per_session"]
    assert journal["inputs"] >= journal["entries"] >= 0 and journal["pool"] >= 0
    text = "\n".join(memory.table(quick[1]["memory"]))
    assert "busy rotating sessions" in text and "floor" in text and "by owner" in text


def test_every_target_names_a_figure_the_run_produces(quick: Any) -> None:
    """Each target's figure is in the results: a target the run never measures would always
    be missed."""
    _, _, results = quick
    for target in TARGETS:
        assert isinstance(figure(results, target.figure), int | float), target.figure


def test_report_shows_units_whole_headings_and_a_verdict_per_target(quick: Any) -> None:
    """Every target is printed as met or missed with its bar and figure; headings carry units
    and none is cut off; the receive ratio sits next to the two raw rates."""
    _, _, results = quick
    text = table(copy.deepcopy(results))
    for target in TARGETS:
        assert re.search(rf"^  (met   |MISSED)  {re.escape(str(target))} +got ", text, re.M), \
            target.figure
    assert re.search(rf"^Verdict: \d+ of {len(TARGETS)} targets met", text, re.M)
    for heading in ("outage p50 (ms)", "outage p99 (ms)", "worst input delay (ms)",
                    "floor: bare connect()+setup p50 (ms)", "outage p99 / floor p50 (x)",
                    "msg/s (median)", "events/s", "KB/session above SDK", "SDK KB/connection"):
        assert heading in text, heading
    overhead = text[text.index("Receive overhead"):text.index("Core")]
    assert "raw SDK" in overhead and "ours/raw" in overhead and "median" in overhead


def _meeting_every_target(results: dict[str, Any]) -> dict[str, Any]:
    """The run's results with every target's figure set to its bound."""
    met = copy.deepcopy(results)
    for target in TARGETS:
        *path, last = target.figure.split(".")
        node = met
        for part in path:
            node = node[part]
        node[last] = target.bound
    return met


def test_check_exits_1_when_a_target_is_missed(quick: Any, capsys: Any) -> None:
    """`--check` passes when every target is met and fails when one is missed."""
    _, _, results = quick
    met = _meeting_every_target(results)
    assert report(copy.deepcopy(met), check=True) == 0
    missed = copy.deepcopy(met)
    missed["rotation"]["lost"] = 1
    assert report(missed, check=True) == 1
    assert report(copy.deepcopy(missed), check=False) == 0
    assert "MISSED  rotation.lost == 0 inputs" in capsys.readouterr().out


def test_check_from_a_saved_run(quick: Any, tmp_path: Path) -> None:
    """`bench --from-json FILE --check`: the verdict on a saved run, exit 1 when a target was
    missed or not measured, 0 when all were met."""
    _, _, results = quick
    met = _meeting_every_target(results)
    unmeasured = copy.deepcopy(met)
    unmeasured["rotation"]["outage_p99_over_floor_p99"] = None  # no floor sample in the run
    for data, status, shown in ((met, 0, f"Verdict: {len(TARGETS)} of {len(TARGETS)} targets met"),
                                (unmeasured, 1, "MISSED  rotation.outage_p99_over_floor_p99")):
        path = tmp_path / "bench.json"
        path.write_text(json.dumps(data))
        done = subprocess.run([sys.executable, "-m", "statemachine", "bench", "--from-json",
                               str(path), "--check"], capture_output=True, text=True, timeout=60)
        assert done.returncode == status, done.stdout + done.stderr
        assert shown in done.stdout and "Traceback" not in done.stderr


def test_capacity_benchmark_reports_every_figure(quick: Any) -> None:
    """One tiny step each for ours and the raw SDK, in their own processes: every figure is
    there, the report prints them, and ours loses no input."""
    cap = quick[1]["capacity"]
    assert {"sessions_per_core", "raw_sessions_per_core", "ratio"} <= set(cap)
    kinds = {s["kind"]: s for s in cap["steps"]}
    assert set(kinds) == {"ours", "ours-sdk", "ours-otel", "raw"}
    for ours in (kinds["ours"], kinds["ours-sdk"], kinds["ours-otel"]):
        assert ours["inputs"] > 0 and ours["input_delay_p99_ms"] is not None
        assert ours["lost"] == 0 and ours["failed_sessions"] == 0
    ours = kinds["ours"]
    assert ours["us_per_message"] is not None and kinds["raw"]["us_per_message"] is not None
    assert any("sessions per core" in line for line in capacity.table(cap))
    assert cap["us_per_message_ratio_smallest"] is not None
    assert cap["us_per_message_at"] == {"smallest": 3, "largest": 3}
    assert cap["sdk_audio_us_per_message_ratio_smallest"] is not None
    # ours-otel reported to the OpenTelemetry SDK: the cost is measured with telemetry on
    otel = kinds["ours-otel"]["telemetry_reported"]
    assert otel["spans"] >= 6 and otel["metrics"] >= 5, otel
    assert not kinds["ours"]["telemetry_reported"]
    assert cap["telemetry_sessions_per_core"] is not None and "telemetry_ratio" in cap
    assert any("telemetry on" in line for line in capacity.table(cap))


def test_capacity_cost_growth_pairs_the_best_tries_at_the_same_size() -> None:
    """The CPU ratio compares ours and the raw SDK at the same N, each at its better try (a
    retry after a miss), at the smallest and the largest N both ran."""
    steps = [
        {"kind": "raw", "sessions": 10, "us_per_message": 200.0},
        {"kind": "ours", "sessions": 10, "us_per_message": 220.0},
        {"kind": "raw", "sessions": 40, "us_per_message": 190.0},
        {"kind": "ours", "sessions": 40, "us_per_message": 209.0},
        {"kind": "ours", "sessions": 40, "us_per_message": 260.0},
        {"kind": "ours", "sessions": 70, "us_per_message": 205.0},
        {"kind": "ours-sdk", "sessions": 40, "us_per_message": 228.0},
    ]
    got = capacity.cost_growth(steps)
    assert got["us_per_message_ratio_smallest"] == 1.1
    assert got["us_per_message_ratio_largest"] == 1.1
    assert got["us_per_message_at"] == {"smallest": 10, "largest": 40}
    assert got["sdk_audio_us_per_message_ratio_smallest"] is None  # not run at 10
    assert got["sdk_audio_us_per_message_ratio_largest"] == 1.2


def test_memory_benchmark_traces_components_and_no_per_session_bindings(quick: Any) -> None:
    """The memory benchmark reports ours against the SDK's connection by component, and the
    shared machine binds nothing per session (add_model's bindings were ~11 KB a session)."""
    mem = quick[1]["memory"]
    assert mem["raw_kb_per_connection"] > 0 and mem["ours_kb_per_session"] > 0
    assert mem["components_kb"].get("transitions", 0.0) < 1.0
    assert "KB per session above the SDK" in memory.table(mem)[0]


def test_hand_off_benchmark_reports_beside_the_rotation(quick: Any) -> None:
    """A few hand-offs between workers through SQLite: every one completes, nothing is lost
    without a report, and the report prints the hand-off row beside the rotation outage and the
    write-through's cost per turn."""
    _, parts, results = quick
    fleet = parts["handoff"]
    assert fleet["hand_offs"] == 3 and fleet["failed"] == 0 and fleet["lost_unreported"] == 0
    assert fleet["to_first_input_p99_ms"] is not None and fleet["outage_p50_ms"] is not None
    assert set(fleet["turn_costs"]) >= {"no store", "sqlite"}
    printed = table(results)
    assert "hand_off() to first input on the next worker" in printed
    assert "plain rotation outage, same run" in printed and "CPU ms/turn" in printed


def test_targets_hold_busy_memory_and_duplicates_per_rotation() -> None:
    """The bars of issue 28 are targets `bench --check` judges: a busy session at most 64 KB
    above the SDK (the idle one at most 20), at most one input taken in twice per rotation in
    the rotation, scale and capacity runs."""
    bars = {t.figure: (t.op, t.bound) for t in TARGETS}
    assert bars["memory.busy.kb_per_session"] == ("<=", 64)
    assert bars["memory.kb_per_session"] == ("<=", 20)
    for name in ("rotation.duplicated_per_rotation", "scale.duplicated_per_rotation",
                 "capacity.duplicated_per_rotation_loaded"):
        assert bars[name] == ("<=", 1), name


def test_duplicates_are_counted_per_rotation_in_every_run(quick: Any) -> None:
    rot, parts, results = quick
    assert rot["ours"]["duplicated_per_rotation"] == round(
        rot["ours"]["duplicated"] / max(1, rot["ours"]["rotations"]), 3)
    for step in parts["capacity"]["steps"]:
        assert step["duplicated_per_rotation"] == round(
            step["duplicated"] / max(1, step["rotations"]), 3)
    assert results["rotation"]["duplicated_per_rotation"] is not None
    assert "duplicated per rotation" in table(copy.deepcopy(results))

