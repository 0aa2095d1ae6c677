"""Ctrl-C during the benchmark: its cancellation is never swallowed while it stops a task of
its own (the benchmark would run on as if never asked), and the tasks a benchmark started are
stopped with it, so none fails a moment later with a traceback after the command's one line."""

from __future__ import annotations

import asyncio
import gc
from typing import Any

import pytest

from statemachine.bench import rotation
from statemachine.bench.tasks import cancel_and_wait, started_tasks


async def test_stopping_a_task_lets_a_cancellation_of_the_caller_through() -> None:
    """The caller is cancelled while the task it stops is still cleaning up: the caller ends
    cancelled, it does not go on."""
    cleaning, release = asyncio.Event(), asyncio.Event()

    async def slow_to_stop() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            cleaning.set()
            await release.wait()

    async def caller() -> str:
        task = asyncio.get_running_loop().create_task(slow_to_stop())
        await asyncio.sleep(0)  # it runs up to its wait
        await cancel_and_wait(task)
        return "ran on"

    outer = asyncio.get_running_loop().create_task(caller())
    await cleaning.wait()
    outer.cancel()
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await outer


async def test_stopping_a_task_raises_its_own_error_unless_told_not_to() -> None:
    async def fails_when_stopped() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            raise ValueError("cleanup failed")

    for raise_error in (True, False):
        task = asyncio.get_running_loop().create_task(fails_when_stopped())
        await asyncio.sleep(0)
        if raise_error:
            with pytest.raises(ValueError, match="cleanup failed"):
                await cancel_and_wait(task)
        else:
            await cancel_and_wait(task, raise_error=False)
        assert task.done()


async def test_tasks_started_in_a_block_end_with_it_when_it_is_interrupted() -> None:
    """Cancelled, the block cancels and awaits what it started before the cancellation goes on;
    left normally, what it started runs on (the caller's, as with create_task)."""
    block_started = asyncio.Event()
    inside: list[asyncio.Task[None]] = []

    async def block() -> None:
        async with started_tasks() as start:
            inside.append(start(asyncio.Event().wait()))
            block_started.set()
            await asyncio.Event().wait()

    outer = asyncio.get_running_loop().create_task(block())
    await block_started.wait()
    outer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await outer
    assert inside[0].cancelled()

    async with started_tasks() as start:
        runs_on = start(asyncio.Event().wait())
    await asyncio.sleep(0)
    assert not runs_on.done()
    runs_on.cancel()


@pytest.mark.parametrize("scenario", ["ours", "raw SDK baseline"])
async def test_ctrl_c_in_the_rotation_run_leaves_nothing_running_or_failing(
        scenario: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Interrupted while its traffic flows, a rotation scenario stops its sender and reader
    before it closes the session and the emulator: no task of it is left, and none ends with
    an error nobody reads (Python prints those as 'Task exception was never retrieved')."""
    loop = asyncio.get_running_loop()
    unread: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _, context: unread.append(context))
    flowing = asyncio.Event()
    traffic_run = rotation.Traffic.run
    senders: list[asyncio.Task[Any] | None] = []

    async def run(self: rotation.Traffic, *args: Any) -> None:
        senders.append(asyncio.current_task())
        flowing.set()
        await traffic_run(self, *args)

    monkeypatch.setattr(rotation.Traffic, "run", run)
    before = asyncio.all_tasks()
    if scenario == "ours":
        scenario_run = rotation.run_ours(20, 0.4, silent=False)
    else:
        scenario_run = rotation.run_baseline(20, 0.4, on_go_away=False)
    task = loop.create_task(scenario_run)
    await flowing.wait()
    task.cancel()
    try:  # (not pytest.raises: its traceback would keep the run's tasks from being collected)
        await task
    except asyncio.CancelledError:
        pass
    else:
        raise AssertionError("the interrupted run went on to its end")
    left = [t for t in asyncio.all_tasks() - before if not t.done()]
    assert not left, left
    sender = senders[0]
    assert sender is not None and sender.cancelled(), sender  # stopped, not left to fail
    del sender
    senders.clear()
    del task, left
    gc.collect()  # an unread task error is reported when the task is collected
    assert not unread, unread
