"""The guards of the lifecycle table: one small pure function per `table.Guard`.

Each reads the engine's bookkeeping and changes nothing. The machine evaluates them when a
trigger fires (`machine.py`), and the engine asks them, through the table, whether a trigger
would be taken now (`Lifecycle._offer`), so every condition that chooses between rows, or
decides whether a row is taken at all, is named here and drawn on the diagram.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from .closecodes import Disposition
from .policy import OnExpired
from .table import LIVE, Guard

if TYPE_CHECKING:
    from .engine import Lifecycle


def close_is_fatal(s: Lifecycle) -> bool:
    """The last connection ended with a close or error classified fatal."""
    return s.loss is not None and s.loss.disposition is Disposition.FATAL


def retry_budget_left(s: Lifecycle) -> bool:
    """Both retry budgets (this drop, the session window) allow another attempt."""
    return s.budget.left(s.now)


def handle_valid(s: Lifecycle) -> bool:
    """A resumable handle exists and is younger than the backend's handle validity."""
    r = s.resumption
    return r.handle is not None and r.at is not None and s.now - r.at < s.handle_validity


def was_compressed(s: Lifecycle) -> bool:
    """The server's sliding window trimmed the context before this connection."""
    return s.span.compressed


def fresh_allowed(s: Lifecycle) -> bool:
    """Policy starts a fresh session when one expires, and the session budget allows it."""
    return s.policy.on_expired is OnExpired.FRESH and s.budget.session_left(s.now)


def at_safe_point(s: Lifecycle) -> bool:
    """Nothing would be cut by leaving the connection now: no reply streams, the service says
    the interaction is idle, no tool call waits for its answer, no turn input waits for a
    reply, and a valid resumable handle covers all of it."""
    return (
        not s.turn.in_flight
        and not s.turn.busy
        and not s.calls.pending
        and not s.journal.has_turn_input()
        and handle_valid(s)
    )


def at_hand_off_point(s: Lifecycle) -> bool:
    """A hand-off was asked for and making it now cuts nothing: nothing is under way on the
    connection (as `at_safe_point`), covered by a valid handle or, before the server holds
    anything of the session, by none (`core/handoff.py`)."""
    if s.handoff is None or s.state not in LIVE:
        return False
    return (
        not s.turn.in_flight
        and not s.turn.busy
        and not s.calls.pending
        and not s.journal.has_turn_input()
        and (handle_valid(s) or not s.span.confirmed)
    )


def old_socket_wait_spent(s: Lifecycle) -> bool:
    """The server refused the resume because it still holds the session's old socket, and
    `RetryPolicy.old_socket_wait` has run out since its first such refusal (oldsocket.py)."""
    return (s.loss is not None and s.loss.disposition is Disposition.WAIT
            and s.old_socket.spent(s.now, s.policy.retry))


def fresh_token_helps(s: Lifecycle) -> bool:
    """Moving to a connection with a fresh ephemeral token buys time (`Tokens.renewing`): a
    provider gives fresh tokens, and the last move got one at least `token_lead` younger than
    the token it left (a provider that hands out the same token again would make the session
    churn)."""
    return s.tokens.renewing(s.policy.limits.token_lead)


def deadline_passed(s: Lifecycle) -> bool:
    """The connection's announced end (a goAway's deadline, an expiring token's) has come, or
    none was announced: a rotation without a valid handle gives the context up only then (until
    then the turn may finish and bring a handle)."""
    deadline = s.conn.go_away_deadline
    return deadline is None or s.now >= deadline


GUARDS: Mapping[Guard, Callable[[Lifecycle], bool]] = {
    Guard.CLOSE_IS_FATAL: close_is_fatal,
    Guard.RETRY_BUDGET_LEFT: retry_budget_left,
    Guard.HANDLE_VALID: handle_valid,
    Guard.WAS_COMPRESSED: was_compressed,
    Guard.FRESH_ALLOWED: fresh_allowed,
    Guard.AT_SAFE_POINT: at_safe_point,
    Guard.AT_HAND_OFF_POINT: at_hand_off_point,
    Guard.OLD_SOCKET_WAIT_SPENT: old_socket_wait_spent,
    Guard.FRESH_TOKEN_HELPS: fresh_token_helps,
    Guard.DEADLINE_PASSED: deadline_passed,
}
