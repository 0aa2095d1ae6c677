"""`SQLiteStore`: handles and leases in one SQLite file, shared by the processes of one machine."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

from ..core.persistence import JournalWrite, StoredHandle, StoredJournal
from ..errors import LeaseFenced, LeaseHeld, StoreError
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
CREATE TABLE IF NOT EXISTS owners (
    key TEXT PRIMARY KEY,
    holder TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS journal (
    key TEXT NOT NULL,
    seq INTEGER NOT NULL,
    entry TEXT NOT NULL,
    PRIMARY KEY (key, seq)
);
CREATE TABLE IF NOT EXISTS journal_meta (
    key TEXT PRIMARY KEY,
    audio TEXT,
    hand_off TEXT
);
"""


_SAVE = (
    "INSERT INTO handles (key, handle, issued_at, expires_at, generation, compressed) "
    "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(key) DO UPDATE SET handle = excluded.handle, "
    "issued_at = excluded.issued_at, expires_at = excluded.expires_at, "
    "generation = excluded.generation, compressed = excluded.compressed "
    "WHERE excluded.generation >= handles.generation")


def _save_args(key: str, record: StoredHandle) -> tuple[object, ...]:
    return (key, record.handle, record.issued_at, record.expires_at, record.generation,
            int(record.compressed))


def _immediate(conn: sqlite3.Connection, work: Callable[[], object]) -> object:
    """`work` in an IMMEDIATE transaction (the write lock taken first): all of it or nothing."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = work()
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return result


def _owns(conn: sqlite3.Connection, key: str, holder: str, now: float) -> bool:
    """Inside a transaction: nobody else holds the lease, and nobody else acquired it last."""
    lease = conn.execute("SELECT holder, expires_at FROM leases WHERE key = ?",
                         (key,)).fetchone()
    if lease is not None and lease[0] != holder and lease[1] > now:
        return False
    owner = conn.execute("SELECT holder FROM owners WHERE key = ?", (key,)).fetchone()
    return owner is None or owner[0] == holder


def _take(conn: sqlite3.Connection, key: str, holder: str, expires_at: float) -> None:
    conn.execute("INSERT INTO leases (key, holder, expires_at) VALUES (?, ?, ?) "
                 "ON CONFLICT(key) DO UPDATE SET holder = excluded.holder, "
                 "expires_at = excluded.expires_at", (key, holder, expires_at))
    conn.execute("INSERT INTO owners (key, holder) VALUES (?, ?) "
                 "ON CONFLICT(key) DO UPDATE SET holder = excluded.holder", (key, holder))


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
        await self._run(lambda conn: conn.execute(_SAVE, _save_args(key, record)))

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
                _take(conn, key, holder, now + ttl)
                return None
            finally:
                conn.execute("COMMIT")

        held = await self._run(work)
        if held is not None:
            assert isinstance(held, tuple)
            raise LeaseHeld(key, held[0], held[1])

    async def renew(self, key: str, holder: str, ttl: float) -> bool:
        now = self._clock()

        def work(conn: sqlite3.Connection) -> bool:
            def step() -> bool:
                if not _owns(conn, key, holder, now):
                    return False
                _take(conn, key, holder, now + ttl)
                return True
            return bool(_immediate(conn, step))

        return bool(await self._run(work))

    async def release(self, key: str, holder: str) -> None:
        await self._run(lambda conn: conn.execute(
            "DELETE FROM leases WHERE key = ? AND holder = ?", (key, holder)))

    async def write(self, key: str, holder: str, change: JournalWrite) -> None:
        now = self._clock()

        def work(conn: sqlite3.Connection) -> bool:
            def step() -> bool:
                if not _owns(conn, key, holder, now):
                    return False
                conn.execute("INSERT INTO owners (key, holder) VALUES (?, ?) "
                             "ON CONFLICT(key) DO UPDATE SET holder = excluded.holder",
                             (key, holder))
                if change.record is not None and change.record.valid(now):
                    conn.execute(_SAVE, _save_args(key, change.record))
                if change.clear:
                    conn.execute("DELETE FROM journal WHERE key = ?", (key,))
                conn.executemany("DELETE FROM journal WHERE key = ? AND seq = ?",
                                 [(key, seq) for seq in change.forget])
                conn.executemany(
                    "INSERT INTO journal (key, seq, entry) VALUES (?, ?, ?) "
                    "ON CONFLICT(key, seq) DO UPDATE SET entry = excluded.entry",
                    [(key, seq, entry) for seq, entry in change.put])
                conn.execute("INSERT INTO journal_meta (key, hand_off) VALUES (?, ?) "
                             "ON CONFLICT(key) DO UPDATE SET hand_off = excluded.hand_off",
                             (key, change.hand_off))
                if change.audio is not None:
                    conn.execute("UPDATE journal_meta SET audio = ? WHERE key = ?",
                                 (change.audio or None, key))
                if change.hand_off is not None:
                    conn.execute("DELETE FROM leases WHERE key = ? AND holder = ?",
                                 (key, holder))
                return True
            return bool(_immediate(conn, step))

        if not await self._run(work):
            raise LeaseFenced(key, holder)

    async def load_journal(self, key: str) -> StoredJournal:
        def work(conn: sqlite3.Connection) -> StoredJournal:
            rows = conn.execute("SELECT seq, entry FROM journal WHERE key = ? ORDER BY seq",
                                (key,)).fetchall()
            meta = conn.execute("SELECT audio, hand_off FROM journal_meta WHERE key = ?",
                                (key,)).fetchone()
            return StoredJournal(entries=tuple((int(r[0]), str(r[1])) for r in rows),
                                 audio=meta[0] if meta else None,
                                 hand_off=meta[1] if meta else None)

        result = await self._run(work)
        assert isinstance(result, StoredJournal)
        return result

    async def reclaim(self, key: str, holder: str, ttl: float) -> bool:
        now = self._clock()

        def work(conn: sqlite3.Connection) -> bool:
            def step() -> bool:
                if not _owns(conn, key, holder, now):
                    return False
                _take(conn, key, holder, now + ttl)
                conn.execute("UPDATE journal_meta SET hand_off = NULL WHERE key = ?", (key,))
                return True
            return bool(_immediate(conn, step))

        return bool(await self._run(work))

    async def aclose(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await asyncio.to_thread(conn.close)
