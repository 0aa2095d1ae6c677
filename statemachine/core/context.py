"""The session's context updates (`send_context_update`): what each setup must carry.

A context update is input like any other: journaled, sent in order, replayed after a resume
until a resumable handle covers it. Only the latest system instruction and tool list matter,
so the setup of every connection carries them as far as the server is known to have them:

- a **resume** carries what the handle covers (the updates it took in); the ones it does not
  cover are replayed after it, in order, so none is applied twice;
- a **new session** (the first connection, or a fresh one after the handle was refused and the
  context lost) carries the latest of every update, and the journal's updates leave it: the
  setup delivered them. The model is never silently back on the instruction and tools the
  application started with.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import attrs

from .events import InputKind
from .journal import Entry, Journal


@attrs.define(kw_only=True, slots=True)
class SetupContext:
    """`latest`: every update merged, in the order sent; `covered`: those a handle holds (or
    a setup carried). Payloads are opaque (`system_instruction` and/or `tools`)."""

    latest: dict[str, Any] = attrs.Factory(dict)
    covered: dict[str, Any] = attrs.Factory(dict)

    def sent(self, payload: dict[str, Any]) -> None:
        """The application sent an update."""
        self.latest.update(payload)

    def cover(self, entries: Iterable[Entry]) -> None:
        """A resumable handle covers `entries`: the updates among them are the server's now."""
        for entry in entries:
            if entry.kind is InputKind.CONTEXT_UPDATE:
                self.covered.update(entry.payload)

    def for_resume(self) -> dict[str, Any]:
        return dict(self.covered)

    def for_new_session(self, journal: Journal) -> dict[str, Any]:
        """The setup of a new session carries every update: they leave the journal."""
        journal.remove([e for e in journal if e.kind is InputKind.CONTEXT_UPDATE])
        self.covered = dict(self.latest)
        return dict(self.latest)
