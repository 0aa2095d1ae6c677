"""The benchmark's child processes: one that dies before it reports ends the wait, with its
exit code, instead of leaving the benchmark (or the test suite running it) waiting for ever."""

from __future__ import annotations

import asyncio
import os
from multiprocessing.connection import Connection

import pytest

from statemachine.bench.remote import in_child


def _reports(value: int, pipe: Connection) -> None:
    pipe.send(value * 2)


def _dies_before_reporting(pipe: Connection) -> None:
    os._exit(3)


async def test_a_child_reports_what_it_measured() -> None:
    assert await asyncio.wait_for(in_child(_reports, 21), 60) == 42


async def test_a_child_that_dies_before_reporting_ends_the_wait_with_its_exit_code() -> None:
    with pytest.raises(RuntimeError, match=r"_dies_before_reporting exited \(code 3\)"):
        await asyncio.wait_for(in_child(_dies_before_reporting), 60)
