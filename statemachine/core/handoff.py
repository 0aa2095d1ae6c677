"""Planned hand-off to another worker, and taking a session over: the core's decisions.

`LiveSession.hand_off()` feeds `HandOff`. From then on new turns are held back (journaled, not
sent: they would start a reply the hand-off cuts), and at the first **safe point** (no reply in
flight, no tool call waiting for its response, no turn input the latest handle does not cover,
and a valid handle, or none needed because the server holds nothing yet) the table's
`hand_off` moves the session to `handing_off`: the connection is closed and one atomic store
write (`HandOver`) holds the latest handle, every journal entry no handle covers (audio
included, so nothing taken in is lost) and a hand-off marker, and releases the lease. If no
safe point comes within the limit, the hand-off happens then and says what it cut.

Input that arrives after the hand-over was queued is not in it: once the store confirms, it is
reported dropped (`InputDropped`; audio as one `AudioGap`), and the session ends (`HandedOff`,
`Ended`). If the store fails, the outcome is unknown (the write may have landed and its answer
been lost), so the session asks the store to give its lease back (`Reclaim`): taken back, the
session goes on where it was (`hand_off_failed`: it reconnects and replays everything, the
later input included); taken by another worker meanwhile, the hand-off happened (`handed_off`).
A store that answers neither leaves the session live here, degraded, still probing: a session
is never gone from both workers.

The worker that takes the key over reads the handle and the journal back (`restored`) and
replays them as a local resume would.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable

import attrs

from .events import InputKind
from .journal import OWED, Entry


class Phase(enum.StrEnum):
    WAITING = "waiting"  # for a safe point or the limit
    WRITING = "writing"  # the hand-over is with the store
    RECLAIMING = "reclaiming"  # the hand-over failed: taking the lease back


@attrs.define(kw_only=True, slots=True)
class HandOffRequest:
    requested_at: float
    limit: float
    phase: Phase = Phase.WAITING
    #: entries up to this sequence number are in the hand-over
    snapshot: int = 0
    transferred: int = 0
    cut: str = ""
    error: str = ""  # why the hand-over failed, while the lease is being taken back


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
    them too (`Lifecycle._cancel_unknown_calls`); the replayed turn makes the model ask again."""
    unknown: list[Entry] = []
    open_turn = False
    for entry in entries:
        if entry.kind is InputKind.TOOL_RESPONSE:
            if open_turn:
                unknown.append(entry)
        elif entry.trigger and not entry.answered and not entry.held:
            open_turn = True
    return unknown
