"""Helpers for applications that test their use of the lifecycle, as `structlog.testing` is for
logs: collect a session's audit records and notices, and read its path back.

    trace = statemachine.testing.Trace()
    async with statemachine.connect(client, model=..., **trace.hooks()) as session:
        ...
    assert ("go_away", "streaming", "draining") in trace.transitions()

`Trace.record` is an audit sink for `Lifecycle(audit=...)` too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from .core.actions import Notice
from .core.records import AuditRecord

N = TypeVar("N", bound=Notice)


class Trace:
    """The audit records and notices of one session, in order."""

    def __init__(self, on_change: Callable[[], None] | None = None) -> None:
        self.records: list[AuditRecord] = []
        self.notices: list[Notice] = []
        #: called after every record and notice (a test can wake a waiter there)
        self.on_change = on_change

    @classmethod
    def of(cls, records: list[AuditRecord]) -> Trace:
        """A trace over records collected elsewhere (a list used as an audit sink)."""
        trace = cls()
        trace.records = records
        return trace

    def record(self, record: AuditRecord) -> None:
        """An audit sink: pass as `audit=`."""
        self.records.append(record)
        if self.on_change is not None:
            self.on_change()

    def notice(self, notice: Notice) -> None:
        """A notice hook: pass as `on_notice=`."""
        self.notices.append(notice)
        if self.on_change is not None:
            self.on_change()

    def hooks(self) -> dict[str, Any]:
        """Keyword arguments for `statemachine.connect` that feed this trace."""
        return {"audit": self.record, "on_notice": self.notice}

    def transitions(self) -> list[tuple[str, str, str]]:
        """(trigger, source, dest) of every transition taken."""
        return [(r["name"], r["source"], r["dest"]) for r in self.records
                if r["kind"] == "transition"]

    def states(self) -> list[str]:
        """Every state entered, in order."""
        return [r["dest"] for r in self.records if r["kind"] == "transition"]

    def rejected(self) -> list[AuditRecord]:
        """Triggers the table (or a guard) did not let through."""
        return [r for r in self.records if r["kind"] == "rejected"]

    def named(self, kind: str, name: str) -> list[AuditRecord]:
        """Records of one kind (`event`, `transition`, `rejected`, `notice`) and name."""
        return [r for r in self.records if r["kind"] == kind and r["name"] == name]

    def notices_of(self, kind: type[N]) -> list[N]:
        """The notices of one class, in order."""
        return [n for n in self.notices if isinstance(n, kind)]
