"""Durable resumption handles: resume after a process restart, or on another worker.

A `HandleStore` keeps, per application-chosen session key, the latest resumable handle with when
it was issued and when it expires (Unix time: stores are shared between processes and machines),
the connection generation and whether the context was compressed. It also holds a **lease**: one
live connection per session across processes. A lease has an expiry and is renewed while the
session is connected, so the lease of a worker that died runs out and the session can move.

Implementations pass one conformance suite (tests/test_stores.py): `MemoryStore` (the default),
`SQLiteStore` (one file, several processes on one machine) and `RedisStore` (many workers; needs the
`redis` extra).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

from ..core.persistence import StoredHandle


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
        """Take the lease for `ttl` seconds, or raise `LeaseHeld` naming the holder."""

    async def renew(self, key: str, holder: str, ttl: float) -> bool:
        """Extend our lease, taking it again if it ran out and nobody took it; False only when
        another holder has it."""

    async def release(self, key: str, holder: str) -> None:
        """Give up our lease (no-op if it is not ours)."""

    async def aclose(self) -> None:
        """Release the store's resources (connections)."""


Clock = Callable[[], float]
