"""The store side of a session, as performed work: take the lease and load the handle before the
first connection, then perform the core's store actions in order, in a task of their own so a
slow or unreachable store never holds the session up, and feed back what the store answered.

It decides nothing: what to save, when to renew, when the store counts as down and when the lease
is lost are the core's (`core/storesync.py`), and so are how long to wait for another holder's
lease (`core/persistence.lease_retry_after`) and whether a stored handle is still valid
(`Lifecycle.restore`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import TypeVar

from ..core.actions import (
    ForgetHandle,
    HandOver,
    Reclaim,
    ReleaseLease,
    RenewLease,
    SaveHandle,
    StoreAction,
    WriteJournal,
)
from ..core.events import Event, LeaseLost, StoreDone, StoreFailed
from ..core.journal import Entry
from ..core.persistence import (
    JournalWrite,
    Persistence,
    StoredHandle,
    StoredJournal,
    lease_retry_after,
)
from ..errors import LeaseFenced, LeaseHeld, StoreError
from ..stores import HandleStore
from . import journalcodec

_T = TypeVar("_T")


class StoreWorker:
    """One session's store: the lease holder id, the start, and a serial queue of actions."""

    def __init__(self, store: HandleStore, persistence: Persistence, lease_wait: float,
                 feed: Callable[[Event], Awaitable[None]], now: Callable[[], float]) -> None:
        self.store = store
        self.persistence = persistence
        self.wait = lease_wait
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._feed = feed
        self._now = now
        self._queue: asyncio.Queue[StoreAction | None] = asyncio.Queue()  # None: stop
        self._task: asyncio.Task[None] | None = None
        self._leased = False
        #: what the store held besides the handle when the session started
        self.restored = StoredJournal()

    async def start(self) -> StoredHandle | None:
        """Take the lease (waiting up to `lease_wait` for another holder's to run out), then
        load the stored handle. Raises `LeaseHeld`, or `StoreError`: without the lease two
        workers could run the same session, so a store that cannot be reached fails the start."""
        key = self.persistence.key
        deadline = time.monotonic() + self.wait
        while True:
            try:
                await self._bounded(self.store.acquire(key, self.holder,
                                                       self.persistence.lease_ttl))
                self._leased = True
                break
            except LeaseHeld as held:
                pause = lease_retry_after(deadline - time.monotonic(), held.expires_in)
                if pause is None:
                    raise
                await asyncio.sleep(pause)
            except StoreError as exc:
                raise StoreError(
                    f"session {key!r} not started: its lease could not be taken ({exc}); "
                    "without it two workers could run the same session. Check the store, or "
                    "start without store/session_key"
                ) from exc
        try:
            record = await self._bounded(self.store.load(key))
            self.restored = await self._bounded(self.store.load_journal(key))
        except StoreError as exc:
            with contextlib.suppress(StoreError):
                await self.store.release(key, self.holder)
            self._leased = False
            raise StoreError(f"session {key!r} not started: {exc}") from exc
        self._task = asyncio.get_running_loop().create_task(self._run())
        return record  # the core decides whether it is still valid (`Lifecycle.restore`)

    async def _bounded(self, call: Awaitable[_T]) -> _T:
        """`call`, or `StoreError` once it took longer than `store_timeout`: a store that does
        not answer (paused, or a network that drops packets) holds neither the start nor the
        queue for ever."""
        try:
            async with asyncio.timeout(self.persistence.store_timeout):
                return await call
        except TimeoutError as exc:
            raise StoreError(f"the store did not answer within "
                             f"{self.persistence.store_timeout:g}s") from exc

    def perform(self, action: StoreAction) -> None:
        """Queue one of the core's store actions."""
        self._queue.put_nowait(action)

    async def _run(self) -> None:
        while (action := await self._queue.get()) is not None:
            event = await self._do(action)
            if event is not None:
                await self._feed(event)

    def entries(self, clock: Callable[[], float]) -> list[Entry]:
        """The journal entries restored at the start, on the session's clock (`clock`)."""
        offset = time.time() - clock()
        return [journalcodec.decode(text, lambda wall: wall - offset)
                for _, text in self.restored.entries]

    def _encoded(self, entries: tuple[Entry, ...]) -> tuple[tuple[int, str], ...]:
        offset = time.time() - self._now()
        return tuple((e.seq, journalcodec.encode(e, lambda t: t + offset)) for e in entries)

    async def _do(self, action: StoreAction) -> Event | None:
        try:
            return await self._bounded(self._perform(action))
        except StoreError as exc:  # only the bound's: `_perform` reports the store's own
            return StoreFailed(at=self._now(), op=action.op, error=str(exc))

    async def _perform(self, action: StoreAction) -> Event | None:
        key = action.key
        try:
            if isinstance(action, SaveHandle):
                await self.store.write(key, self.holder, JournalWrite(
                    record=action.record, forget=action.forget, audio=action.audio))
            elif isinstance(action, WriteJournal):
                await self.store.write(key, self.holder, JournalWrite(
                    put=self._encoded(action.put), forget=action.forget, audio=action.audio,
                    clear=action.clear))
            elif isinstance(action, HandOver):
                marker = json.dumps({"holder": self.holder, "at": time.time(),
                                     "entries": len(action.entries), "cut": action.cut})
                await self.store.write(key, self.holder, JournalWrite(
                    record=action.record, put=self._encoded(action.entries), clear=True,
                    audio="", hand_off=marker))
                self._leased = False
            elif isinstance(action, Reclaim):
                if not await self.store.reclaim(key, self.holder, action.ttl):
                    return LeaseLost(at=self._now())
                self._leased = True
            elif isinstance(action, ForgetHandle):
                await self.store.delete(key)
            elif isinstance(action, RenewLease):
                if not await self.store.renew(key, self.holder, action.ttl):
                    self._leased = False
                    return LeaseLost(at=self._now())
            elif isinstance(action, ReleaseLease):
                self._leased = False
                await self.store.release(key, self.holder)
                return None
        except LeaseFenced:
            self._leased = False
            return LeaseLost(at=self._now())
        except StoreError as exc:
            return StoreFailed(at=self._now(), op=action.op, error=str(exc))
        except Exception as exc:  # a store that broke its contract (an application's own
            # store, say): still a failed store operation, reported, never a dead worker
            return StoreFailed(at=self._now(), op=action.op,
                               error=f"{type(exc).__name__}: {exc} (raised by "
                                     f"{type(self.store).__name__}.{action.op.value}, "
                                     "not a StoreError)")
        return StoreDone(at=self._now(), op=action.op)

    async def stop(self, within: float) -> None:
        """Perform what is still queued (the final save, the lease release) within `within`
        seconds, then stop. A store that does not answer in time keeps the lease until it runs
        out. The worker is asked to stop rather than cancelled mid-operation: some clients
        (redis-py) turn a cancellation into a connection error and go on."""
        task, self._task = self._task, None
        if task is not None:
            self._queue.put_nowait(None)
            done, _ = await asyncio.wait({task}, timeout=within)
            if not done:
                task.cancel()
                return
        if self._leased:
            self._leased = False
            with contextlib.suppress(StoreError, TimeoutError):
                async with asyncio.timeout(within):
                    await self.store.release(self.persistence.key, self.holder)
