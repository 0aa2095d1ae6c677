"""A server that refuses to resume a session while it still holds the session's old socket.

The client closes the old socket before it resumes, but a server may never see that close (a
middlebox ate it, the server was busy): it then answers every resume with 1011 ("old socket
still open", "still connected on another stream") until its own timeout drops the old socket,
which may take long. Retried like a transient fault, such a session sat in `resuming` for the
whole backoff budget (15 s and more) before giving up.

The rule (`closecodes.Disposition.WAIT`): such a refusal spends no retry budget; the resume is
tried again after the usual backoff delays, for at most `RetryPolicy.old_socket_wait` seconds
(5 s by default) from the first refusal, each attempt announced (`ResumeWaiting`). A refusal
past that bound gives the handle up (the guard `old_socket_wait_spent`): the session expires
and the policy starts a fresh one (`ContextLost`) or ends it (`OnExpired.TERMINATE`). A resume
that succeeds, or any other outcome, ends the wait.
"""

from __future__ import annotations

import random

from .policy import RetryPolicy


class OldSocketWait:
    """Since when the server has refused resumes for an old socket, and how often."""

    __slots__ = ("since", "tries")

    def __init__(self) -> None:
        self.since: float | None = None
        self.tries = 0

    def refused(self, now: float) -> None:
        """A resume was refused because the server holds the old socket."""
        if self.since is None:
            self.since = now
        self.tries += 1

    def reset(self) -> None:
        """Anything else happened (a setup completed, another failure): the wait is over."""
        self.since, self.tries = None, 0

    def spent(self, now: float, retry: RetryPolicy) -> bool:
        """Whether `old_socket_wait` has run out since the first refusal."""
        return self.since is not None and now - self.since >= retry.old_socket_wait

    def gives_up_in(self, now: float, retry: RetryPolicy) -> float:
        """Seconds left before a refusal gives the handle up."""
        since = self.since if self.since is not None else now
        return max(0.0, since + retry.old_socket_wait - now)

    def delay(self, now: float, retry: RetryPolicy, rng: random.Random) -> float:
        """The wait before the next resume: the usual backoff, never past the bound (a last
        attempt is made right at it)."""
        return min(retry.delay(self.tries, rng.random()), self.gives_up_in(now, retry))
