"""The benchmark's child processes: one that dies before it reports ends the wait, with its
exit code, instead of leaving the benchmark (or the test suite running it) waiting for ever; a
Ctrl-C that comes while one is being started stops the benchmark like any other."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from multiprocessing.connection import Connection
from pathlib import Path

import pytest

from statemachine.bench.remote import in_child

ROOT = Path(__file__).resolve().parents[1]


def _reports(value: int, pipe: Connection) -> None:
    pipe.send(value * 2)


def _dies_before_reporting(pipe: Connection) -> None:
    os._exit(3)


async def test_a_child_reports_what_it_measured() -> None:
    assert await asyncio.wait_for(in_child(_reports, 21), 60) == 42


async def test_a_child_that_dies_before_reporting_ends_the_wait_with_its_exit_code() -> None:
    with pytest.raises(RuntimeError, match=r"_dies_before_reporting exited \(code 3\)"):
        await asyncio.wait_for(in_child(_dies_before_reporting), 60)


class CtrlCWhilePickled:
    """An argument whose pickling, which `Process.start()` does, presses Ctrl-C: the signal
    comes while the child is being started, at a moment no timing would hit reliably."""

    def __reduce__(self) -> tuple[type[CtrlCWhilePickled], tuple[()]]:
        os.kill(os.getpid(), signal.SIGINT)
        return (CtrlCWhilePickled, ())


def _waits_for_its_parent(_: CtrlCWhilePickled, pipe: Connection) -> None:
    """Reports nothing: it ends when its parent does (the pipe's end)."""
    with contextlib.suppress(EOFError):
        pipe.recv()


#: the benchmark's way: asyncio.run turns Ctrl-C into KeyboardInterrupt, the command into 130
_INTERRUPTED_WHILE_STARTING = """
import asyncio, sys
from statemachine.bench.remote import in_child
from tests.test_bench_children import CtrlCWhilePickled, _waits_for_its_parent
try:
    asyncio.run(in_child(_waits_for_its_parent, CtrlCWhilePickled()))
except KeyboardInterrupt:
    print("interrupted")
    sys.exit(130)
print("ran on after Ctrl-C")
"""


def test_ctrl_c_while_a_child_starts_is_not_lost() -> None:
    """Ctrl-C during `Process.start()` (the children must not get it, so it is held from them):
    the parent still gets it, stops, and stops the child; nothing else is printed."""
    done = subprocess.run([sys.executable, "-c", _INTERRUPTED_WHILE_STARTING], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout, done.stderr) == (130, "interrupted\n", "")


def _reports_whether_sigint_is_blocked(pipe: Connection) -> None:
    pipe.send(signal.SIGINT in signal.pthread_sigmask(signal.SIG_BLOCK, []))


def test_the_first_child_a_process_starts_does_not_get_ctrl_c() -> None:
    """Ctrl-C is the parent's to report; a child would print a traceback of its own. The first
    child a process starts also starts multiprocessing's resource tracker, which unblocks
    SIGINT when it is done: that must not happen while the child is being started."""
    script = ("import asyncio\nfrom statemachine.bench.remote import in_child\n"
              "from tests.test_bench_children import _reports_whether_sigint_is_blocked\n"
              "print(asyncio.run(in_child(_reports_whether_sigint_is_blocked)))\n")
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert (done.returncode, done.stdout, done.stderr) == (0, "True\n", "")
