"""Ephemeral tokens, as the core sees them: when the current connection's token expires, and
whether moving to a fresh one buys time. The shell asks the application's provider for a token
before each connection and reports its expiry (`TokenIssued`); the engine arms the token timer
and, when it fires, asks `renewing` whether to move like after a `goAway`.
"""

from __future__ import annotations

import attrs


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
