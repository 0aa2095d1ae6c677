"""What the core asks the I/O layer to do, and what it tells the application.

Driver contract: after each `Lifecycle.feed`, perform the returned actions in order, before feeding
the next event. `OpenConnection` means: connect (closing nothing: a `CloseConnection` for the old
socket always comes first), wait for `setupComplete` and feed `SetupComplete`, or feed
`ConnectionLost(during_setup=True)`. `Send` actions go out in order on the connection named.
`ArmTimer` replaces any timer of the same kind; feed `TimerFired` with its token when it expires.
"""

from __future__ import annotations

import attrs

from .events import Timer
from .journal import Entry


@attrs.frozen(kw_only=True)
class Action:
    pass


@attrs.frozen(kw_only=True)
class OpenConnection(Action):
    generation: int
    handle: str | None = attrs.field(repr=False)
    transparent: bool = False

    @property
    def resume(self) -> bool:
        """Whether this opens an existing session (with a handle) rather than a new one."""
        return self.handle is not None


@attrs.frozen(kw_only=True)
class CloseConnection(Action):
    generation: int
    code: int = 1000
    reason: str = ""


@attrs.frozen(kw_only=True)
class Send(Action):
    generation: int
    entry: Entry
    replay: bool = False
    as_history: bool = False


@attrs.frozen(kw_only=True)
class ArmTimer(Action):
    timer: Timer
    delay: float
    token: int


@attrs.frozen(kw_only=True)
class CancelTimer(Action):
    timer: Timer


@attrs.frozen(kw_only=True)
class Notice:
    """Something the application is told about (through `Notify`)."""


@attrs.frozen(kw_only=True)
class Resumed(Notice):
    generation: int
    replayed: int
    as_history: int
    repeated: int
    dropped: int


@attrs.frozen(kw_only=True)
class InputDropped(Notice):
    seq: int
    kind: str
    reason: str


@attrs.frozen(kw_only=True)
class RepeatedReply(Notice):
    """The model will answer `seq` again: its first reply arrived, its handle did not."""

    seq: int


@attrs.frozen(kw_only=True)
class ReplyInterrupted(Notice):
    """A connection ended while the model was replying (a forced rotation at the goAway deadline,
    or a drop). Discard the partial reply: the unanswered input is replayed and answered anew."""

    generation: int
    reason: str


@attrs.frozen(kw_only=True)
class ContextLost(Notice):
    """A fresh session replaced one that expired: re-seed the conversation.

    `unsent` holds the input the old session never confirmed; it was not sent to the new session
    (it would arrive before the re-seeded history) and is also reported as dropped."""

    reason: str
    unsent: tuple[Entry, ...] = attrs.field(repr=False)


@attrs.frozen(kw_only=True)
class Ended(Notice):
    reason: str
    code: int | None = None
    by_application: bool = False


@attrs.frozen(kw_only=True)
class Notify(Action):
    notice: Notice
