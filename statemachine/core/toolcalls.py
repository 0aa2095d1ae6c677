"""What became of each tool call: exactly one outcome per call id, and repeats within a turn.

The model's calls end one way each (`ToolCallEnded`): answered (the application's response went
out), cancelled (the server said so: a response sent later is dropped, never sent), or lost
(never to be answered: the connection, the context or the session ended first). 3.8 calls a
tool that returned nothing again, 2-5 times in one turn: a call with the same name and
arguments as an earlier one of the turn is told as a repeat (`ToolCallRepeated`), so the
application can answer it from what it answered the first with.

The functions after `CallOutcomes` are the engine's steps for them, functions of the engine like
the guards (its `Calls` and `CallOutcomes` records hold the state): which calls wait for a
response, which were cancelled (by the server, or by a resume whose handle never knew them), and
the notices that follow, through the engine's outputs (`_notify`, `_drop`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import attrs

from .actions import Notice, ToolCallEnded, ToolCallRepeated, ToolCallsCancelled
from .events import InputKind, ToolCall
from .journal import Entry

if TYPE_CHECKING:
    from .engine import Lifecycle

ANSWERED = "answered"
CANCELLED = "cancelled"
LOST = "lost"

SERVER_CANCELLED = "the server cancelled the tool call (toolCallCancellation)"


def call_key(name: str, args_json: str) -> str:
    """A call's identity for repeats: its name and its arguments as canonical JSON."""
    return f"{name}({args_json})"


@attrs.define(kw_only=True, slots=True)
class CallOutcomes:
    """`open`: calls without an outcome yet (id -> key); `first`: this turn's first call of
    each key. None until the first call: most sessions make none (an empty dict is 64 bytes a
    session)."""

    open: dict[str, str] | None = None
    first: dict[str, str] | None = None

    def issued(self, ids: Iterable[str], keys: tuple[str, ...]) -> list[Notice]:
        if self.open is None:
            self.open, self.first = {}, {}
        assert self.first is not None
        notices: list[Notice] = []
        for i, call in enumerate(ids):
            key = keys[i] if i < len(keys) else ""
            self.open[call] = key
            if not key:
                continue
            first = self.first.setdefault(key, call)
            if first != call:
                notices.append(ToolCallRepeated(id=call, first=first,
                                                name=key.partition("(")[0]))
        return notices

    def is_open(self, call: str) -> bool:
        return self.open is not None and call in self.open

    def settle(self, ids: Iterable[str], outcome: str, reason: str = "") -> list[Notice]:
        """The outcome of the calls among `ids` that have none yet."""
        notices: list[Notice] = []
        if not self.open:
            return notices
        for call in ids:
            if call in self.open:
                del self.open[call]
                notices.append(ToolCallEnded(id=call, outcome=outcome, reason=reason))
        return notices

    def settle_all(self, outcome: str, reason: str) -> list[Notice]:
        return self.settle(list(self.open or ()), outcome, reason)

    def new_turn(self) -> None:
        """A turn ended (or a new one began): a call is a repeat only within its turn."""
        if self.first:
            self.first.clear()


@attrs.define(kw_only=True, slots=True)
class Calls:
    """Tool calls the model issued: `pending` (id -> when it was issued) waits for the
    application's response; `cancelled` (id -> why) were cancelled by the server, or issued
    after the handle a resume used, so the
    resumed session never knew them (their responses are dropped, not sent blindly)."""

    pending: dict[str, float] = attrs.Factory(dict)
    issued: dict[str, float] = attrs.Factory(dict)  # every call not yet covered by a handle
    cancelled: dict[str, str] = attrs.Factory(dict)


def issued(s: Lifecycle, event: ToolCall) -> None:
    """The model called tools: they wait for the application's response."""
    for call in event.ids:
        s.calls.pending[call] = event.at
        s.calls.issued[call] = event.at
    s._notify_all(s.outcomes.issued(event.ids, event.keys))


