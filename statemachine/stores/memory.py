"""`MemoryStore`: handles and leases in this process's memory, the default."""

from __future__ import annotations

import time

from ..core.persistence import StoredHandle
from ..errors import LeaseHeld
from .base import Clock


class MemoryStore:
    """In-process store: the default. Leases still apply between sessions of one process."""

    def __init__(self, clock: Clock = time.time) -> None:
        self._clock = clock
        self._handles: dict[str, StoredHandle] = {}
        self._leases: dict[str, tuple[str, float]] = {}

    async def load(self, key: str) -> StoredHandle | None:
        record = self._handles.get(key)
        if record is not None and not record.valid(self._clock()):
            del self._handles[key]
            return None
        return record

    async def save(self, key: str, record: StoredHandle) -> None:
        current = self._handles.get(key)
        if current is None or current.generation <= record.generation:
            self._handles[key] = record

    async def delete(self, key: str) -> None:
        self._handles.pop(key, None)

    async def acquire(self, key: str, holder: str, ttl: float) -> None:
        now = self._clock()
        current = self._leases.get(key)
        if current is not None and current[0] != holder and current[1] > now:
            raise LeaseHeld(key, current[0], current[1] - now)
        self._leases[key] = (holder, now + ttl)

    async def renew(self, key: str, holder: str, ttl: float) -> bool:
        now = self._clock()
        current = self._leases.get(key)
        if current is not None and current[0] != holder and current[1] > now:
            return False
        self._leases[key] = (holder, now + ttl)
        return True

    async def release(self, key: str, holder: str) -> None:
        if self._leases.get(key, ("",))[0] == holder:
            del self._leases[key]

    async def aclose(self) -> None:
        pass
