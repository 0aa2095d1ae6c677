"""Tasks a benchmark starts beside its own, stopped with it when it is interrupted.

On Ctrl-C (a cancellation) `started_tasks()` cancels and awaits what was started in it before
the session or emulator those tasks use is closed, so none is left to fail a moment later and
print a traceback of its own ("Task exception was never retrieved") after the one line the
command prints. On a normal exit the tasks are the caller's, as with `create_task`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

#: how long an interrupted block waits for the tasks it started to end (seconds)
STOP_TIMEOUT = 10.0

Start = Callable[[Coroutine[Any, Any, Any]], "asyncio.Task[Any]"]


@contextlib.asynccontextmanager
async def started_tasks() -> AsyncIterator[Start]:
    """`start(coro)` creates a task; if the block raises (or is cancelled), every task it
    started is cancelled and awaited (at most `STOP_TIMEOUT`; their errors read) before the
    exception goes on."""
    loop = asyncio.get_running_loop()
    tasks: list[asyncio.Task[Any]] = []

    def start(coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = loop.create_task(coro)
        tasks.append(task)
        return task

    try:
        yield start
    except BaseException:
        for task in tasks:
            task.cancel()
        if tasks:  # bounded: one that ignored its cancellation must not keep Ctrl-C waiting
            done, _ = await asyncio.wait(tasks, timeout=STOP_TIMEOUT)
            for task in done:
                if not task.cancelled():
                    task.exception()  # read: the interruption is what the command reports
        raise


async def cancel_and_wait(task: asyncio.Task[Any], *, raise_error: bool = True) -> None:
    """Cancel `task` and wait until it ended. A Ctrl-C of the caller's own that comes meanwhile
    goes on (`suppress(CancelledError)` around the await would swallow it, and the benchmark
    would run on). The task's own exception, if it had one, is raised unless `raise_error` is
    false (then it is retrieved and dropped)."""
    task.cancel()
    await asyncio.wait([task])
    if task.cancelled():
        return
    error = task.exception()
    if error is not None and raise_error:
        raise error
