"""`Flag`: what `asyncio.Event` does, in a fraction of its memory.

A session holds seven of them (and one per connection); an `asyncio.Event` allocates a deque for
its waiters up front (about 0.7 KB with the object), a `Flag` a list only while someone waits.
"""

from __future__ import annotations

import asyncio


class Flag:
    """`is_set`, `set`, `clear` and `wait` with `asyncio.Event`'s meaning: `set` wakes every task
    waiting; a task woken returns even if the flag was cleared before it ran."""

    __slots__ = ("_set", "_waiters")

    def __init__(self) -> None:
        self._set = False
        self._waiters: list[asyncio.Future[bool]] | None = None

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        if self._set:
            return
        self._set = True
        waiters, self._waiters = self._waiters, None
        for waiter in waiters or ():
            if not waiter.done():
                waiter.set_result(True)

    def clear(self) -> None:
        self._set = False

    async def wait(self) -> bool:
        if self._set:
            return True
        return await _until(self)

    def _add(self, waiter: asyncio.Future[bool]) -> None:
        if self._waiters is None:
            self._waiters = []
        self._waiters.append(waiter)

    def _discard(self, waiter: asyncio.Future[bool]) -> None:
        if self._waiters is not None and waiter in self._waiters:
            self._waiters.remove(waiter)


async def either(first: Flag, second: Flag) -> bool:
    """Wait until one of two flags is set. One future waits on both: a `wait()` task per flag
    and `asyncio.wait` over them held two tasks and their futures (about 1.5 KB) for as long as
    the wait lasted, which for a session's background reader is most of its life."""
    if first.is_set() or second.is_set():
        return True
    return await _until(first, second)


async def _until(*flags: Flag) -> bool:
    waiter: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
    for flag in flags:
        flag._add(waiter)
    try:
        return await waiter
    finally:
        for flag in flags:
            flag._discard(waiter)
