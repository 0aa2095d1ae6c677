"""The store side of a session, decided here and performed by the shell: which handle the store
must hold and when it is told, the lease, the store going down and coming back, the
write-through of inputs (`writethrough.py` says which and why), and what is left in the store
when the session ends.

The engine calls these functions at fixed points: after every event (`after_event`), on the
store's answers (`on_event`), on the lease and retry timers, when an input is journaled
(`write_through`) and when entries leave the journal (`forget`). Like the guards, they are
functions of the engine: its `Durability` record holds the state, so a session pays for no
extra object. They act through the engine's steps (`_emit`, `_arm`, `_cancel`, `_notify`,
`_fire`, `_send`), so their actions come out in order with everything else the event caused.
For a session without a store (`persistence` None) each of those entry points does nothing.

One store operation is in flight at a time (`Durability.in_flight`); the latest handle replaces a
waiting save (only the latest matters). While the store is down the session goes on, degraded,
and only the retry timer probes it; when it answers again the store is told what it missed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs

from . import handoff, table, writethrough
from .actions import (
    ForgetHandle,
    ReleaseLease,
    RenewLease,
    SaveHandle,
    StoreAction,
    StoreDegraded,
    StoreRecovered,
    WriteJournal,
)
from .events import LeaseLost, StoreDone, StoreFailed, StoreOp, Timer
from .journal import OWED, Entry
from .persistence import StoredHandle
from .table import State, Trigger

if TYPE_CHECKING:
    from collections.abc import Iterable

    from .engine import Lifecycle


@attrs.define(kw_only=True, slots=True)
class Durability:
    """The store side: what was handed to the store, what waits, and whether it answers."""

    saved: str | None = attrs.field(default=None, repr=False)  # the handle last queued
    pending: StoreAction | None = None  # the next save/forget, once nothing is in flight
    in_flight: StoreAction | None = None  # the save/forget the store is performing
    renewing: bool = False
    degraded: bool = False
    failures: int = 0  # consecutive, for the retry backoff
    #: write-throughs with the store, oldest first (their entries wait to go on the wire);
    #: tuples here: empty ones cost a session nothing
    writing: tuple[tuple[Entry, ...], ...] = ()
    #: stored entries to forget: covered by a handle (only with a handle's save), or dropped
    covered: tuple[int, ...] = ()
    dropped: tuple[int, ...] = ()
    audio: str = ""  # the audio mark last handed to the store
    waiting: int = 0  # entries written through whose write the store has not confirmed
    fenced: bool = False  # another worker took the lease: never write again


def settled(s: Lifecycle) -> bool:
    """Whether the store holds the latest handle (nothing queued or in flight) or is down."""
    d = s.durable
    return d.degraded or (d.pending is None and d.in_flight is None)


def holds_sends(s: Lifecycle) -> bool:
    """Whether inputs wait for a write-through before they go on the wire (never once the
    session has ended: nothing will answer for them then)."""
    return s.durable.waiting > 0 and s.state not in table.FINAL


def holds_handle(s: Lifecycle) -> bool:
    """Whether the store holds the latest handle: settled, and not down."""
    return not s.durable.degraded and settled(s)


def restored(s: Lifecycle, handle: str) -> None:
    """A handle read back from the store was seeded: the store holds it already."""
    s.durable.saved = handle


def start(s: Lifecycle) -> None:
    """The session connects: keep its lease, renewed every third of its time to live."""
    if s.persistence is not None:
        s._arm(Timer.LEASE, s.persistence.lease_ttl / 3)


# -- the handle ------------------------------------------------------------------------------

def after_event(s: Lifecycle) -> None:
    """After each event: hand the store the latest resumable handle (or its removal)."""
    state = s.state
    if s.persistence is None or state in table.FINAL or state is State.HANDING_OFF:
        return  # a hand-over decides what the store holds
    _queue_latest(s)
    _store_next(s)


def _queue_latest(s: Lifecycle) -> None:
    """Make the latest handle (or its removal) the store's next write, if it changed; it
    replaces a waiting one: only the latest matters."""
    p, d = s.persistence, s.durable
    handle, at = s.resumption.handle, s.resumption.at
    if p is None or handle == d.saved:
        return
    d.saved = handle
    if handle is None or at is None:
        d.pending = ForgetHandle(key=p.key)
        return
    if isinstance(d.pending, SaveHandle) and d.pending.forget:
        d.covered = (*d.pending.forget, *d.covered)  # the newer handle covers them too
    d.pending = SaveHandle(key=p.key, record=latest_record(s, handle, at))


def latest_record(s: Lifecycle, handle: str, at: float) -> StoredHandle:
    """What the store keeps for `handle`, issued at engine time `at` (Unix times in it)."""
    issued = s._wall() - (s.now - at)
    return StoredHandle(handle=handle, issued_at=issued,
                        expires_at=issued + s.handle_validity,
                        generation=s.generation, compressed=s.span.compressed)


def _store_next(s: Lifecycle, *, probing: bool = False) -> None:
    """Send the waiting write, one at a time; while the store is down only the retry timer
    sends (`probing`)."""
    d = s.durable
    if d.pending is None or d.in_flight is not None or (d.degraded and not probing):
        return
    action, d.pending = d.pending, None
    if isinstance(action, SaveHandle):
        action = attrs.evolve(action, forget=(*action.forget, *d.covered, *d.dropped),
                              audio=audio_mark(s))
        d.covered = d.dropped = ()
    d.in_flight = action
    s._emit(action)


# -- the lease and the store's health --------------------------------------------------------

def _handing_over(s: Lifecycle) -> bool:
    """A hand-over is with the store or being taken back: it decides what the store holds."""
    h = s.handoff
    return h is not None and h.phase is not handoff.Phase.WAITING


def renew_lease(s: Lifecycle) -> None:
    """The lease timer: renew it (and refresh the audio mark while audio flows)."""
    p, d = s.persistence, s.durable
    if p is None or s.state in table.FINAL:
        return
    s._arm(Timer.LEASE, p.lease_ttl / 3)
    if _handing_over(s):
        return  # the hand-over released the lease: renewing would take it back
    if not d.degraded and not d.renewing:
        d.renewing = True
        s._emit(RenewLease(key=p.key, ttl=p.lease_ttl))
        mark = audio_mark(s)
        if mark is not None:  # audio flows: what a crash would cost, refreshed
            _write(s, WriteJournal(key=p.key, audio=mark), ())


def retry_store(s: Lifecycle) -> None:
    """The retry timer, while the store is down: try the waiting write again, or renew the
    lease as a probe when nothing waits."""
    p, d = s.persistence, s.durable
    if p is None or s.state in table.FINAL or _handing_over(s):
        return
    if d.pending is not None:
        _store_next(s, probing=True)
    elif d.in_flight is None and not d.renewing:
        d.renewing = True
        s._emit(RenewLease(key=p.key, ttl=p.lease_ttl))


def on_event(s: Lifecycle, event: StoreDone | StoreFailed | LeaseLost) -> None:
    """The store answered (or the lease is gone)."""
    d = s.durable
    if isinstance(event, LeaseLost):
        _lease_lost(s)
        return
    if event.op in (StoreOp.HAND_OVER, StoreOp.RECLAIM):
        handoff.on_store(s, event)
        return
    failed = None
    if event.op is StoreOp.RENEW:
        d.renewing = False
    elif event.op is StoreOp.WRITE:
        _written(s, ok=isinstance(event, StoreDone))
    elif d.in_flight is not None and d.in_flight.op is event.op:
        failed, d.in_flight = d.in_flight, None
    if isinstance(event, StoreFailed):
        if failed is not None and d.pending is None:
            d.pending = failed  # tried again by the retry timer
        degrade(s, event.error, retry=s.state not in table.FINAL)
        return
    d.failures = 0
    if d.degraded:
        d.degraded = False
        s._cancel(Timer.STORE_RETRY)
        s._notify(StoreRecovered())
        resync(s)
    _store_next(s)


def _lease_lost(s: Lifecycle) -> None:
    """Another worker holds the lease: a hand-over that was under way happened; otherwise
    this worker was cut off too long and must never write again."""
    d = s.durable
    d.renewing = False
    if s._takes(Trigger.HANDED_OFF):  # a hand-over under way: the other worker has it
        s._fire(Trigger.HANDED_OFF, {"by": "another worker took the lease"})
        return
    d.fenced = True
    if s._can(Trigger.FATAL_ERROR):
        key = s.persistence.key if s.persistence is not None else "?"
        s._fire(Trigger.FATAL_ERROR, {
            "reason": f"lease on session {key!r} lost: another worker holds it (this "
                      "worker was cut off from the store for longer than the lease); "
                      "the session goes on there"})


def degrade(s: Lifecycle, error: str, *, retry: bool = True) -> None:
    """A store operation failed: count it, say so once, and (`retry`) probe again after a
    backoff."""
    d = s.durable
    d.failures += 1
    if not d.degraded:
        d.degraded = True
        s._notify(StoreDegraded(error=error[:200]))
    if retry and s.persistence is not None:
        s._arm(Timer.STORE_RETRY, s.persistence.retry_delay(d.failures))


# -- write-through: what a crash may cost (`writethrough.py`) --------------------------------

def write_through(s: Lifecycle, entry: Entry) -> None:
    """Ask the store to hold `entry` before it goes on the wire; it and what follows wait
    for the answer. Not while the store is down (resynced when it answers again) nor while
    a hand-over decides what the store holds."""
    d, p = s.durable, s.persistence
    if p is None or d.degraded or d.fenced or _handing_over(s):
        return
    entry.storing = True
    d.waiting += 1
    _write(s, WriteJournal(key=p.key, put=(entry,), audio=audio_mark(s)), (entry,))


def _write(s: Lifecycle, action: WriteJournal, entries: tuple[Entry, ...]) -> None:
    d = s.durable
    if d.dropped:
        action = attrs.evolve(action, forget=(*action.forget, *d.dropped))
        d.dropped = ()
    d.writing = (*d.writing, entries)
    s._emit(action)


def _written(s: Lifecycle, *, ok: bool) -> None:
    """A `WriteJournal` was answered (they are answered in order): its entries go out, and
    the ones waiting behind them; on failure every waiting entry goes out unwritten."""
    d = s.durable
    entries, d.writing = (d.writing[0], d.writing[1:]) if d.writing else ((), ())
    if ok:
        for entry in entries:
            if entry.storing:
                entry.storing = False
                d.waiting -= 1
            entry.stored = True
    else:
        for entry in s.journal:
            entry.storing = False
        d.waiting = 0
    _release_waiting(s)


def _release_waiting(s: Lifecycle) -> None:
    """Send, in order, what waited for a write-through, up to the next one still waiting."""
    if not s.live:
        return  # the next connection's replay sends it
    generation = s.generation
    for entry in list(s.journal):
        if entry.storing:
            break
        if entry.sent_generation == generation or entry.seq == OWED or s._held(entry):
            continue
        s._send(entry, replay=entry.sends > 0, as_history=False)


def resync(s: Lifecycle) -> None:
    """The store answers again: write what it missed while it was down."""
    p, d = s.persistence, s.durable
    put = writethrough.unstored(s.journal)
    if p is not None and not d.fenced and (put or d.dropped):
        _write(s, WriteJournal(key=p.key, put=put, audio=audio_mark(s)), put)


def forget(s: Lifecycle, entries: Iterable[Entry], *, covered: bool) -> None:
    """Stored entries leaving the journal: covered ones are forgotten with the handle that
    covers them (never before: a crash in between would lose them), dropped ones with the
    next write."""
    if s.persistence is None:
        return
    seqs = [e.seq for e in entries if (e.stored or e.storing) and e.seq != OWED]
    if seqs and covered:
        s.durable.covered = (*s.durable.covered, *seqs)
    elif seqs:
        s.durable.dropped = (*s.durable.dropped, *seqs)


def audio_mark(s: Lifecycle) -> str | None:
    """The audio mark to send with a write, None when the store has it already."""
    now, wall = s.now, s._wall()
    mark = writethrough.audio_mark(s.journal, lambda t: wall - (now - t))
    if mark == s.durable.audio:
        return None
    s.durable.audio = mark
    return mark


# -- hand-over and the end -------------------------------------------------------------------

def handed_over(s: Lifecycle) -> None:
    """A hand-over was queued: it holds the latest handle and the journal, so nothing
    waiting for the store is written on its own."""
    d = s.durable
    d.pending = None
    d.saved = s.resumption.handle
    d.covered = d.dropped = ()


def at_end(s: Lifecycle) -> None:
    """The session ended: the latest handle to the store (a later process may resume it),
    then the lease back. Tried once even while the store is down."""
    p, d = s.persistence, s.durable
    if p is None or _handing_over(s):
        return  # the hand-over in flight decides what the store holds
    if not d.fenced:
        _queue_latest(s)
        if d.pending is not None:
            s._emit(d.pending)
            d.pending = None
        # the session is over: nothing of its journal is replayed by a later one
        s._emit(WriteJournal(key=p.key, clear=True, audio=""))
    s._emit(ReleaseLease(key=p.key))
