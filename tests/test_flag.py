"""Flag: asyncio.Event's meaning (the session's waits rely on it)."""

from __future__ import annotations

import asyncio

from statemachine.aio.flag import Flag, either


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


async def test_either_wakes_on_whichever_flag_is_set_and_leaves_no_waiter() -> None:
    """`either` returns when one of two flags is set (at once if one is already); the other
    flag keeps no waiter, nor do both after a cancelled wait (the background reader's wait
    lasts a session's life: a waiter left behind would grow every flag it touched)."""
    for which in (0, 1):
        flags = (Flag(), Flag())
        both = asyncio.create_task(either(*flags))
        await asyncio.sleep(0)
        assert not both.done()
        flags[which].set()
        assert await both is True
        assert all(not f._waiters for f in flags)
    ready, other = Flag(), Flag()
    ready.set()
    assert await either(other, ready) is True
    first, second = Flag(), Flag()
    cancelled = asyncio.create_task(either(first, second))
    await asyncio.sleep(0)
    cancelled.cancel()
    await asyncio.gather(cancelled, return_exceptions=True)
    assert not first._waiters and not second._waiters
