"""The main job: `python -m statemachine demo`, a complete session with no key and no network."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from statemachine.core.table import State
from statemachine.emulator import EmulatorSettings


def test_demo_runs_every_step_and_writes_a_clean_audit_log(tmp_path: Path) -> None:
    """The demo exits 0, goes through every state, and its log holds no key and no handle."""
    log = tmp_path / "demo.jsonl"
    env = {k: v for k, v in os.environ.items() if k not in ("GEMINI_API_KEY", "GOOGLE_API_KEY")}
    done = subprocess.run(
        [sys.executable, "-m", "statemachine", "demo", "--log", str(log)],
        capture_output=True, text=True, timeout=120, env=env,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"audit log (JSON Lines): {log}" in done.stdout
    text = log.read_text()
    records = [json.loads(line) for line in text.splitlines()]
    visited = {r["dest"] for r in records if r["kind"] == "transition"}
    assert visited == {s.value for s in State} - {State.IDLE}
    assert EmulatorSettings().api_key not in text + done.stderr
    assert "emu-" not in text + done.stderr  # the emulator's handles all start with "emu-"
    assert [r["seq"] for r in records] == list(range(1, len(records) + 1))
    story = done.stdout
    for shown in ("streaming → draining       goAway, 0.5 s left", "told   ContextLost",
                  "told   Resumed: 1 input(s) replayed", "9. Close",
                  f"python -m statemachine audit {log}",
                  f"python -m statemachine report {log} -o session.html"):
        assert shown in story, shown


def test_demo_reads_as_a_story(tmp_path: Path) -> None:
    """Short lines, no key=value dumps, and every reply follows the input it answers, echoed."""
    log = tmp_path / "demo.jsonl"
    env = {k: v for k, v in os.environ.items() if k not in ("GEMINI_API_KEY", "GOOGLE_API_KEY")}
    done = subprocess.run(
        [sys.executable, "-m", "statemachine", "demo", "--log", str(log)],
        capture_output=True, text=True, timeout=120, env=env,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert done.stderr == ""
    assert max(len(line) for line in lines) <= 110 + len(str(log))
    assert not any(re.search(r"\w+=\S+ \w+=\S+", line) for line in lines)
    said: list[str] = []
    for line in lines:
        if line.startswith("   you    "):
            said.append(line[len("   you    "):])
        answered = re.search(r'^   model  (?:Reply \d+ to )"([^"]+)"', line)
        if answered:
            assert any(s.startswith(answered.group(1)) for s in said), line
    headlines = [line for line in lines if re.match(r"^\d+\. ", line)]
    assert len(headlines) == 9 and "refuses the old handle (close 1007" in headlines[7]


def test_demo_runs_the_3x_profile(tmp_path: Path) -> None:
    """`demo --model gemini-3.1-flash-live-preview`: the emulator speaks as the 3.x generation
    (mid-turn handles, interactionStatus) and the session still ends clean in its audit log."""
    log = tmp_path / "demo3.jsonl"
    done = subprocess.run(
        [sys.executable, "-m", "statemachine", "demo", "--model",
         "gemini-3.1-flash-live-preview", "--log", str(log)],
        capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "as gemini-3.1-flash-live-preview" in done.stdout
    # a 3.x tool call does not block: its result comes in a turn of its own, which the demo
    # waits for, so it is told under the tool-call step, not under the next headline
    steps = re.split(r"^\d+\. ", done.stdout, flags=re.M)
    tool_step = next(s for s in steps if s.startswith("A tool call"))
    assert "get_weather returned" in tool_step, tool_step
    checked = subprocess.run([sys.executable, "-m", "statemachine", "audit", str(log)],
                             capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0 and "clean" in checked.stdout


def _demo_env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1", **extra}


def test_two_demos_at_once_keep_their_own_logs_and_ignore_keys_in_the_environment(
        tmp_path: Path) -> None:
    """With real-looking keys in the environment and no --log, two demos started together each
    run on the embedded emulator (their first line says so), each writes a log of its own in
    the temp folder, and both logs are there and clean afterwards. The story never shows a
    retry without the failure its backoff followed."""
    env = _demo_env(GEMINI_API_KEY="AIza-not-a-real-key", GOOGLE_API_KEY="AIza-not-real-either",
                    TMPDIR=str(tmp_path))
    procs = [subprocess.Popen([sys.executable, "-m", "statemachine", "demo"], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    logs = []
    for proc, (out, err) in zip(procs, outs, strict=True):
        assert proc.returncode == 0, err[-3000:]
        assert out.startswith("The Live API emulator on https://127.0.0.1:"), out[:300]
        found = re.search(r"^audit log \(JSON Lines\): (.+)$", out, re.M)
        assert found, out[-500:]
        logs.append(Path(found.group(1)))
        retries = [line for line in out.splitlines() if "trying again" in line]
        assert retries and all(re.search(r"backoff after (close \d+|HTTP \d+|a failed)", line)
                               for line in retries), retries
    assert logs[0] != logs[1] and all(log.parent == tmp_path for log in logs)
    for log in logs:
        checked = subprocess.run([sys.executable, "-m", "statemachine", "audit", str(log)],
                                 capture_output=True, text=True, timeout=60)
        assert checked.returncode == 0 and "clean" in checked.stdout, checked.stdout


def test_the_real_service_only_with_real_and_it_says_so_first(tmp_path: Path) -> None:
    """`--real` is the only way to the real service, and its first line says it is the real
    one and where the key came from. (The base URL points at a closed local port, so nothing
    leaves this machine; the run is stopped with Ctrl-C after that line.)"""
    import signal

    env = _demo_env(GEMINI_API_KEY="AIza-not-a-real-key",
                    GOOGLE_GEMINI_BASE_URL="https://127.0.0.1:9")
    proc = subprocess.Popen(
        [sys.executable, "-m", "statemachine", "demo", "--real", "--log",
         str(tmp_path / "real.jsonl")], env=env, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, start_new_session=True)
    assert proc.stdout is not None
    first = proc.stdout.readline()
    os.killpg(proc.pid, signal.SIGINT)
    rest, _ = proc.communicate(timeout=60)
    assert first.startswith("The REAL Live API (--real, key from GEMINI_API_KEY)"), first
    assert "AIza" not in first + rest and "Traceback" not in rest
    assert proc.returncode == 130
    no_key = subprocess.run([sys.executable, "-m", "statemachine", "demo", "--real"],
                            env={k: v for k, v in env.items()
                                 if k not in ("GEMINI_API_KEY", "GOOGLE_API_KEY")},
                            capture_output=True, text=True, timeout=60)
    assert no_key.returncode == 2 and "no API key" in no_key.stderr
    stray = subprocess.run([sys.executable, "-m", "statemachine", "demo", "--api-key", "k"],
                           capture_output=True, text=True, timeout=60)
    assert stray.returncode == 2 and "--real" in stray.stderr


def test_demo_help_names_the_model_default_and_the_emulator_its_time_scale() -> None:
    demo = subprocess.run([sys.executable, "-m", "statemachine", "demo", "--help"],
                          capture_output=True, text=True, timeout=60).stdout
    assert re.search(r"--model NAME\s+the Live model", demo)
    assert "default: gemini-3.8-live" in " ".join(demo.split())  # issue 24: 3.8 is the default
    emulator = subprocess.run([sys.executable, "-m", "statemachine", "emulator", "--help"],
                              capture_output=True, text=True, timeout=60).stdout
    assert "default: 1, real time" in " ".join(emulator.split())
