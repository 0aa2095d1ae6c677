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
                  "told   Resumed: 1 input(s) replayed", "10. Close",
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
    assert len(headlines) == 10 and "refuses the old handle (close 1007" in headlines[7]
    assert "handed to another worker" in headlines[8]


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
    checked = subprocess.run([sys.executable, "-m", "statemachine", "audit", str(log)],
                             capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0 and "clean" in checked.stdout
