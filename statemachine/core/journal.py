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
  them) and every input sent on the connection before one of them (the server takes a
  connection's input in order: it had all of it when it answered), and other input sent on the
  connection at least one round trip before the resumable update arrived. Input sent later may
  have crossed the update on the wire (the Gemini API gives no way to know): it is kept and
  replayed, a possible duplicate rather than a loss.
"""

from __future__ import annotations

import bisect
from array import array
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import attrs

from .events import InputKind
from .policy import AnsweredTurnReplay, ReplayPolicy

#: the sequence number of an entry no client message stands behind: a reply a mid-turn handle
#: holds that answers realtime input, not a turn (it is continued, never reported dropped)
OWED = 0


#: how long past the replay window a payload may stay before it is released: releases come in
#: batches (a few chunks each), not at every chunk
RELEASE_SLACK = 0.1


def inputs(entries: Iterable[Entry]) -> int:
    """How many client messages `entries` stand for (a run of stale audio stands for `run`; the
    OWED entry for none)."""
    return sum(e.run for e in entries if e.seq != OWED)


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
    #: how many consecutive inputs (seq, seq + 1, ...) it stands for: audio past the replay
    #: window, its payload released, is folded into one entry (`Journal.release_stale_audio`)
    run: int = 1


#: `Packed.tail` when payloads are kept whole (they are not pairs with a common second part)
_WHOLE: Any = object()


class Packed:
    """The payload of a packed run: consecutive audio chunks written on one connection, within
    the replay window, held compactly until a handle covers them or they go stale. An entry per
    20 ms chunk (its slots, two floats, two ints, the payload's tuple) weighed several hundred
    bytes beside 640 of PCM; here a chunk is its payload's first part (the bytes the
    application sent, not copied) and two doubles. The run's entry keeps what the chunks share
    (connection, sends) and its first seq and creation time, its last send time and index
    (indices are consecutive: index k is `sent_index - run + 1 + k`)."""

    __slots__ = ("created", "heads", "sent", "tail")

    def __init__(self, tail: Any) -> None:
        #: the second part every payload shares (a journaled chunk's MIME text), or `_WHOLE`
        self.tail = tail
        self.heads: list[Any] = []  # each payload, or its first part
        self.created = array("d")
        self.sent = array("d")

    def add(self, entry: Entry) -> None:
        self.heads.append(entry.payload if self.tail is _WHOLE else entry.payload[0])
        self.created.append(entry.created_at)
        assert entry.sent_at is not None
        self.sent.append(entry.sent_at)

    def payload(self, k: int) -> Any:
        """Chunk k's payload as it was journaled."""
        head = self.heads[k]
        return head if self.tail is _WHOLE else (head, self.tail)

    def cut(self, m: int) -> None:
        """Forget the first m chunks."""
        del self.heads[:m], self.created[:m], self.sent[:m]


def _pair(payload: Any) -> bool:
    return type(payload) is tuple and len(payload) == 2


def _packable(entry: Entry) -> bool:
    """Audio written on its connection, its own entry, nothing pending on it (a store write)."""
    return (entry.kind is InputKind.AUDIO and entry.payload is not None
            and type(entry.payload) is not Packed and entry.sent_at is not None
            and entry.sent_index is not None and entry.seq != OWED
            and not (entry.stored or entry.storing))


def _joins(run: Entry, entry: Entry) -> bool:
    """Whether `entry` can join the packed run (or packable entry) `run`: the next input, sent
    next on the same connection as often, with a payload of the same shape."""
    if not ((type(run.payload) is Packed or _packable(run))
            and run.seq + run.run == entry.seq and run.sent_generation == entry.sent_generation
            and run.sends == entry.sends and run.sent_index is not None
            and run.sent_index + 1 == entry.sent_index and _packable(entry)):
        return False
    payload = run.payload
    tail = payload.tail if type(payload) is Packed else (
        payload[1] if _pair(payload) else _WHOLE)
    if tail is _WHOLE:
        return not _pair(entry.payload)
    return _pair(entry.payload) and entry.payload[1] == tail


def _member(entry: Entry, k: int) -> Entry:
    """Chunk k of a packed run, as an entry of its own."""
    packed: Packed = entry.payload
    assert entry.sent_index is not None
    return attrs.evolve(entry, seq=entry.seq + k, run=1, payload=packed.payload(k),
                        created_at=packed.created[k], sent_at=packed.sent[k],
                        sent_index=entry.sent_index - entry.run + 1 + k)


def _split(entry: Entry, m: int) -> Entry:
    """Take the first m chunks off a packed run: they come back as a run of their own without
    payloads (stale or covered: nothing reads them again); `entry` keeps the rest."""
    packed: Packed = entry.payload
    assert entry.sent_index is not None
    first = attrs.evolve(entry, payload=None, run=m, sent_at=packed.sent[m - 1],
                         sent_index=entry.sent_index - entry.run + m)
    packed.cut(m)
    entry.seq += m
    entry.run -= m
    entry.created_at = packed.created[0]
    if entry.run == 1:  # one chunk left: an entry like any other
        entry.payload = packed.payload(0)
    return first


def _members(entry: Entry) -> list[Entry]:
    """One entry per input a run stands for (copies; the entry itself when it stands for one)."""
    if type(entry.payload) is Packed:
        return [_member(entry, k) for k in range(entry.run)]
    if entry.run == 1:
        return [entry]
    return [attrs.evolve(entry, seq=entry.seq + k, run=1) for k in range(entry.run)]


def _foldable(run: Entry, entry: Entry) -> bool:
    """Whether `entry` can join `run`: stale audio alike in all a handle or a resume reads
    (generation, written or not, sends), the input right after it, neither with a payload."""
    return (run.kind is InputKind.AUDIO and entry.kind is InputKind.AUDIO
            and run.payload is None and entry.payload is None
            and run.seq != OWED and run.seq + run.run == entry.seq
            and run.sent_generation == entry.sent_generation
            and (run.sent_at is None) == (entry.sent_at is None)
            and run.sends == entry.sends)


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


class Journal:
    """Entries in sequence order; linear on purpose: it holds seconds of input, not hours.

    Audio entries a handle covered are made again for the next chunks (`audio`): an entry
    lives seconds, long enough for the garbage collector to move it to its oldest generation,
    and a full collection (60-120 ms for every session of a process) comes each time those
    moves add up to a quarter of the objects there. Made again, they never move: at 100
    sessions full collections went from one every 20 s to none in the benchmark's window.
    The pool holds what the session needs now, no more: written audio is packed at each pass
    (`release_stale_audio`, every `RELEASE_SLACK` of input), its entries taken back up to as
    many as the session made since the pass before; at each handle it is cut to as many as
    the session made since the handle before (a session that stops sending keeps none)."""

    #: one per session: an attribute dict would be most of an idle session's journal
    __slots__ = ("_entries", "_folded", "_fresh", "_made", "_pack_due", "_release_due",
                 "_released_seq", "_spare")

    def __init__(self) -> None:
        self._entries: list[Entry] = []
        self._released_seq = 0  # entries up to this seq have no payload to release
        self._spare: list[Entry] = []
        self._made = 0  # audio entries made (new or again) since the last prune
        self._fresh = 0  # audio entries made since the last time written audio was packed
        self._folded = 0  # inputs beyond one per entry that runs stand for (`__len__`)
        self._release_due = float("-inf")  # no payload to release before this
        self._pack_due = float("-inf")  # no written audio to pack before this

    def audio(self, seq: int, payload: Any, created_at: float) -> Entry:
        """A new audio entry: a covered one made again when there is one."""
        self._made += 1
        self._fresh += 1
        if not self._spare:
            return Entry(seq=seq, kind=InputKind.AUDIO, payload=payload, created_at=created_at,
                         turn_complete=False, trigger=False)
        entry = self._spare.pop()
        entry.seq, entry.payload, entry.created_at = seq, payload, created_at
        entry.sent_generation = entry.sent_index = entry.sent_at = None
        entry.sends = 0
        entry.crossed = entry.stored = False
        entry.run = 1
        return entry

    def pool(self) -> tuple[Entry, ...]:
        """The covered audio entries waiting to be made again (for measurement)."""
        return tuple(self._spare)

    def __len__(self) -> int:
        """How many inputs it holds (a run of stale audio counts each chunk)."""
        return len(self._entries) + self._folded

    def __iter__(self) -> Iterator[Entry]:
        """One entry per input, in order (a run is shown as one copy per chunk)."""
        if not self._folded:
            return iter(self._entries)
        return (m for e in self._entries for m in _members(e))

    def entries(self) -> tuple[Entry, ...]:
        """The entries as held, runs as one entry each (for measurement)."""
        return tuple(self._entries)

    def _forget(self, entries: Iterable[Entry]) -> None:
        self._folded -= sum(e.run - 1 for e in entries)

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
        until a handle covers it or the drop is reported, folded into the one before it when
        they are alike (`_foldable`): a run stands for its chunks. Audio within the window that
        is written packs into runs too (`Packed`): one entry for the chunks, each its payload and
        two times. Between two handles a session holds seconds of 20 ms chunks: their entries
        weigh on memory and on the garbage collector, whose full collections pause every
        session of the process. Called for every input: it returns at once until the oldest
        payload it holds is due."""
        release = before >= self._release_due
        if not release and before < self._pack_due:
            return
        self._pack_due = before + RELEASE_SLACK
        entries = self._entries
        # entries are in sequence order: start after the last one already looked at, with the
        # entry before it (a run goes on growing)
        lo = bisect.bisect_right(entries, self._released_seq, key=_seq)
        if not release:
            self._pack(lo)
            return
        start = max(0, lo - 1)
        folded = entries[start:lo]
        waiting = False  # audio handed to a writer, not written yet: looked at again next time
        due = before
        split_at = None  # where a packed run stays once its stale chunks left it
        i, end = lo, len(entries)
        while i < end:
            entry = entries[i]
            if entry.created_at >= before:
                due = entry.created_at
                break
            if type(entry.payload) is Packed:
                created = entry.payload.created
                m = bisect.bisect_left(created, before)
                if m < entry.run:  # its first m chunks went stale: they leave the run
                    self._folded -= 1  # one entry more for as many inputs
                    due = created[m]
                    entry = _split(entry, m)
                    split_at = end = i  # the rest of the run stays, and so does what follows
                else:
                    entry.payload = None
            i += 1
            if entry.kind is InputKind.AUDIO and entry.payload is not None:
                if entry.sent_at is None and entry.sent_generation is not None:
                    waiting = True
                    folded.append(entry)
                    continue
                entry.payload = None
            if not waiting:
                self._released_seq = entry.seq + entry.run - 1
            if folded and _foldable(folded[-1], entry):
                run = folded[-1]
                run.run += entry.run
                self._folded += 1  # one entry fewer for as many inputs
                if entry.sent_at is not None and (run.sent_at is None
                                                  or entry.sent_at > run.sent_at):
                    run.sent_at = entry.sent_at
                if entry.sent_index is not None and (run.sent_index is None
                                                     or entry.sent_index > run.sent_index):
                    run.sent_index = entry.sent_index
                if entry.run == 1 and len(self._spare) < self._made:
                    self._spare.append(entry)  # settled: nothing refers to it any more
            else:
                folded.append(entry)
        if split_at is not None:
            i = split_at
        entries[start:i] = folded
        self._pack(start + len(folded))
        self._release_due = (before if waiting else due) + RELEASE_SLACK

    def _pack(self, start: int) -> None:
        """Pack the written audio from `start` on into runs (`Packed`); the entries packed are
        kept for reuse (`audio`): nothing refers to them any more."""
        entries = self._entries
        kept: list[Entry] = []
        spare, packed = self._spare, False
        # written audio is packed at every pass: till the next one the session needs about as
        # many entries as it made since the last (a handle trims the pool: `_prune`)
        need, self._fresh = self._fresh, 0
        for entry in entries[start:]:
            run = kept[-1] if kept else None
            if run is None or not _joins(run, entry):
                kept.append(entry)
                continue
            packed = True
            if type(run.payload) is not Packed:  # the first two chunks of a run
                first = Packed(run.payload[1] if _pair(run.payload) else _WHOLE)
                first.add(run)
                run.payload = first
            run.payload.add(entry)
            run.run += 1
            run.sent_at, run.sent_index = entry.sent_at, entry.sent_index
            self._folded += 1
            if len(spare) < need:
                entry.payload = None
                spare.append(entry)
        if packed:
            entries[start:] = kept

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
        def chunks(e: Entry, packed: Packed) -> int:  # a packed run's: its first ones
            if e.sent_generation != generation or e.sent_index is None:
                return 0
            return max(0, min(e.run, last_consumed - (e.sent_index - e.run + 1) + 1))

        return self._prune(lambda e: consumed(e) and (
            e.answered or not e.trigger or e.kind is InputKind.TOOL_RESPONSE), chunks)

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
        covered, and so is what went out on the connection before it (the server answered it,
        so it had taken in all that came first); other input only if it went out before
        `sent_before` (the update's arrival minus one round trip: anything later may have
        crossed the update on the wire). Order, unlike timing, holds on a loaded machine."""
        upto = self._answered_upto(generation)

        def before_answered(e: Entry) -> bool:
            return e.sent_index is not None and e.sent_index < upto

        return self._prune(
            lambda e: e.sent_generation == generation
            and (
                e.answered
                if e.trigger
                else before_answered(e) or (e.sent_at is not None and e.sent_at < sent_before)
            ),
            # a packed run's chunks went out in order: those sent before `sent_before` (a run
            # is all before an answered turn or all after it: its indices are consecutive)
            lambda e, packed: bisect.bisect_left(packed.sent, sent_before)
            if e.sent_generation == generation else 0,
        )

    def _answered_upto(self, generation: int) -> int:
        """The connection index of the last turn input answered on `generation` (0: none)."""
        return max((e.sent_index for e in self._entries
                    if e.trigger and e.answered and e.sent_generation == generation
                    and e.sent_index is not None), default=0)

    def _prune(self, covered: Callable[[Entry], bool],
               chunks: Callable[[Entry, Packed], int] | None = None) -> list[Entry]:
        """Take out the entries `covered` says a handle covers; of a packed run, the first
        `chunks` says (the rest stays packed)."""
        if chunks is not None:
            self._split_covered(chunks)
        gone = [e for e in self._entries if covered(e)]
        self._forget(gone)
        # the pool is bounded by what the session needs now: the audio entries it made since
        # audio was last covered (until the next handle it will need about as many)
        need = self._made
        spare = self._spare
        if len(spare) > need:
            del spare[need:]
        if gone:
            self._entries = [e for e in self._entries if not covered(e)]
            for e in gone:
                if e.kind is not InputKind.AUDIO:
                    continue
                self._made = 0
                # written (no send of it is pending anywhere): nothing refers to it any more
                if e.sent_at is not None and len(spare) < need:
                    e.payload = None
                    spare.append(e)
        return gone

    def _split_covered(self, chunks: Callable[[Entry, Packed], int]) -> None:
        """Split each packed run a handle covers in part: its covered chunks become a run of
        their own (whose last send `covered` then reads as covered), before the rest."""
        out: list[Entry] | None = None
        for i, entry in enumerate(self._entries):
            payload = entry.payload
            if type(payload) is Packed:
                m = chunks(entry, payload)
                if 0 < m < entry.run:
                    if out is None:
                        out = self._entries[:i]
                    out.append(_split(entry, m))
                    self._folded -= 1  # one entry more for as many inputs
            if out is not None:
                out.append(entry)
        if out is not None:
            self._entries = out

    def _unpack(self) -> None:
        """Every packed run back to one entry per chunk (a resume sends them one by one)."""
        if any(type(e.payload) is Packed for e in self._entries):
            out: list[Entry] = []
            for entry in self._entries:
                if type(entry.payload) is Packed:
                    self._folded -= entry.run - 1
                    out.extend(_members(entry))
                else:
                    out.append(entry)
            self._entries = out

    def remove(self, entries: list[Entry]) -> None:
        doomed = {id(e) for e in entries}
        self._forget(e for e in self._entries if id(e) in doomed)
        self._entries = [e for e in self._entries if id(e) not in doomed]

    def take_all(self) -> list[Entry]:
        """Every input it holds, one entry each (runs shown per chunk), leaving it empty."""
        entries = list(self)
        self._entries, self._folded = [], 0
        return entries

    def plan_replay(self, now: float, policy: ReplayPolicy) -> ReplayPlan:
        """What to send after a resume, in order, and what to drop (with the reason)."""
        self._unpack()
        items: list[ReplayItem] = []
        dropped: list[tuple[Entry, str]] = []
        gone: list[Entry] = []  # the entries held for what is dropped (a run for its chunks)
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
                gone.append(entry)
                reason = f"audio older than the replay window ({policy.audio_staleness:g}s)"
                dropped.extend((member, reason) for member in _members(entry))
            elif entry.kind is InputKind.VIDEO and entry.seq != latest_video:
                gone.append(entry)
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
                    # one it does not know was dropped already (`toolcalls.cancel_unknown`)
                    gone.append(entry)
                    dropped.append((entry, "answered tool response: covered by history replay"))
                else:
                    items.append(ReplayItem(entry=entry, repeated=True))
            else:
                items.append(ReplayItem(entry=entry, repeated=entry.crossed and entry.trigger))
        if continuation is not None:
            items.append(continuation)
        self.remove(gone + settled)
        return ReplayPlan(items=tuple(items), dropped=tuple(dropped), settled=tuple(settled))


def cover(journal: Journal, generation: int, *, at: float, lag: float, last_consumed: int | None,
          transparent: bool, rtt: float | None, policy: ReplayPolicy,
          reply: tuple[float, int] | None) -> list[Entry]:
    """What a resumable handle issued at `at` on connection `generation` covers: those entries
    leave the journal (returned); a turn whose reply was streaming (`reply`: when it began,
    characters so far) is held instead (see the module's docstring). Transparent mode reads
    the server's index; otherwise input sent within the crossing window before the handle (the
    measured `rtt`, or `policy.crossing_default`, plus the slack and the reader's `lag`) may
    have crossed it and stays."""
    if transparent and last_consumed is not None:
        return journal.prune_by_index(generation, last_consumed, reply)
    window = rtt if rtt is not None else policy.crossing_default
    sent_before = at - window - policy.crossing_slack - lag
    covered = []
    if reply is not None:
        covered = journal.hold_in_flight(generation, reply[0], sent_before, reply[1])
    covered += journal.prune_covered(generation, sent_before=sent_before)
    return covered
