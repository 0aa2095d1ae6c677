"""Durable resumption handles: resume after a process restart, or on another worker.

A `HandleStore` keeps, per application-chosen session key, the latest resumable handle with when
it was issued and when it expires (Unix time: stores are shared between processes and machines),
the connection generation and whether the context was compressed. It also holds a **lease**: one
live connection per session across processes. A lease has an expiry and is renewed while the
session is connected, so the lease of a worker that died runs out and the session can move.

Beyond the handle, a store keeps the session's **journal**: the inputs no handle covers yet
(turn inputs, tool responses and the like are written through before they go on the wire), an
audio mark (how much audio no handle covers: audio is not stored per chunk) and, after a planned
hand-off, a marker. Only the key's **owner** writes them: the holder that acquired the lease last.
Holder ids are unique per session (host:pid:random), so the owner is the fencing token: a write
from any other holder is refused (`LeaseFenced`) in the same atomic step as the write (a Lua
script in Redis, an IMMEDIATE transaction in SQLite, one synchronous step in memory). A worker
whose lease another worker took never writes the session again.

Implementations pass one conformance suite (tests/test_stores.py): `MemoryStore` (the default),
`SQLiteStore` (one file, several processes on one machine) and `RedisStore` (many workers; needs the
`redis` extra).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

from ..core.persistence import JournalWrite, StoredHandle, StoredJournal


@runtime_checkable
class HandleStore(Protocol):
    """The async interface every store implements."""

    async def load(self, key: str) -> StoredHandle | None:
        """The latest handle, or None. Never an expired one."""

    async def save(self, key: str, record: StoredHandle) -> None:
        """Replace the handle atomically (a newer generation is never overwritten by an older)."""

    async def delete(self, key: str) -> None:
        """Forget the handle (it was refused, or the session is over for good)."""

    async def acquire(self, key: str, holder: str, ttl: float) -> None:
        """Take the lease for `ttl` seconds and become the key's owner, or raise `LeaseHeld`
        naming the holder."""

    async def renew(self, key: str, holder: str, ttl: float) -> bool:
        """Extend our lease, taking it again if it ran out and nobody took it; False only when
        another holder has it or acquired it since (then we are no longer the owner)."""

    async def write(self, key: str, holder: str, change: JournalWrite) -> None:
        """Apply `change` atomically if `holder` owns the key (or nobody does and nobody else
        holds the lease); raise `LeaseFenced` otherwise, changing nothing."""

    async def load_journal(self, key: str) -> StoredJournal:
        """The journal, audio mark and hand-off marker kept for `key` (empty if none)."""

    async def reclaim(self, key: str, holder: str, ttl: float) -> bool:
        """After a hand-off whose outcome is unknown: if `holder` still owns the key, take the
        lease again and remove the hand-off marker (True: the hand-off is undone); False when
        another worker acquired it since (it took the hand-off)."""

    async def release(self, key: str, holder: str) -> None:
        """Give up our lease (no-op if it is not ours)."""

    async def aclose(self) -> None:
        """Release the store's resources (connections)."""


Clock = Callable[[], float]

#: how long a store remembers a key's owner after its last lease operation (the fencing token
#: must outlive any worker that could come back from a long pause)
OWNER_TTL = 7 * 24 * 3600.0
#: how long a journal outlives its last write (longer than any handle's validity)
JOURNAL_TTL = 24 * 3600.0
