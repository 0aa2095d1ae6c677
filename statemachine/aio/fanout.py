"""Fan-outs: the live streams a session offers (`events()`, `notices()`), one queue per
subscriber, fed by the session without waiting on anyone."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

#: ends every subscriber of a fan-out (and the session's message stream)
END = object()


class Fanout:
    """An unbounded async iterator per subscriber, fed by one producer; `END` ends them all,
    including those who subscribe later."""

    def __init__(self) -> None:
        self._queues: list[asyncio.Queue[Any]] = []
        self._ended = False

    def put(self, item: Any) -> None:
        if item is END:
            self._ended = True
        for queue in self._queues:
            queue.put_nowait(item)

    async def subscribe(self) -> AsyncIterator[Any]:
        queue: asyncio.Queue[Any] = asyncio.Queue()
        if self._ended:
            return
        self._queues.append(queue)
        try:
            while (item := await queue.get()) is not END:
                yield item
        finally:
            self._queues.remove(queue)
