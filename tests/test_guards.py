"""The guards of the table (core/guards.py) and the retry budget (core/budget.py)."""

from __future__ import annotations

from statemachine import Policy, RetryPolicy, State
from statemachine.core import guards, table
from statemachine.core.budget import RetryBudget
from statemachine.core.table import Guard, Trigger
from statemachine.testing import CoreDriver


def test_every_guard_has_one_pure_function() -> None:
    """Each named guard of the table is implemented once, in guards.py, and documented."""
    assert set(guards.GUARDS) == set(Guard)
    assert set(table.GUARD_DOCS) == set(Guard)
    for guard, check in guards.GUARDS.items():
        assert check.__module__ == "statemachine.core.guards", guard
        assert check.__doc__


def test_the_safe_point_is_a_guard_of_its_row() -> None:
    """The rotation at a safe point is chosen by the table's row, so the diagram shows it."""
    (row,) = table.rows_for(Trigger.SAFE_POINT, State.DRAINING)
    assert row.guards == (Guard.AT_SAFE_POINT,)
    assert "safe_point [at_safe_point]" in row.label


def test_no_safe_point_while_a_tool_call_waits() -> None:
    """A pending tool call keeps the session draining although a handle arrived."""
    d = CoreDriver()
    d.connect()
    d.setup_complete()
    d.tool_call("c1")
    d.go_away(30.0)
    d.turn_complete()
    d.resumption_update("h-1")
    assert not guards.at_safe_point(d.engine)
    assert d.state is State.DRAINING


def test_reading_the_budget_changes_nothing() -> None:
    """Asking how many attempts the window holds never forgets any (properties never mutate)."""
    budget = RetryBudget(policy=RetryPolicy(session_window=10.0))
    budget.spend(0.0)
    budget.spend(1.0)
    assert budget.session_attempts(100.0) == 0
    assert budget.started == [0.0, 1.0]
    assert budget.session_attempts(5.0) == 2
    d = CoreDriver(policy=Policy(retry=RetryPolicy(session_window=10.0)))
    d.engine.budget.spend(0.0)
    d.tick(50.0)
    d.connect()
    assert d.engine.session_attempts == 0
    assert d.engine.budget.started == [0.0]


def test_the_first_attempt_after_a_resumable_close_goes_at_once() -> None:
    """Only the first attempt of a drop after a plain resumable close skips the backoff."""
    budget = RetryBudget(policy=RetryPolicy())
    assert budget.at_once_after_close(0.0, resumable=True, spends=True)
    assert budget.drop_attempts == 1
    assert not budget.at_once_after_close(1.0, resumable=True, spends=True)
    budget.streak_over()
    assert not budget.at_once_after_close(2.0, resumable=False, spends=True)
    assert budget.at_once_after_close(3.0, resumable=True, spends=False)
    assert budget.drop_attempts == 0


def test_moving_to_a_fresh_token_is_a_guard_of_its_row() -> None:
    """Whether an expiring token moves the session is the `token_expiring` row's guard, drawn on
    the diagram: a provider that hands out the same token again gets no second move, and the
    application is told either way."""
    from statemachine.core.actions import TokenExpiring
    from statemachine.core.events import Timer, TokenIssued

    (row,) = table.rows_for(Trigger.TOKEN_EXPIRING, State.STREAMING)
    assert row.guards == (Guard.FRESH_TOKEN_HELPS,)
    assert "token_expiring [fresh_token_helps]" in row.label
    d = CoreDriver(fresh_tokens=True)
    d.connect()
    lead = d.engine.policy.limits.token_lead
    expires = d.now + lead / 2
    d.feed(TokenIssued(at=d.tick(), generation=d.gen, expires_at=expires))
    d.setup_complete()
    assert guards.fresh_token_helps(d.engine)
    d.fire_timer(Timer.TOKEN)
    assert d.state is State.DRAINING  # moving to a fresh token
    d.turn_complete()
    d.resumption_update("h-1")
    d.advance(0.5)
    d.setup_complete()
    assert d.state is State.STREAMING
    d.feed(TokenIssued(at=d.tick(), generation=d.gen, expires_at=expires))  # the same token
    assert not guards.fresh_token_helps(d.engine)
    moves = len(d.trace.named("transition", Trigger.TOKEN_EXPIRING.value))
    d.fire_timer(Timer.TOKEN)
    assert d.state is State.STREAMING
    assert len(d.trace.named("transition", Trigger.TOKEN_EXPIRING.value)) == moves == 1
    assert not d.trace.rejected()
    assert [n.renewing for n in d.notices(TokenExpiring)] == [True, False]
