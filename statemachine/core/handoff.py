"""Planned hand-off to another worker, and taking a session over: the core's decisions.

`LiveSession.hand_off()` feeds `HandOff`. From then on new turns are held back (journaled, not
sent: they would start a reply the hand-off cuts), and at the first **safe point** (no reply in
flight, the interaction idle, no tool call waiting for its response, no turn input the latest
handle does not cover, and a valid handle, or none needed because the server holds nothing
yet) the table's `hand_off` moves the session to `handing_off`: the connection is closed and
one atomic store write (`HandOver`) holds the latest handle, every journal entry no handle
covers (audio included, so nothing taken in is lost) and a hand-off marker, and releases the
lease. If no safe point comes within the limit, the hand-off happens then and says what it
cut.

Input that arrives after the hand-over was queued is not in it: once the store confirms, it is
reported dropped (`InputDropped`; audio as one `AudioGap`), and the session ends (`HandedOff`,
`Ended`). If the store fails, the outcome is unknown (the write may have landed and its answer
been lost), so the session asks the store to give its lease back (`Reclaim`): taken back, the
session goes on where it was (`hand_off_failed`: it reconnects and replays everything, the
later input included); taken by another worker meanwhile, the hand-off happened (`handed_off`).
A store that answers neither leaves the session live here, degraded, still probing: a session
is never gone from both workers.

The worker that takes the key over reads the handle and the journal back (`restored`) and
replays them as a local resume would (`take_over`).

The pure decisions come first below; then the steps, functions of the engine like the guards
(the state is its `HandOffRequest`), acting through its outputs like `storesync.py`.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from typing import TYPE_CHECKING

import attrs

from ..errors import LocalMisuse, SessionClosed
from . import storesync, table
from .actions import (
    AudioGap,
    Ended,
    HandedOff,
    HandOffFailed,
    HandOver,
    Reclaim,
    ReplyInterrupted,
    TookOver,
)
from .bookkeeping import Turn
from .events import HandOff, InputKind, StoreDone, StoreFailed, StoreOp, Timer
from .journal import OWED, Entry, inputs
from .table import Guard, State, Trigger

if TYPE_CHECKING:
    from .engine import Lifecycle


class Phase(enum.StrEnum):
    WAITING = "waiting"  # for a safe point or the limit
    WRITING = "writing"  # the hand-over is with the store
    RECLAIMING = "reclaiming"  # the hand-over failed: taking the lease back


@attrs.define(kw_only=True, slots=True)
class HandOffRequest:
    """A hand-off asked for (`HandOff`) and not failed: its limit, and how far it got."""

    requested_at: float
    limit: float
    #: the limit passed while no connection was up: hand off as soon as one is
    limit_passed: bool = False
    phase: Phase = Phase.WAITING
    #: entries up to this sequence number are in the hand-over
    snapshot: int = 0
    transferred: int = 0
    cut: str = ""
    error: str = ""  # why the hand-over failed, while the lease is being taken back


def drain_limit(deadline: float, store_timeout: float) -> float:
    """The hand-off limit for each session of a drain that must be done in `deadline` seconds:
    80% of it, or less when the store's write needs more of the rest (`store_timeout`); never
    below 50 ms."""
    return max(0.05, min(deadline * 0.8, deadline - store_timeout))


def cut_by_limit(reply_in_flight: bool, busy: bool, pending_calls: Iterable[str],
                 unanswered: int) -> str:
    """What handing off now cuts, in words ("" at a safe point)."""
    parts = []
    if reply_in_flight:
        parts.append("a reply in flight (its turn is replayed on the next worker)")
    elif busy:
        parts.append("the model's background work (extended thinking)")
    calls = sorted(pending_calls)
    if calls:
        parts.append(f"{len(calls)} tool call(s) waiting for a response ({', '.join(calls)}): "
                     "the next worker's model asks again")
    if unanswered and not reply_in_flight:
        parts.append(f"{unanswered} turn input(s) sent and not answered yet (replayed)")
    return "; ".join(parts)


def after_snapshot(entries: Iterable[Entry], snapshot: int) -> tuple[list[Entry], list[Entry]]:
    """Entries that came after the hand-over was queued: (audio, the rest)."""
    audio: list[Entry] = []
    rest: list[Entry] = []
    for entry in entries:
        if entry.seq > snapshot and entry.seq != OWED:
            (audio if entry.kind is InputKind.AUDIO else rest).append(entry)
    return audio, rest


def unknown_call_responses(entries: Iterable[Entry]) -> list[Entry]:
    """Restored tool responses to calls the handle the new worker resumes cannot know: they
    answer calls issued after a turn input the handle does not hold (still in the journal,
    unanswered and not held), so the resumed session never issued them. A local resume drops
    them too (`toolcalls.cancel_unknown`); the replayed turn makes the model ask again."""
    unknown: list[Entry] = []
    open_turn = False
    for entry in entries:
        if entry.kind is InputKind.TOOL_RESPONSE:
            if open_turn:
                unknown.append(entry)
        elif entry.trigger and not entry.answered and not entry.held:
            open_turn = True
    return unknown


def asked(s: Lifecycle, event: HandOff) -> None:
    """`hand_off()` was called: hold new turns, and hand off at the first safe point or at
    the limit."""
    if s.persistence is None:
        raise LocalMisuse("hand_off() needs a session_key and a store the next worker shares "
                          "(RedisStore, SQLiteStore): connect(..., store=..., session_key=...)")
    if s.state is table.INITIAL:
        raise LocalMisuse("cannot hand off before connect(): open the session first")
    if s.state in table.FINAL:
        raise SessionClosed(f"cannot hand off: the session has ended "
                            f"({s.end.reason if s.end else 'terminated'})")
    if s.handoff is not None:
        return  # one is under way: its outcome answers this call too
    s.handoff = HandOffRequest(requested_at=s.now, limit=event.limit)
    s._arm(Timer.HAND_OFF, event.limit)
    check(s)  # not live (connecting, resuming): at the next setup


def check(s: Lifecycle) -> None:
    """Hand off if nothing would be cut now (guard `at_hand_off_point` of `hand_off`)."""
    h = s.handoff
    if h is not None and h.phase is Phase.WAITING:
        s._offer(Trigger.HAND_OFF, {"limit": h.limit, "journal": len(s.journal)})


def live_again(s: Lifecycle) -> None:
    """A connection came up with a hand-off waiting: its limit may have passed meanwhile."""
    if s.handoff is None:
        return
    if s.handoff.limit_passed:
        at_limit(s)
    else:
        check(s)


def at_limit(s: Lifecycle) -> None:
    """The limit passed with no safe point: hand off now, saying what that cuts."""
    h = s.handoff
    if h is None or h.phase is not Phase.WAITING:
        return
    if s.state not in table.LIVE:  # no connection yet: hand off as soon as one is up
        h.limit_passed = True
        return
    unanswered = sum(1 for e in s.journal if e.trigger and not e.answered
                     and e.sent_generation is not None)
    h.cut = cut_by_limit(s.turn.in_flight, s.turn.busy, s.calls.pending, unanswered)
    s._fire(Trigger.HAND_OFF_DEADLINE, {"limit": h.limit, "cut": h.cut})


def enter(s: Lifecycle, source: State, trigger: Trigger) -> None:
    """Entry action of `handing_off`: close the connection and give the store, in one
    write, the latest handle and every entry no handle covers."""
    h, p = s.handoff, s.persistence
    assert h is not None and p is not None
    if s.turn.in_flight and source in table.LIVE:
        s._notify(ReplyInterrupted(generation=s.generation, reason=trigger.value))
    for timer in (Timer.HAND_OFF, Timer.ROTATE, Timer.BACKOFF, Timer.SETUP, Timer.TOKEN):
        s._cancel(timer)
    s._leave_connection("handed off to another worker")
    s.turn = Turn()
    record = None
    if s._check(Guard.HANDLE_VALID):
        assert s.resumption.handle is not None and s.resumption.at is not None
        record = storesync.latest_record(s, s.resumption.handle, s.resumption.at)
    entries = tuple(s.journal)
    for entry in entries:
        entry.stored = True  # the hand-over replaces the store's journal with these
    h.snapshot, h.transferred, h.phase = s._next_seq, inputs(entries), Phase.WRITING
    storesync.handed_over(s)
    s._emit(HandOver(key=p.key, record=record, entries=entries, cut=h.cut))


def on_store(s: Lifecycle, event: StoreDone | StoreFailed) -> None:
    """The store answered the hand-over, or the request to take the lease back."""
    h, p = s.handoff, s.persistence
    if h is None or p is None or s.state is not State.HANDING_OFF:
        return
    if event.op is StoreOp.HAND_OVER:
        if isinstance(event, StoreDone):
            s._fire(Trigger.HANDED_OFF, {"transferred": h.transferred})
        else:  # the write may have landed and its answer been lost: ask for the lease back
            h.phase = Phase.RECLAIMING
            s._emit(Reclaim(key=p.key, ttl=p.lease_ttl))
            h.error = event.error[:200]
        return
    error = h.error
    if isinstance(event, StoreDone):
        _failed(s, f"the store did not take the hand-off ({error}); the session "
                     "took its lease back and goes on here: try again later")
        storesync.resync(s)
        return
    _failed(s,
        f"the store did not take the hand-off ({error}) and cannot be asked whether another "
        f"worker took it ({event.error[:200]}); the session goes on here, and ends if the "
        "store later says another worker holds it")
    storesync.degrade(s, event.error)


def _failed(s: Lifecycle, reason: str) -> None:
    s.handoff = None
    s._notify(HandOffFailed(reason=reason))
    s._fire(Trigger.HAND_OFF_FAILED, {"reason": reason})


def end(s: Lifecycle) -> Ended:
    """The store holds the session: what came after the hand-over is reported dropped, then
    the application is told where the session went. Returns the session's end."""
    h, p = s.handoff, s.persistence
    assert h is not None and p is not None
    audio, rest = after_snapshot(s.journal.take_all(), h.snapshot)
    for entry in rest:
        s._drop(entry, "it came after the session was handed off to another worker: "
                       "send it there", remove=False)
    if audio:
        now, wall = s.now, s._wall()
        s._count(dropped=len(audio))
        s._notify(AudioGap(
            since=wall - (now - audio[0].created_at), until=wall - (now - audio[-1].created_at),
            chunks=len(audio), at_least=False,
            reason="sent after the session was handed off to another worker"))
    s._notify(HandedOff(key=p.key, transferred=h.transferred,
                        resumable=s._check(Guard.HANDLE_VALID), cut=h.cut))
    return Ended(reason=f"handed off to another worker: connect with session_key "
                        f"{p.key!r} to go on", by_application=True)


def take_over(s: Lifecycle, entries: list[Entry], *, handed_off: bool,
              audio: tuple[float, float, int] | None) -> None:
    """Seed the journal another worker left in the store (see `Lifecycle.restore_journal`)."""
    p = s.persistence
    assert p is not None
    if not entries and not handed_off and audio is None:
        return  # the store held nothing of another worker's: nothing was taken over
    entries = sorted(entries, key=lambda e: e.seq)
    for entry in entries:
        entry.sent_generation = entry.sent_index = entry.sent_at = None
        entry.stored, entry.storing = True, False
        s.journal.append(entry)
    s._next_seq = max([s._next_seq, *(e.seq for e in entries)])
    for entry in unknown_call_responses(entries):
        s._drop(entry, "tool response to a call the resumed session never issued: not "
                       "replayed (the model asks again)")
    s.durable.audio = "(the previous worker's)"  # the first write replaces that mark
    s._notify(TookOver(key=p.key, handed_off=handed_off, restored=inputs(entries)))
    if audio is not None and audio[2] > 0:
        s._notify(AudioGap(
            since=audio[0], until=audio[1], chunks=audio[2], at_least=True,
            reason="the worker that held the session stopped without a hand-off; audio is "
                   "not stored per chunk"))
