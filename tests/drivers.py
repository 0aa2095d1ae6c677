"""Events that take a session along a row of the table, satisfying the row's guards.

Used to replay the table's shortest paths through the sans-I/O core, and (with real I/O) through
LiveSession. Each driver returns the events to feed; a driver may need the engine's current
bookkeeping (generation, timer tokens), so it is called right before feeding.
"""

from __future__ import annotations

from collections.abc import Callable

from statemachine.core import events, guards
from statemachine.core.bookkeeping import Resumption
from statemachine.core.events import Timer
from statemachine.core.table import Guard, State, Transition, Trigger
from statemachine.testing import CoreDriver


class Driver(CoreDriver):
    """The public `CoreDriver`, plus `take`: feed what makes a given row of the table fire."""

    def take(self, source: State, row: Transition) -> None:
        """Feed what makes `row` fire from `source` (which must be the current state)."""
        assert self.engine.state is source, (self.engine.state, source)
        STEPS[row.trigger](self, row)


def _lost(d: Driver, row: Transition) -> None:
    live = d.engine.conn.setup_done
    source = d.engine.state
    code, reason = 1006, ""
    if Guard.CLOSE_IS_FATAL in row.guards:
        code, reason = (1002, "protocol error") if not live else (1007, "invalid")
    elif Guard.HANDLE_VALID in row.guards:
        if live:  # a handle arrives while a turn is in flight: not a safe point
            d.feed(events.ModelOutput(at=d.tick(), generation=d.gen, text="busy"))
            d.feed(
                events.ResumptionUpdate(at=d.tick(), generation=d.gen, handle="h", resumable=True)
            )
    elif row.dest is State.CONNECTING:
        code, reason = 1011, "The service is currently unavailable."
    elif source is State.CONNECTING:  # the fallback: the retry budget runs out
        code, reason = 1011, "The service is currently unavailable."
        while d.engine.state is State.CONNECTING and guards.retry_budget_left(d.engine):
            d.feed(events.ConnectionLost(at=d.tick(), generation=d.gen, code=code,
                                         reason=reason, during_setup=True))
            d.fire_timer(Timer.BACKOFF)
    else:  # the fallback: the handle is no longer valid
        d.tick(d.engine.handle_validity + 1)
    d.feed(
        events.ConnectionLost(
            at=d.tick(), generation=d.gen, code=code, reason=reason, during_setup=not live
        )
    )
    if row.dest is State.CONNECTING:
        d.fire_timer(Timer.BACKOFF)


def _connect(d: Driver, row: Transition) -> None:
    if Guard.HANDLE_VALID in row.guards:
        d.engine.restore("stored-handle", at=d.now, age=1.0)
    d.feed(events.Connect(at=d.tick()))


def _setup(d: Driver, row: Transition) -> None:
    if Guard.WAS_COMPRESSED in row.guards:
        _usage_falls(d)  # the context was compressed before the handle was issued
    d.feed(events.SetupComplete(at=d.tick(), generation=d.gen))


