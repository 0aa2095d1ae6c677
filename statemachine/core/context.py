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
    a setup carried). Payloads are opaque (`system_instruction` and/or `tools`). None until
    the first update: most sessions never send one (an empty dict is 64 bytes a session)."""

    latest: dict[str, Any] | None = None
    covered: dict[str, Any] | None = None

    def sent(self, payload: Any) -> None:
        """The application sent an update (a mapping of the fields it sets)."""
        if not isinstance(payload, dict):
            return
        if self.latest is None:
            self.latest = {}
        self.latest.update(payload)

    def cover(self, entries: Iterable[Entry]) -> None:
        """A resumable handle covers `entries`: the updates among them are the server's now."""
        if self.latest is None:
            return
        for entry in entries:
            if entry.kind is InputKind.CONTEXT_UPDATE and isinstance(entry.payload, dict):
                if self.covered is None:
                    self.covered = {}
                self.covered.update(entry.payload)

    def for_resume(self) -> dict[str, Any]:
        return dict(self.covered or ())

    def for_new_session(self, journal: Journal) -> tuple[dict[str, Any], int]:
        """The setup of a new session carries every update: they leave the journal, delivered
        (how many did is returned with what the setup carries)."""
        if self.latest is None:
            return {}, 0
        delivered = [e for e in journal if e.kind is InputKind.CONTEXT_UPDATE]
        journal.remove(delivered)
        self.covered = dict(self.latest)
        return dict(self.latest), len(delivered)
