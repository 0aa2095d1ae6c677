"""What the core knows of handle persistence: the record a store keeps, and the settings.

The decisions (what to save or forget, when to renew the lease, when the store counts as down or
back, when the lease is lost) are `storesync.py`'s; the shell performs the store actions and feeds
back `StoreDone`, `StoreFailed` and `LeaseLost`. Times in a `StoredHandle` are Unix seconds:
stores are shared between processes and machines.
"""

from __future__ import annotations

import math
from typing import Any

import attrs

from ..errors import SettingsError


@attrs.frozen(kw_only=True)
class StoredHandle:
    """What a store keeps for one session key."""

    handle: str = attrs.field(repr=False)
    issued_at: float
    expires_at: float
    generation: int = 0
    compressed: bool = False

    def valid(self, now: float) -> bool:
        return now < self.expires_at


@attrs.frozen(kw_only=True)
class JournalWrite:
    """One atomic change to what a store keeps for a session key, made only by the key's owner
    (`HandleStore.write`). Entries are opaque text (the shell encodes them), keyed by their
    sequence number, which continues across workers."""

    #: a handle to save (never over a newer generation, as `save`)
    record: StoredHandle | None = None
    #: entries to add or replace
    put: tuple[tuple[int, str], ...] = ()
    #: entries to remove (covered by `record`, or reported dropped)
    forget: tuple[int, ...] = ()
    #: remove every entry first
    clear: bool = False
    #: the audio mark (encoded), None: unchanged, "": removed
    audio: str | None = None
    #: a hand-off marker (encoded): the lease is released in the same step, so the next worker
    #: takes the session at once; without one, any marker there is removed
    hand_off: str | None = None


@attrs.frozen(kw_only=True)
class StoredJournal:
    """What a store holds of a session beyond its handle: the journal entries in sequence
    order, the audio mark and the hand-off marker (each encoded, None when absent)."""

    entries: tuple[tuple[int, str], ...] = ()
    audio: str | None = None
    hand_off: str | None = None


def _duration(_inst: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
            or value <= 0:
        raise SettingsError(f"{attribute.name} must be a finite number of seconds > 0, "
                            f"got {value!r}")


@attrs.frozen(kw_only=True)
class Persistence:
    """Where a session's handle is kept (`key` in the store) and how its lease is held."""

    key: str = attrs.field()
    #: the lease runs out this long after the last renewal; it is renewed every third of it
    lease_ttl: float = attrs.field(default=30.0, validator=_duration)
    #: backoff between attempts while the store is down: base, doubling up to the maximum
    retry_base: float = attrs.field(default=0.25, validator=_duration)
    retry_max: float = attrs.field(default=5.0, validator=_duration)
    #: a store operation that takes longer counts as failed (a slow store is a store in trouble)
    store_timeout: float = attrs.field(default=2.0, validator=_duration)

    @key.validator
    def _check_key(self, attribute: attrs.Attribute[Any], value: object) -> None:
        if not isinstance(value, str) or not value:
            raise SettingsError(f"{attribute.name} must be a non-empty string, got {value!r}")

    def retry_delay(self, attempt: int) -> float:
        """Delay before store retry number `attempt` (1-based)."""
        return float(min(self.retry_max, self.retry_base * 2 ** max(0, attempt - 1)))


def lease_retry_after(left: float, expires_in: float) -> float | None:
    """While another holder has the lease and `left` seconds of the session's `lease_wait`
    remain: how long to wait before trying again (at most 0.25 s, so a lease released early is
    taken soon), or None to give up now (`LeaseHeld`), when the holder's lease outlasts the
    wait."""
    if min(expires_in, 0.05) > left:
        return None
    return min(max(expires_in, 0.01), 0.25)
