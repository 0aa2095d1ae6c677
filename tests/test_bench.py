"""The benchmark machinery at toy sizes: it runs, it reports every figure, and our side loses
nothing. Times are printed by `python -m statemachine bench`, never asserted here."""

from __future__ import annotations

from statemachine.bench import capacity, corecost, memory, rotation, throughput


async def test_rotation_benchmark_ours_and_a_baseline() -> None:
    """A few rotations: ours loses and cuts nothing; the figures are all there."""
    ours = (await rotation.run_ours(3, 0.4, silent=False)).summary()
    assert ours["rotations"] >= 3 and ours["lost"] == 0 and ours["cut_replies"] == 0
    assert ours["floor_ms"] is not None and ours["outage_p99_ms"] is not None
    base = (await rotation.run_baseline(3, 0.4, on_go_away=True)).summary()
    assert base["rotations"] >= 3 and base["inputs"] > 0


async def test_throughput_and_core_benchmarks_report() -> None:
    """The overhead and core benchmarks produce their figures."""
    result = await throughput.run(200, 1)
    assert result["raw_sdk_msgs_per_s"] > 0 and result["ours_msgs_per_s"] > 0
    core = corecost.run(5, rounds=1)
    assert core["events_per_s_audit"] > 0 and core["audit_bytes_per_event"] > 100


async def test_capacity_benchmark_reports_every_figure() -> None:
    """One tiny step each for ours and the raw SDK, in their own processes: every figure is
    there, the report prints them, and ours loses no input."""
    cap = await capacity.run([3], ramp=0.5, warm=0.2, window=1.0, refine=False)
    assert {"sessions_per_core", "raw_sessions_per_core", "ratio"} <= set(cap)
    kinds = {s["kind"]: s for s in cap["steps"]}
    assert set(kinds) == {"ours", "raw"}
    ours = kinds["ours"]
    assert ours["inputs"] > 0 and ours["input_delay_p99_ms"] is not None
    assert ours["lost"] == 0 and ours["failed_sessions"] == 0
    assert ours["us_per_message"] is not None and kinds["raw"]["us_per_message"] is not None
    assert any("sessions per core" in line for line in capacity.table(cap))


async def test_memory_benchmark_traces_components_and_no_per_session_bindings() -> None:
    """The memory benchmark reports ours against the SDK's connection by component, and the
    shared machine binds nothing per session (add_model's bindings were ~11 KB a session)."""
    mem = await memory.run(5)
    assert mem["raw_kb_per_connection"] > 0 and mem["ours_kb_per_session"] > 0
    assert mem["components_kb"].get("transitions", 0.0) < 1.0
    assert "KB per session above the SDK" in memory.table(mem)[0]
