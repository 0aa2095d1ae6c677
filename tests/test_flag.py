"""Flag: asyncio.Event's meaning (the session's waits rely on it)."""

from __future__ import annotations

import asyncio

from statemachine.aio.flag import Flag


async def test_set_wakes_every_waiter_and_clear_makes_the_next_wait_block() -> None:
    """set() wakes all waiting tasks, even if cleared before they run; wait() on a set flag
    returns at once; after clear() a wait blocks until the next set()."""
    flag = Flag()
    waiters = [asyncio.create_task(flag.wait()) for _ in range(3)]
    await asyncio.sleep(0)
    assert not any(w.done() for w in waiters)
    flag.set()
    flag.clear()
    assert await asyncio.gather(*waiters) == [True, True, True]
    flag.set()
    assert await flag.wait() is True
    flag.clear()
    late = asyncio.create_task(flag.wait())
    await asyncio.sleep(0)
    assert not late.done()
    flag.set()
    assert await late is True


async def test_a_cancelled_wait_leaves_no_waiter_behind() -> None:
    """A wait cancelled (as by asyncio.wait_for or a timeout) is forgotten; the others still
    wake."""
    flag = Flag()
    cancelled = asyncio.create_task(flag.wait())
    kept = asyncio.create_task(flag.wait())
    await asyncio.sleep(0)
    cancelled.cancel()
    await asyncio.gather(cancelled, return_exceptions=True)
    assert flag._waiters is not None and len(flag._waiters) == 1
    flag.set()
    assert await kept is True
