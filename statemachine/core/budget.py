"""The retry budget: the only writer of the attempt counts, and the one place that says when a
failed session tries again at once, after a backoff, or not at all.

Two budgets, both from `RetryPolicy`: attempts in the current drop (`per_drop_attempts`; a drop
ends when a connection stays up for `stable_after`, answers a turn, or is left by a rotation),
and attempts over a sliding window of the whole session (`per_session_attempts` within
`session_window`), which fresh restarts spend too.
"""

from __future__ import annotations

import attrs

from .policy import RetryPolicy


@attrs.define(kw_only=True, slots=True)
class RetryBudget:
    """Connection attempts of the current drop, and when each retry or fresh restart began."""

    policy: RetryPolicy
    drop_attempts: int = 0
    #: a list: it holds a few times at most, and an empty deque is 0.6 KB a session
    started: list[float] = attrs.Factory(list)

    def session_attempts(self, now: float) -> int:
        """Retries and fresh restarts within the session window ending at `now` (no change)."""
        horizon = now - self.policy.session_window
        return sum(1 for at in self.started if at > horizon)

    def left(self, now: float) -> bool:
        """Whether both budgets allow another attempt (guard `retry_budget_left`)."""
        return (self.drop_attempts < self.policy.per_drop_attempts
                and self.session_attempts(now) < self.policy.per_session_attempts)

    def session_left(self, now: float) -> bool:
        """Whether the session budget allows another fresh start (guard `fresh_allowed`)."""
        return self.session_attempts(now) < self.policy.per_session_attempts

    def streak_over(self) -> None:
        """A connection worked (or was left on purpose): the next failure starts a new drop."""
        self.drop_attempts = 0

    def spend(self, now: float) -> None:
        """Count one attempt against both budgets."""
        self.drop_attempts += 1
        horizon = now - self.policy.session_window
        started = self.started
        while started and started[0] <= horizon:
            del started[0]
        started.append(now)

    def backoff(self, now: float, unit_random: float) -> float:
        """Spend an attempt that waits: the delay before it (exponential, with jitter)."""
        self.spend(now)
        return self.policy.delay(self.drop_attempts, unit_random)

    def at_once_after_close(self, now: float, *, resumable: bool, spends: bool) -> bool:
        """Whether the attempt after a lost connection goes at once: only the first of a drop,
        after a close that calls for a plain resume. It spends the budget unless the close is
        one that does not (an idle hang-up, say). False: back off instead."""
        if self.drop_attempts != 0 or not resumable:
            return False
        if spends:
            self.spend(now)
        return True

    def fresh_at_once(self, now: float) -> bool:
        """Whether a fresh session starts at once (spending an attempt): only when the
        connections before did not keep failing. False: back off instead."""
        if self.drop_attempts != 0:
            return False
        self.spend(now)
        return True
