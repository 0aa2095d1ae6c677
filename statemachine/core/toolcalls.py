"""What became of each tool call: exactly one outcome per call id, and repeats within a turn.

The model's calls end one way each (`ToolCallEnded`): answered (the application's response went
out), cancelled (the server said so: a response sent later is dropped, never sent), or lost
(never to be answered: the connection, the context or the session ended first). 3.8 calls a
tool that returned nothing again, 2-5 times in one turn: a call with the same name and
arguments as an earlier one of the turn is told as a repeat (`ToolCallRepeated`), so the
application can answer it from what it answered the first with.
"""

from __future__ import annotations

from collections.abc import Iterable

import attrs

from .actions import Notice, ToolCallEnded, ToolCallRepeated

ANSWERED = "answered"
CANCELLED = "cancelled"
LOST = "lost"


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
