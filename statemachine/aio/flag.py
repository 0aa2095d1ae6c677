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
        waiter: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        if self._waiters is None:
            self._waiters = []
        self._waiters.append(waiter)
        try:
            return await waiter
        finally:
            if self._waiters is not None and waiter in self._waiters:
                self._waiters.remove(waiter)
