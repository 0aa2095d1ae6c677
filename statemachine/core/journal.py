"""The input journal: every client message not yet covered by a resumable handle.

An entry leaves the journal in exactly one of two ways: a resumable handle covers it (pruned), or
it is reported dropped with a reason. Until then it is replayed after every resume.

A turn a handle holds before its reply ended (a mid-turn handle: 3.x; or, on Vertex, a turn the
index says was consumed) is `held`: the resumed session has it, with the part of the reply
streamed before the handle. It is not sent again; a resume asks the model to continue instead
(`clientContent` with `turnComplete` and no turns: generate from the accumulated prompt), and
it leaves the journal once answered and covered like any turn.

What a handle covers:
- transparent mode (Vertex): entries whose per-connection index is at most the server's
  `lastConsumedClientMessageIndex` on the connection that sent them;
- otherwise (Gemini API): turn inputs the server has answered (a `turnComplete` came after
  them), and other input sent on the connection at least one round trip before the resumable
  update arrived. Input sent later may have crossed the update on the wire (the Gemini API gives
  no way to know): it is kept and replayed, a possible duplicate rather than a loss.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator
from typing import Any

import attrs

from .events import InputKind
from .policy import AnsweredTurnReplay, ReplayPolicy

#: the sequence number of an entry no client message stands behind: a reply a mid-turn handle
#: holds that answers realtime input, not a turn (it is continued, never reported dropped)
OWED = 0


def inputs(entries: Iterable[Entry]) -> int:
    """How many of `entries` stand for client messages (the OWED entry does not)."""
    return sum(1 for e in entries if e.seq != OWED)


@attrs.define(kw_only=True, slots=True)
class Entry:
    """One client message and what is known of its fate."""

    seq: int
    kind: InputKind
    payload: Any = attrs.field(eq=False, repr=False)
    created_at: float
    turn_complete: bool
    trigger: bool
    tool_ids: tuple[str, ...] = ()
    sent_generation: int | None = None
    sent_index: int | None = None
    sent_at: float | None = None
    sends: int = 0
    answered: bool = False
    reply_text: str = ""
    #: the latest resumable handle holds this turn input (its reply was not complete then)
    held: bool = False
    #: characters of the reply that handle holds (what streamed before it)
    held_chars: int = 0
    #: it went out less than a round trip before a mid-turn handle: that handle may hold it
    crossed: bool = False
    #: written through to the store (`writethrough.py`), and while that write is under way
    stored: bool = False
    storing: bool = False


def _seq(entry: Entry) -> int:
    return entry.seq


@attrs.frozen(kw_only=True)
class ReplayItem:
    """One entry to send after a resume; `as_history` carries the earlier reply along with it."""

    entry: Entry
    as_history: bool = False
    repeated: bool = False
    #: a held turn: ask the model to continue (turnComplete, no turns) instead of resending it
    continuation: bool = False


@attrs.frozen(kw_only=True)
class ReplayPlan:
    items: tuple[ReplayItem, ...]
    dropped: tuple[tuple[Entry, str], ...]
    #: held turns whose reply arrived and that need nothing more: the handle has them
    settled: tuple[Entry, ...] = ()


#: covered audio entries a journal keeps to make again (`Journal.audio`): ten seconds of 20 ms
#: chunks, what a session holds between two handles on the 2.5 models
SPARE_AUDIO = 512


class Journal:
    """Entries in sequence order; linear on purpose: it holds seconds of input, not hours.

    Audio entries a handle covered are made again for the next chunks (`audio`): an entry
    lives seconds, long enough for the garbage collector to move it to its oldest generation,
    and a full collection (60-120 ms for every session of a process) comes each time those
    moves add up to a quarter of the objects there. Made again, they never move: at 100
    sessions full collections went from one every 20 s to none in the benchmark's window."""

    def __init__(self) -> None:
        self._entries: list[Entry] = []
        self._released_seq = 0  # entries up to this seq have no payload to release
        self._spare: list[Entry] = []

    def audio(self, seq: int, payload: Any, created_at: float) -> Entry:
        """A new audio entry: a covered one made again when there is one."""
        if not self._spare:
            return Entry(seq=seq, kind=InputKind.AUDIO, payload=payload, created_at=created_at,
                         turn_complete=False, trigger=False)
        entry = self._spare.pop()
        entry.seq, entry.payload, entry.created_at = seq, payload, created_at
        entry.sent_generation = entry.sent_index = entry.sent_at = None
        entry.sends = 0
        entry.crossed = entry.stored = False
        return entry

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[Entry]:
        return iter(self._entries)

    def append(self, entry: Entry) -> None:
        self._entries.append(entry)

    def mark_sent(self, entry: Entry, generation: int, index: int) -> None:
        """Handed to the connection's writer; `sent_at` is set once it is written (`written`):
        until then no handle can cover it."""
        entry.sent_generation = generation
        entry.sent_index = index
        entry.sent_at = None
        entry.sends += 1
        entry.crossed = False

    @staticmethod
    def written(entry: Entry, generation: int, at: float) -> None:
        """The writer put `entry` on the wire of `generation` at `at`."""
        if entry.sent_generation == generation:
            entry.sent_at = at

    def release_stale_audio(self, before: float) -> None:
        """Let go of the payload of audio created before `before` (now minus
        `ReplayPolicy.audio_staleness`) that is on the wire already or was never sent: a resume
        drops such audio (`plan_replay`), so nothing reads its payload again. The entry stays
        until a handle covers it or the drop is reported. Between two handles a session holds
        seconds of 20 ms chunks: their buffers weigh on memory and on the garbage collector,
        whose full collections pause every session of the process."""
        entries = self._entries
        # entries are in sequence order: start after the last one already looked at
        waiting = False  # audio handed to a writer, not written yet: looked at again next time
        for i in range(bisect.bisect_right(entries, self._released_seq, key=_seq), len(entries)):
            entry = entries[i]
            if entry.created_at >= before:
                break
            if entry.kind is InputKind.AUDIO and entry.payload is not None:
                if entry.sent_at is None and entry.sent_generation is not None:
                    waiting = True
                    continue
                entry.payload = None
            if not waiting:
                self._released_seq = entry.seq

    def has_turn_input(self) -> bool:
        """Whether turn input went out and no handle covers it yet (no safe point then). Input
        held back while draining has not gone out and does not count."""
        return any(e.trigger and e.sent_generation is not None for e in self._entries)

    def mark_answered(self, reply_text: str) -> bool:
        """A `turnComplete` arrived: the tool responses sent before it and the oldest unanswered
        turn input that was sent are answered. True when something was."""
        first, any_answered = True, False
        for entry in self._entries:
            if entry.answered or not entry.trigger or entry.sent_generation is None:
                continue
            if entry.kind is InputKind.TOOL_RESPONSE:
                entry.answered = any_answered = True
            elif first:
                entry.answered = any_answered = True
                entry.reply_text = reply_text
                first = False
        return any_answered

    def prune_by_index(self, generation: int, last_consumed: int,
                       reply: tuple[float, int] | None = None) -> list[Entry]:
        """Transparent mode: drop what the server says it consumed on this connection, except
        turn input whose reply has not ended: the handle holds it (`held`), the reply is owed.
        `reply`: (when its first message arrived, characters so far) of a reply under way."""
        def consumed(e: Entry) -> bool:
            if e.sent_generation != generation:
                return False
            return e.seq == OWED or (e.sent_index is not None and e.sent_index <= last_consumed)

        taken = [e for e in self._entries if e.trigger and not e.answered
                 and e.kind is not InputKind.TOOL_RESPONSE and consumed(e)]
        self._hold(taken, reply[1] if reply else 0)
        if reply is not None and not taken:
            self._owe_reply(generation, *reply)
        return self._prune(lambda e: consumed(e) and (
            e.answered or not e.trigger or e.kind is InputKind.TOOL_RESPONSE))

    def hold_in_flight(self, generation: int, began_at: float, sent_before: float,
                       reply_chars: int) -> list[Entry]:
        """Gemini API: a resumable handle arrived while a reply was under way (3.x issues them
        mid-turn), so it holds `reply_chars` of that reply, and what the server had when it
        issued the handle: input that went out before `sent_before` (the handle's arrival less
        a round trip). The oldest unanswered turn input is held if it went out by then (the
        reply is owed to it), else replayed; tool responses that did are covered (returned,
        removed). With no turn input unanswered, the reply answers realtime input (speech the
        service's activity detection ended): an `OWED` entry stands for it."""
        turn_found = False
        for e in self._entries:
            if (not e.trigger or e.answered or e.sent_generation != generation
                    or e.kind is InputKind.TOOL_RESPONSE):
                continue
            turn_found = True
            if e.seq == OWED or (e.sent_at is not None and e.sent_at < sent_before):
                self._hold([e], reply_chars)
            else:
                e.crossed = True
            break
        if not turn_found:
            self._owe_reply(generation, began_at, reply_chars)
        return self._prune(lambda e: e.kind is InputKind.TOOL_RESPONSE
                           and e.sent_generation == generation
                           and e.sent_at is not None and e.sent_at < sent_before)

    def _owe_reply(self, generation: int, began_at: float, reply_chars: int) -> None:
        if any(e.seq == OWED and not e.answered for e in self._entries):
            return
        self._entries.append(Entry(
            seq=OWED, kind=InputKind.CONTENT, payload={"turn_complete": True},
            created_at=began_at, turn_complete=True, trigger=True, sent_generation=generation,
            sent_at=began_at, sends=1, held=True, held_chars=reply_chars))

    @staticmethod
    def _hold(entries: list[Entry], reply_chars: int) -> None:
        for e in entries:
            e.held = True
            e.held_chars = reply_chars

    def prune_covered(self, generation: int, sent_before: float) -> list[Entry]:
        """Gemini API: a resumable handle arrived on `generation`. Answered turn input is
        covered; other input only if it went out before `sent_before` (the update's arrival
        minus one round trip: anything later may have crossed the update on the wire)."""
        return self._prune(
            lambda e: e.sent_generation == generation
            and (
                e.answered
                if e.trigger
                else e.sent_at is not None and e.sent_at < sent_before
            )
        )

    def _prune(self, covered: Any) -> list[Entry]:
        gone = [e for e in self._entries if covered(e)]
        if gone:
            self._entries = [e for e in self._entries if not covered(e)]
            spare = self._spare
            for e in gone:
                # written (no send of it is pending anywhere): nothing refers to it any more
                if e.kind is InputKind.AUDIO and e.sent_at is not None \
                        and len(spare) < SPARE_AUDIO:
                    e.payload = None
                    spare.append(e)
        return gone

    def remove(self, entries: list[Entry]) -> None:
        doomed = {id(e) for e in entries}
        self._entries = [e for e in self._entries if id(e) not in doomed]

    def take_all(self) -> list[Entry]:
        entries, self._entries = self._entries, []
        return entries

    def plan_replay(self, now: float, policy: ReplayPolicy) -> ReplayPlan:
        """What to send after a resume, in order, and what to drop (with the reason)."""
        items: list[ReplayItem] = []
        dropped: list[tuple[Entry, str]] = []
        latest_video = max(
            (e.seq for e in self._entries if e.kind is InputKind.VIDEO), default=None
        )
        history_turn = False
        settled: list[Entry] = []
        continuation: ReplayItem | None = None  # sent after the tool responses that follow it
        # only the latest turn the handle holds unanswered is owed a reply: the model had
        # moved on from the ones before it (a later turn cut their replies)
        owed = [e for e in self._entries if e.held and e.trigger and not e.answered]
        for entry in self._entries:
            if continuation is not None and entry.kind is not InputKind.TOOL_RESPONSE:
                items.append(continuation)
                continuation = None
            if entry.held and entry.trigger:
                if not entry.answered:
                    if entry is owed[-1]:
                        continuation = ReplayItem(entry=entry, continuation=True)
                    else:
                        settled.append(entry)
                elif policy.answered_turns is AnsweredTurnReplay.REPEAT and entry.seq != OWED:
                    continuation = ReplayItem(entry=entry, continuation=True, repeated=True)
                elif len(entry.reply_text) > entry.held_chars:
                    items.append(ReplayItem(entry=entry, as_history=True))  # the reply's rest
                else:
                    settled.append(entry)
            elif entry.kind is InputKind.AUDIO and now - entry.created_at > policy.audio_staleness:
                dropped.append(
                    (entry, f"audio older than the replay window ({policy.audio_staleness:g}s)")
                )
            elif entry.kind is InputKind.VIDEO and entry.seq != latest_video:
                dropped.append((entry, "video frame superseded by a later frame"))
            elif entry.answered and entry.trigger:
                if (
                    policy.answered_turns is AnsweredTurnReplay.HISTORY
                    and entry.kind in (InputKind.CONTENT, InputKind.TEXT)
                    and entry.reply_text
                ):
                    items.append(ReplayItem(entry=entry, as_history=True))
                    history_turn = True
                elif entry.kind is InputKind.TOOL_RESPONSE and history_turn and not entry.tool_ids:
                    # with ids, a call the resumed session knows waits for its response (3.x);
                    # one it does not know was dropped already (`_cancel_unknown_calls`)
                    dropped.append((entry, "answered tool response: covered by history replay"))
                else:
                    items.append(ReplayItem(entry=entry, repeated=True))
            else:
                items.append(ReplayItem(entry=entry, repeated=entry.crossed and entry.trigger))
        if continuation is not None:
            items.append(continuation)
        self.remove([e for e, _ in dropped] + settled)
        return ReplayPlan(items=tuple(items), dropped=tuple(dropped), settled=tuple(settled))