def responded(s: Lifecycle, entry: Entry) -> bool:
    """The application's tool response was journaled. True when it is dropped at once: every
    call it answers was cancelled (its cut was marked where the call was cancelled, or no
    reply was owed)."""
    calls = s.calls
    for call in entry.tool_ids:
        calls.pending.pop(call, None)
    if not entry.tool_ids or not all(c in calls.cancelled for c in entry.tool_ids):
        return False
    why = calls.cancelled[entry.tool_ids[0]]
    for call in entry.tool_ids:
        del calls.cancelled[call]
    s._drop(entry, why, marked=True, owed=not why.startswith(SERVER_CANCELLED))
    return True


def turn_ended(s: Lifecycle) -> None:
    """A turn completed: with no call left waiting, the next call starts a new turn's
    count of repeats."""
    if not s.calls.pending:
        s.outcomes.new_turn()


def covered(s: Lifecycle, at: float) -> None:
    """A resumable handle issued at `at` holds every call issued before it."""
    s.calls.issued = {c: t for c, t in s.calls.issued.items() if t > at}


def sent(s: Lifecycle, entry: Entry) -> None:
    """An input went on the wire: a tool response's first send answers its calls."""
    if entry.kind is InputKind.TOOL_RESPONSE and entry.sends == 1:
        s._notify_all(s.outcomes.settle(entry.tool_ids, ANSWERED))


def dropped(s: Lifecycle, entry: Entry, reason: str) -> None:
    """An input was reported dropped: a tool response's calls are lost."""
    if entry.kind is InputKind.TOOL_RESPONSE:
        s._notify_all(s.outcomes.settle(entry.tool_ids, LOST, reason))


def all_lost(s: Lifecycle, reason: str) -> None:
    """Every call without an outcome is lost (the context or the session ended)."""
    s._notify_all(s.outcomes.settle_all(LOST, reason))


def forget_all(s: Lifecycle) -> None:
    """A fresh session starts: it never issued any of them."""
    s.calls = Calls()


def cancel_unknown(s: Lifecycle, handle_at: float | None) -> None:
    """A resume: calls issued after the handle it uses (`handle_at`, None: no handle) are
    unknown to the resumed session. The application is told they are cancelled (in-band,
    as the service does on barge-in), and their responses, journaled or still to come, are
    never sent (a strict server closes on a response to a call it never issued). The
    replayed turn makes the model ask again. Calls the handle covers stay pending: the
    resumed session waits for their answers."""
    calls = s.calls
    unknown = {c for c, t in calls.issued.items() if handle_at is None or t > handle_at}
    if not unknown:
        return
    pending = sorted(c for c in calls.pending if c in unknown)
    for call in pending:
        del calls.pending[call]
    why = ("the tool call was cancelled: the connection that issued it ended before a "
           "handle covered it (the model asks again)")
    calls.cancelled.update(dict.fromkeys(unknown, why))
    for call in unknown:
        del calls.issued[call]
    stale = [e for e in s.journal if e.kind is InputKind.TOOL_RESPONSE
             and e.tool_ids and set(e.tool_ids) <= unknown]
    for entry in stale:
        for call in entry.tool_ids:
            calls.cancelled.pop(call, None)
        s._drop(entry, "tool response to a call the resumed session never issued: "
                             "not replayed (the model asks again)", marked=True)
    if pending:
        s._notify(ToolCallsCancelled(ids=tuple(pending)))
        s._notify_all(s.outcomes.settle(pending, LOST, why))


def server_cancelled(s: Lifecycle, ids: tuple[str, ...]) -> None:
    """The server cancelled calls (`toolCallCancellation`: barge-in, or new input during a
    BLOCKING call on 3.8 with Vertex): they are never answered. A response the application
    sends for one later is dropped; one journaled and not yet sent leaves the journal."""
    calls = s.calls
    why = SERVER_CANCELLED + ": a response to it is never sent"
    for call in ids:
        calls.pending.pop(call, None)
        if s.outcomes.is_open(call):
            calls.cancelled[call] = why
    unsent = [e for e in s.journal if e.kind is InputKind.TOOL_RESPONSE
              and e.sends == 0 and e.tool_ids and set(e.tool_ids) <= set(ids)]
    s._notify_all(s.outcomes.settle(ids, CANCELLED, why))
    for entry in unsent:
        for call in entry.tool_ids:
            calls.cancelled.pop(call, None)
        s._drop(entry, why, owed=False)
