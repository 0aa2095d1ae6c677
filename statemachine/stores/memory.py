"""`MemoryStore`: handles, leases and journals in this process's memory, the default."""

from __future__ import annotations

import time

from ..core.persistence import JournalWrite, StoredHandle, StoredJournal
from ..errors import LeaseFenced, LeaseHeld
from .base import Clock


class _Journal:
    __slots__ = ("audio", "entries", "hand_off")

    def __init__(self) -> None:
        self.entries: dict[int, str] = {}
        self.audio: str | None = None
        self.hand_off: str | None = None


class MemoryStore:
    """In-process store: the default. Leases still apply between sessions of one process.
    Each method runs without awaiting, so each is atomic on the event loop."""

    def __init__(self, clock: Clock = time.time) -> None:
        self._clock = clock
        self._handles: dict[str, StoredHandle] = {}
        self._leases: dict[str, tuple[str, float]] = {}
        self._owners: dict[str, str] = {}
        self._journals: dict[str, _Journal] = {}

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

    def _held_by_other(self, key: str, holder: str) -> tuple[str, float] | None:
        current = self._leases.get(key)
        now = self._clock()
        if current is not None and current[0] != holder and current[1] > now:
            return current
        return None

    async def acquire(self, key: str, holder: str, ttl: float) -> None:
        current = self._held_by_other(key, holder)
        if current is not None:
            raise LeaseHeld(key, current[0], current[1] - self._clock())
        self._leases[key] = (holder, self._clock() + ttl)
        self._owners[key] = holder

    def _owns(self, key: str, holder: str) -> bool:
        return self._held_by_other(key, holder) is None \
            and self._owners.get(key, holder) == holder

    async def renew(self, key: str, holder: str, ttl: float) -> bool:
        if not self._owns(key, holder):
            return False
        self._leases[key] = (holder, self._clock() + ttl)
        self._owners[key] = holder
        return True

    async def release(self, key: str, holder: str) -> None:
        if self._leases.get(key, ("",))[0] == holder:
            del self._leases[key]

    async def write(self, key: str, holder: str, change: JournalWrite) -> None:
        if not self._owns(key, holder):
            raise LeaseFenced(key, holder)
        self._owners[key] = holder
        if change.record is not None and change.record.valid(self._clock()):
            await self.save(key, change.record)
        journal = self._journals.setdefault(key, _Journal())
        if change.clear:
            journal.entries.clear()
        for seq in change.forget:
            journal.entries.pop(seq, None)
        journal.entries.update(change.put)
        if change.audio is not None:
            journal.audio = change.audio or None
        journal.hand_off = change.hand_off
        if change.hand_off is not None:
            await self.release(key, holder)
        if not journal.entries and journal.audio is None and journal.hand_off is None:
            del self._journals[key]

    async def load_journal(self, key: str) -> StoredJournal:
        journal = self._journals.get(key)
        if journal is None:
            return StoredJournal()
        return StoredJournal(entries=tuple(sorted(journal.entries.items())),
                             audio=journal.audio, hand_off=journal.hand_off)

    async def reclaim(self, key: str, holder: str, ttl: float) -> bool:
        if not await self.renew(key, holder, ttl):
            return False
        journal = self._journals.get(key)
        if journal is not None:
            journal.hand_off = None
        return True

    async def aclose(self) -> None:
        pass
