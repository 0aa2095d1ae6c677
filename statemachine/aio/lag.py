"""How late the event loop runs: a bound on how long a server message may have waited (in the
socket, then in websockets' queue) before the session acted on it.

The Gemini API's replay window counts input as covered by a resumable handle when it went out a
round trip before the handle *arrived*. The session only knows when it *processed* the handle;
on a busy loop that can be tens of milliseconds later, and input written in between would be
taken as covered while the server issued the handle without it: a silent loss at the next
resume. The lag is added to the window (a possible duplicate instead)."""

from __future__ import annotations

import asyncio
import weakref

#: how often the loop is sampled, and how fast a past lag is forgotten (per sample)
INTERVAL = 0.02
DECAY = 0.9


class LagMonitor:
    """One per event loop, running while a session uses it: a callback every `INTERVAL`
    measures how late it ran; `recent` is the largest lateness, decaying."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._users = 0
        self._handle: asyncio.TimerHandle | None = None
        self._due = 0.0
        self.recent = 0.0

    def acquire(self) -> None:
        self._users += 1
        if self._handle is None:
            self._schedule()

    def release(self) -> None:
        self._users = max(0, self._users - 1)
        if self._users == 0 and self._handle is not None:
            self._handle.cancel()
            self._handle = None
            self.recent = 0.0

    def arrived(self) -> float:
        """When bytes the loop handles now reached the socket, at the earliest: now, unless the
        loop runs late, when they may have waited since the sample it missed was due (less one
        interval: the loop may have been busy since just after the last sample)."""
        now = self._loop.time()
        if self._handle is None or now <= self._due:
            return now
        return self._due - INTERVAL

    def lag(self) -> float:
        """The current bound: the recent lateness, or how late the next sample already is."""
        overdue = self._loop.time() - self._due if self._handle is not None else 0.0
        return max(self.recent, overdue, 0.0)

    def _schedule(self) -> None:
        self._due = self._loop.time() + INTERVAL
        self._handle = self._loop.call_at(self._due, self._sample)

    def _sample(self) -> None:
        late = max(0.0, self._loop.time() - self._due)
        self.recent = max(late, self.recent * DECAY)
        self._schedule()


_MONITORS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LagMonitor] = (
    weakref.WeakKeyDictionary())


def monitor(loop: asyncio.AbstractEventLoop) -> LagMonitor:
    """The loop's monitor (made on first use)."""
    found = _MONITORS.get(loop)
    if found is None:
        found = _MONITORS[loop] = LagMonitor(loop)
    return found
