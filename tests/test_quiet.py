"""A library prints nothing unless asked: a whole session, in a process of its own, with no
logging configured, writes nothing to stdout or stderr; asking for the console shows it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tests.quiet_app", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_a_whole_session_prints_nothing_by_default() -> None:
    """Turns, a goAway rotation and (with redis-server) a store lost mid-session: not one byte
    on stdout or stderr, while `on_event` and `session.events()` still got every record."""
    done = _run()
    assert done.returncode == 0, done.stderr
    assert done.stdout == "" and done.stderr == ""


def test_configure_console_prints_the_records() -> None:
    """`statemachine.audit.configure(None, console=True)` turns the readable lines on."""
    done = _run("--console")
    assert done.returncode == 0, done.stderr
    assert "lifecycle.transition" in done.stderr and "name=safe_point" in done.stderr
    assert done.stdout == ""