def _usage_falls(d: Driver) -> None:
    trigger = d.engine.policy.compression_trigger_tokens
    d.feed(events.Usage(at=d.tick(), generation=d.gen, prompt_tokens=trigger + 10))
    d.feed(events.Usage(at=d.tick(), generation=d.gen, prompt_tokens=trigger // 2))


def _compress(d: Driver, row: Transition) -> None:
    _usage_falls(d)


def _go_away(d: Driver, row: Transition) -> None:
    d.feed(events.ModelOutput(at=d.tick(), generation=d.gen, text="busy"))
    d.feed(events.GoAway(at=d.tick(), generation=d.gen, time_left=30.0))


def _safe_point(d: Driver, row: Transition) -> None:
    d.handle()


def _rotation_deadline(d: Driver, row: Transition) -> None:
    if Guard.HANDLE_VALID in row.guards:  # a handle while the turn is still in flight
        d.feed(
            events.ResumptionUpdate(at=d.tick(), generation=d.gen, handle="mid", resumable=True)
        )
    d.fire_timer(Timer.ROTATE)
    if d.engine.state is State.DRAINING:  # no handle: it waits for the server's own deadline
        d.tick(30.0)
        d.fire_timer(Timer.ROTATE)


def _refused(d: Driver, row: Transition) -> None:
    d.feed(
        events.ConnectionLost(
            at=d.tick(), generation=d.gen, code=1007, reason="invalid", during_setup=True
        )
    )


def _retry(d: Driver, row: Transition) -> None:
    """A transient close, then the backoff elapses (after the handle expired, for the
    fallback row out of resuming)."""
    live = d.engine.conn.setup_done
    d.feed(events.ConnectionLost(at=d.tick(), generation=d.gen, code=1011,
                                 reason="The service is currently unavailable.",
                                 during_setup=not live))
    if d.engine.state is State.RESUMING and Timer.BACKOFF not in d.timers:
        # the first retry after a drop is immediate: fail it too, so a backoff is armed
        d.feed(events.ConnectionLost(at=d.tick(), generation=d.gen, code=1011,
                                     reason="unavailable", during_setup=True))
    if row.dest is State.EXPIRED:
        d.tick(d.engine.handle_validity + 1)
    d.fire_timer(Timer.BACKOFF)


def _token_expiring(d: Driver, row: Transition) -> None:
    """A fresh token (the session has a provider) that expires within the lead, mid-reply."""
    assert d.engine.tokens.fresh, "drive a Lifecycle made with fresh_tokens=True"
    d.feed(events.ModelOutput(at=d.tick(), generation=d.gen, text="busy"))
    lead = d.engine.policy.limits.token_lead
    d.feed(events.TokenIssued(at=d.tick(), generation=d.gen, expires_at=d.now + lead / 2))
    d.fire_timer(Timer.TOKEN)


def _session_cap(d: Driver, row: Transition) -> None:
    d.fire_timer(Timer.SESSION_CAP)


def _hand_off(d: Driver, row: Transition) -> None:
    """The application hands the session off (it needs a store: drive a Lifecycle made with
    persistence) when nothing is under way: a turn in flight completes and its handle comes."""
    assert d.engine.persistence is not None, "drive a Lifecycle made with persistence"
    d.feed(events.HandOff(at=d.tick(), limit=5.0))
    if d.engine.state is not State.HANDING_OFF:  # a reply in flight: it ends, a handle comes
        d.handle()


def _hand_off_deadline(d: Driver, row: Transition) -> None:
    """Handed off mid-reply: the limit passes before the reply ends."""
    assert d.engine.persistence is not None, "drive a Lifecycle made with persistence"
    if not d.engine.turn.in_flight:
        d.feed(events.ModelOutput(at=d.tick(), generation=d.gen, text="busy"))
    d.feed(events.HandOff(at=d.tick(), limit=5.0))
    d.fire_timer(Timer.HAND_OFF)


def _handed_off(d: Driver, row: Transition) -> None:
    d.feed(events.StoreDone(at=d.tick(), op=events.StoreOp.HAND_OVER))


def _hand_off_failed(d: Driver, row: Transition) -> None:
    """The hand-over fails and the lease is taken back (with no valid handle any more, for
    the fallback row to connecting)."""
    if Guard.HANDLE_VALID not in row.guards:
        d.tick(d.engine.handle_validity + 1)
    elif not guards.handle_valid(d.engine):  # handed off before any handle came
        d.engine.resumption = Resumption(handle="late", at=d.now)
    d.feed(events.StoreFailed(at=d.tick(), op=events.StoreOp.HAND_OVER, error="unreachable"))
    d.feed(events.StoreDone(at=d.tick(), op=events.StoreOp.RECLAIM))


STEPS: dict[Trigger, Callable[[Driver, Transition], None]] = {
    Trigger.CONNECT: _connect,
    Trigger.SETUP_COMPLETE: _setup,
    Trigger.COMPRESSION_DETECTED: _compress,
    Trigger.GO_AWAY: _go_away,
    Trigger.TOKEN_EXPIRING: _token_expiring,
    Trigger.SAFE_POINT: _safe_point,
    Trigger.ROTATION_DEADLINE: _rotation_deadline,
    Trigger.CONNECTION_LOST: _lost,
    Trigger.SETUP_REFUSED: _refused,
    Trigger.RETRY: _retry,
    Trigger.SESSION_CAP: _session_cap,
    Trigger.CLOSE: lambda d, r: d.feed(events.Close(at=d.tick())),
    Trigger.FATAL_ERROR: lambda d, r: d.feed(events.FatalError(at=d.tick(), reason="test")),
    Trigger.HAND_OFF: _hand_off,
    Trigger.HAND_OFF_DEADLINE: _hand_off_deadline,
    Trigger.HANDED_OFF: _handed_off,
    Trigger.HAND_OFF_FAILED: _hand_off_failed,
}
