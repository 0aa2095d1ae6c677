"""Helpers for tests of code that uses the lifecycle, as `structlog.testing` is for logs.

Three tools, from the outside in:

- `capture()`: a context manager that collects the audit records and notices of every session
  created inside it, with no change to the code under test:

        with statemachine.testing.capture() as trace:
            async with statemachine.connect(client, model=...) as session:
                ...
        assert ("go_away", "streaming", "draining") in trace.transitions()

- `Trace`: the same collection for one session, passed in explicitly
  (`statemachine.connect(..., **trace.hooks())`); `Trace.record` is also an audit sink for
  `Lifecycle(audit=...)`.
- `CoreDriver`: drives the sans-I/O core (`statemachine.core.Lifecycle`) with timestamped events
  the way the asyncio shell does, with no network and no event loop: a scripted clock, timers
  that fire when the clock passes them, and verbs for what a server and an application do.

        d = CoreDriver()
        d.connect(); d.setup_complete()
        d.go_away(time_left=30.0)
        d.turn_complete(); d.resumption_update("h-1")
        assert d.state is State.RESUMING
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from .core import records as _records
from .core.actions import Action, ArmTimer, CancelTimer, Notice, Notify, Send
from .core.engine import Lifecycle
from .core.events import (
    ClientInput,
    Close,
    Connect,
    ConnectionLost,
    Event,
    GoAway,
    InputKind,
    ModelOutput,
    ResumptionUpdate,
    SetupComplete,
    Timer,
    TimerFired,
    ToolCall,
    TurnComplete,
)
from .core.records import AuditRecord
from .core.table import State

N = TypeVar("N", bound=Notice)

__all__ = ["CoreDriver", "Trace", "capture"]


class Trace:
    """The audit records and notices of one session (or of all sessions under `capture()`),
    in order."""

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

    def sessions(self) -> list[str]:
        """The ids of the sessions seen, in the order they first appeared."""
        return list(dict.fromkeys(r["session"] for r in self.records))

    def of_session(self, session_id: str) -> Trace:
        """The records of one session only (notices carry no session id and are left out)."""
        return Trace.of([r for r in self.records if r["session"] == session_id])

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


@contextmanager
def capture() -> Iterator[Trace]:
    """Collect the audit records and notices of every session created inside the block.

    Sessions keep their own sinks and hooks (`audit=`, `on_notice=`, structlog); the trace gets
    a copy. Captures nest: each active one sees every session created while it is active. A
    session created before the block is not captured."""
    trace = Trace()
    _records.start_capture(trace.record, trace.notice)
    try:
        yield trace
    finally:
        _records.stop_capture(trace.record, trace.notice)


class CoreDriver:
    """Drives a `Lifecycle` with timestamped events, as the asyncio shell would.

    It keeps a scripted clock (`now`, moved by `tick` and `advance`), remembers the timers the
    engine arms so that `advance` fires the due ones in order, and reports every `Send` written
    at once (the shell's `written` call). Every action the engine returned is in `actions`; the
    audit records are in `trace`.

    Pass an engine of your own, or keyword arguments for a new one (`policy=`, `backend=`,
    `fresh_tokens=`...); a new one gets a seeded random generator, so backoff jitter repeats."""

    def __init__(self, engine: Lifecycle | None = None, *, start: float = 0.0,
                 **lifecycle: Any) -> None:
        self.trace = Trace()
        if engine is None:
            lifecycle.setdefault("rng", random.Random(7))
            lifecycle.setdefault("audit", self.trace.record)
            engine = Lifecycle(**lifecycle)
        elif lifecycle:
            raise TypeError("pass either an engine or keyword arguments for a new one")
        self.engine = engine
        self.now = start
        self.actions: list[Action] = []
        #: how many events were fed
        self.fed = 0
        #: timer -> (token, when it is due), as armed by the engine and not yet cancelled
        self.timers: dict[Timer, tuple[int, float]] = {}

    # -- the clock and the core ------------------------------------------------------------------

    @property
    def state(self) -> State:
        return self.engine.state

    @property
    def gen(self) -> int:
        """The current connection's generation."""
        return self.engine.generation

    def tick(self, dt: float = 0.01) -> float:
        """Move the clock by `dt` seconds without firing timers; return the new time."""
        self.now += dt
        return self.now

    def feed(self, event: Event) -> list[Action]:
        """Feed one event; record the timers it armed or cancelled; return its actions."""
        self.fed += 1
        out = self.engine.feed(event)
        self._performed(out)
        return out

    def _performed(self, out: list[Action]) -> None:
        for action in out:
            if isinstance(action, ArmTimer):
                self.timers[action.timer] = (action.token, self.now + action.delay)
            elif isinstance(action, CancelTimer):
                self.timers.pop(action.timer, None)
            elif isinstance(action, Send):  # written at once, as a shell reports it
                self.engine.written(action.entry, action.generation, self.now)
        self.actions.extend(out)

    def fire_timer(self, timer: Timer) -> list[Action]:
        """Fire an armed timer now, whatever its due time."""
        token, _ = self.timers.pop(timer)
        return self.feed(TimerFired(at=self.tick(), timer=timer, token=token))

    def advance(self, seconds: float) -> list[Action]:
        """Move the clock by `seconds`, firing every timer that falls due on the way, in the
        order they fall due (at their due time)."""
        end = self.now + seconds
        out: list[Action] = []
        while True:
            due = [(at, timer) for timer, (_, at) in self.timers.items() if at <= end]
            if not due:
                break
            at, timer = min(due)
            token, _ = self.timers.pop(timer)
            self.now = max(self.now, at)
            out += self.feed(TimerFired(at=self.now, timer=timer, token=token))
        self.now = end
        return out

    def notices(self, kind: type[N] = Notice) -> list[N]:  # type: ignore[assignment]
        """The notices the engine returned so far, of one class (all by default)."""
        return [a.notice for a in self.actions
                if isinstance(a, Notify) and isinstance(a.notice, kind)]

    # -- what an application does ----------------------------------------------------------------

    def connect(self) -> list[Action]:
        return self.feed(Connect(at=self.tick()))

    def send(self, kind: InputKind = InputKind.CONTENT, payload: Any = "hello", *,
             turn_complete: bool = True, tool_ids: tuple[str, ...] = ()) -> list[Action]:
        """A client message (a turn by default)."""
        return self.feed(ClientInput(at=self.tick(), kind=kind, payload=payload,
                                     turn_complete=turn_complete, tool_ids=tool_ids))

    def close(self, reason: str = "closed by the application") -> list[Action]:
        return self.feed(Close(at=self.tick(), reason=reason))

    # -- what a server does ----------------------------------------------------------------------

    def setup_complete(self) -> list[Action]:
        return self.feed(SetupComplete(at=self.tick(), generation=self.gen))

    def model_output(self, text: str = "...") -> list[Action]:
        return self.feed(ModelOutput(at=self.tick(), generation=self.gen, text=text))

    def tool_call(self, *ids: str) -> list[Action]:
        return self.feed(ToolCall(at=self.tick(), generation=self.gen, ids=ids))

    def turn_complete(self) -> list[Action]:
        return self.feed(TurnComplete(at=self.tick(), generation=self.gen))

    def resumption_update(self, handle: str | None = "h", *,
                          resumable: bool = True) -> list[Action]:
        return self.feed(ResumptionUpdate(at=self.tick(), generation=self.gen, handle=handle,
                                          resumable=resumable))

    def handle(self, name: str = "h") -> list[Action]:
        """A completed turn and a resumable handle covering it (named `<name>-<generation>`)."""
        out = self.turn_complete()
        return out + self.resumption_update(f"{name}-{self.gen}")

    def go_away(self, time_left: float | None = 30.0) -> list[Action]:
        return self.feed(GoAway(at=self.tick(), generation=self.gen, time_left=time_left))

    def lose(self, code: int | None = 1006, reason: str = "", *,
             during_setup: bool | None = None) -> list[Action]:
        """The connection closes (`during_setup` defaults to whether setup had completed)."""
        setup = not self.engine.conn.setup_done if during_setup is None else during_setup
        return self.feed(ConnectionLost(at=self.tick(), generation=self.gen, code=code,
                                        reason=reason, during_setup=setup))
