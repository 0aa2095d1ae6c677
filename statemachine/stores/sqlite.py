"""`SQLiteStore`: handles and leases in one SQLite file, shared by the processes of one machine."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

from ..core.persistence import StoredHandle
from ..errors import LeaseHeld, StoreError
from .base import Clock

_SCHEMA = """
CREATE TABLE IF NOT EXISTS handles (
    key TEXT PRIMARY KEY,
    handle TEXT NOT NULL,
    issued_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    generation INTEGER NOT NULL,
    compressed INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS leases (
    key TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    expires_at REAL NOT NULL
);
"""


class SQLiteStore:
    """One SQLite file: the embedded default for persistence. WAL mode, every update one atomic
    statement or an IMMEDIATE transaction, safe across processes on one machine; the file is
    created readable and writable by its owner only (handles resume conversations)."""

    def __init__(self, path: str | os.PathLike[str], *, clock: Clock = time.time,
                 busy_timeout: float = 5.0) -> None:
        self.path = Path(path)
        self._clock = clock
        self._busy = busy_timeout
        self._conn: sqlite3.Connection | None = None
        self._lock = asyncio.Lock()

    def _connect(self) -> sqlite3.Connection:
        if self._conn is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if not self.path.exists():
                fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600)
                os.close(fd)
            conn = sqlite3.connect(self.path, timeout=self._busy, isolation_level=None,
                                   check_same_thread=False)
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
                conn.executescript(_SCHEMA)
            except sqlite3.Error:
                conn.close()  # retried by _retrying with a new connection
                raise
            self._conn = conn
        return self._conn

    async def _run(self, work: Callable[[sqlite3.Connection], object]) -> object:
        async with self._lock:
            try:
                return await asyncio.to_thread(self._retrying, work)
            except (sqlite3.Error, OSError) as exc:
                raise StoreError(f"SQLite store {self.path}: {exc}") from exc

    def _retrying(self, work: Callable[[sqlite3.Connection], object]) -> object:
        """SQLite can report "locked" without waiting on the busy timeout (switching to WAL,
        recovering a WAL): retry within the same budget before calling the store unreachable."""
        deadline = time.monotonic() + self._busy
        while True:
            try:
                return work(self._connect())
            except sqlite3.OperationalError as exc:
                transient = "locked" in str(exc) or "busy" in str(exc)
                if not transient or time.monotonic() > deadline:
                    raise
                time.sleep(0.01)

    async def load(self, key: str) -> StoredHandle | None:
        now = self._clock()

        def work(conn: sqlite3.Connection) -> StoredHandle | None:
            row = conn.execute(
                "SELECT handle, issued_at, expires_at, generation, compressed FROM handles "
                "WHERE key = ? AND expires_at > ?", (key, now)).fetchone()
            if row is None:
                conn.execute("DELETE FROM handles WHERE key = ? AND expires_at <= ?", (key, now))
                return None
            return StoredHandle(handle=row[0], issued_at=row[1], expires_at=row[2],
                                generation=row[3], compressed=bool(row[4]))

        result = await self._run(work)
        assert result is None or isinstance(result, StoredHandle)
        return result

    async def save(self, key: str, record: StoredHandle) -> None:
        await self._run(lambda conn: conn.execute(
            "INSERT INTO handles (key, handle, issued_at, expires_at, generation, compressed) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(key) DO UPDATE SET handle = excluded.handle, "
            "issued_at = excluded.issued_at, expires_at = excluded.expires_at, "
            "generation = excluded.generation, compressed = excluded.compressed "
            "WHERE excluded.generation >= handles.generation",
            (key, record.handle, record.issued_at, record.expires_at, record.generation,
             int(record.compressed))))

    async def delete(self, key: str) -> None:
        await self._run(lambda conn: conn.execute("DELETE FROM handles WHERE key = ?", (key,)))

    async def acquire(self, key: str, holder: str, ttl: float) -> None:
        now = self._clock()

        def work(conn: sqlite3.Connection) -> tuple[str, float] | None:
            conn.execute("BEGIN IMMEDIATE")
            try:
                row = conn.execute("SELECT holder, expires_at FROM leases WHERE key = ?",
                                   (key,)).fetchone()
                if row is not None and row[0] != holder and row[1] > now:
                    return (row[0], row[1] - now)
                conn.execute(
                    "INSERT INTO leases (key, holder, expires_at) VALUES (?, ?, ?) "
                    "ON CONFLICT(key) DO UPDATE SET holder = excluded.holder, "
                    "expires_at = excluded.expires_at", (key, holder, now + ttl))
                return None
            finally:
                conn.execute("COMMIT")

        held = await self._run(work)
        if held is not None:
            assert isinstance(held, tuple)
            raise LeaseHeld(key, held[0], held[1])

    async def renew(self, key: str, holder: str, ttl: float) -> bool:
        now = self._clock()
        cursor = await self._run(lambda conn: conn.execute(
            "INSERT INTO leases (key, holder, expires_at) VALUES (?, ?, ?) "
            "ON CONFLICT(key) DO UPDATE SET holder = excluded.holder, "
            "expires_at = excluded.expires_at "
            "WHERE leases.holder = excluded.holder OR leases.expires_at <= ?",
            (key, holder, now + ttl, now)))
        assert isinstance(cursor, sqlite3.Cursor)
        return cursor.rowcount == 1

    async def release(self, key: str, holder: str) -> None:
        await self._run(lambda conn: conn.execute(
            "DELETE FROM leases WHERE key = ? AND holder = ?", (key, holder)))

    async def aclose(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await asyncio.to_thread(conn.close)
