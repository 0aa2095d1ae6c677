"""Durable resumption handles and leases: memory (default), SQLite (one machine), Redis (many
workers; needs the `redis` extra, imported only when a `RedisStore` is made)."""

from ..core.persistence import StoredHandle
from ..errors import LeaseHeld, StoreError
from .base import Clock, HandleStore
from .memory import MemoryStore
from .redis import RedisStore
from .sqlite import SQLiteStore

__all__ = [
    "Clock",
    "HandleStore",
    "LeaseHeld",
    "MemoryStore",
    "RedisStore",
    "SQLiteStore",
    "StoreError",
    "StoredHandle",
]
