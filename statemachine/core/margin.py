"""How long before a goAway deadline a rotation must begin: learned from the reconnects.

A rotation closes the old socket and opens, sets up and replays on a new one; the session must
begin it early enough to be done before the server's deadline, and no earlier: every moment
kept in hand is a moment in which a reply in progress could have finished (a goAway with less
notice than the margin cuts the reply at once, and the turn is then answered again in full).

So the margin is not fixed. Each connection's time from being opened to `setupComplete`
(closing the old socket first, the handshake, a token fetch, the setup) is measured; the margin
is `FACTOR` times the slowest of the last `SAMPLES`, never below `Limits.go_away_margin_floor`
nor above `Limits.go_away_margin` (the cap, also used before anything was measured). A
reconnect that takes 10 ms gives the floor (0.25 s by default): a 1 s notice then leaves 0.75 s
for the reply to reach a safe point.
"""

from __future__ import annotations

from .policy import Limits

#: how many times the slowest recent reconnect the margin keeps in hand (load, a slower dial)
FACTOR = 3.0
#: how many recent reconnects are remembered
SAMPLES = 8


class ReconnectTimes:
    """The last few measured reconnect times, and the margin they call for."""

    __slots__ = ("_samples",)

    def __init__(self) -> None:
        self._samples: list[float] = []

    def add(self, seconds: float) -> None:
        """A connection took `seconds` from being opened to `setupComplete`."""
        self._samples.append(max(0.0, seconds))
        if len(self._samples) > SAMPLES:
            del self._samples[0]

    @property
    def slowest(self) -> float | None:
        """The slowest remembered reconnect (None: none measured yet)."""
        return max(self._samples) if self._samples else None

    def margin(self, limits: Limits) -> float:
        """The margin to keep before a goAway deadline: learned, between the floor and the cap
        (the cap wins if the floor is set above it)."""
        slowest = self.slowest
        if slowest is None:
            return limits.go_away_margin
        learned = max(limits.go_away_margin_floor, FACTOR * slowest)
        return min(limits.go_away_margin, learned)
