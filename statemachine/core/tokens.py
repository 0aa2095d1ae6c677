"""Ephemeral tokens, as the core sees them: when the current connection's token expires, and
whether moving to a fresh one buys time. The shell asks the application's provider for a token
before each connection and reports its expiry (`TokenIssued`); the engine arms the token timer
(`arm_timer`) and, when it fires (`expiring`), asks `renewing` whether to move like after a
`goAway`. The steps are functions of the engine, like the guards; the state is its `Tokens`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import attrs

from .actions import CloseConnection, TokenExpiring
from .bookkeeping import Loss
from .closecodes import TOKEN_REFUSED_HINT, Disposition
from .events import Failure, Timer, TokenIssued
from .table import Trigger

if TYPE_CHECKING:
    from .engine import Lifecycle


@attrs.define(kw_only=True, slots=True)
class Tokens:
    """Ephemeral tokens, when a provider gives each connection a fresh one (`fresh`): when the
    current connection's token expires and when the one before it did."""

    fresh: bool = False
    expires_at: float | None = None
    #: the expiry of the token the session last moved away from (None: it never moved)
    moved_from: float | None = None

    def timer_delay(self, now: float, lead: float) -> float | None:
        """How long until the session must act on the token (`lead` before it expires); None
        when no expiry is known."""
        if self.expires_at is None:
            return None
        return max(0.0, self.expires_at - lead - now)

    def renewing(self, lead: float) -> bool:
        """Whether a move to a fresh token buys time: a provider gives fresh tokens, and the
        last such move got one at least `lead` younger than the token it left (a provider that
        hands out the same token again, or tokens too short-lived, would make the session churn;
        reconnections in between do not count)."""
        expires_at = self.expires_at
        return (self.fresh and expires_at is not None
                and (self.moved_from is None or expires_at >= self.moved_from + lead))


def issued(s: Lifecycle, event: TokenIssued) -> None:
    """The shell got a token for the connection: arm the timer that acts before it expires,
    or end the session if the provider gave one that has expired already."""
    s.tokens.expires_at = event.expires_at
    if event.expires_at is not None and event.expires_at <= event.at and s.conn.open:
        # dialing with it would be refused: end here, saying whose token it is
        s._emit(CloseConnection(generation=s.generation, code=1000, reason="expired token"))
        ago = event.at - event.expires_at
        s._lose(Loss(disposition=Disposition.FATAL, failure=Failure.TOKEN_PROVIDER,
                     why=f"the token provider returned a token that expired {ago:.1f}s ago",
                     hint=TOKEN_REFUSED_HINT), {})
    elif s.conn.setup_done:  # normally before setup: entering a live state arms the timer
        arm_timer(s)


def arm_timer(s: Lifecycle) -> None:
    """Arm the token timer `token_lead` before the current token expires (if it does)."""
    delay = s.tokens.timer_delay(s.now, s.policy.limits.token_lead)
    if delay is not None:
        s._arm(Timer.TOKEN, delay)


def expiring(s: Lifecycle, cause: dict[str, Any]) -> None:
    """The connection's token expires within `token_lead`: move to a connection with a fresh
    one when that buys time (the guard `fresh_token_helps` of the `token_expiring` row).
    Either way the application is told."""
    tokens = s.tokens
    expires_at = tokens.expires_at
    if expires_at is None:
        return
    renewing = s._takes(Trigger.TOKEN_EXPIRING)
    s._notify(TokenExpiring(expires_in=max(0.0, expires_at - s.now), renewing=renewing))
    if renewing:
        current = s.conn.go_away_deadline
        s.conn.go_away_deadline = expires_at if current is None else min(current, expires_at)
        s._fire(Trigger.TOKEN_EXPIRING, {**cause, "expires_in": round(expires_at - s.now, 3)})
        tokens.moved_from = expires_at  # after the guard has let the move through
