"""Durable resumption handles, input journals and leases: memory (default), SQLite (one machine),
Redis (many workers; needs the `redis` extra, imported only when a `RedisStore` is made). See
docs/fleet.md for hand-off between workers and what a crash costs."""

from ..core.persistence import JournalWrite, StoredHandle, StoredJournal
from ..errors import LeaseFenced, LeaseHeld, StoreError
from .base import Clock, HandleStore
from .memory import MemoryStore
from .redis import RedisStore
from .sqlite import SQLiteStore

__all__ = [
    "Clock",
    "HandleStore",
    "JournalWrite",
    "LeaseFenced",
    "LeaseHeld",
    "MemoryStore",
    "RedisStore",
    "SQLiteStore",
    "StoreError",
    "StoredHandle",
    "StoredJournal",
]
