"""The engine's bookkeeping: a few records, each replaced whole when what it describes starts
anew (the current `Connection` on every open, the `Turn` when a connection ends, the
`Resumption` handle and the server-side `Span` on a fresh restart), and why the last connection
ended (`Loss`). Tool calls have their own record, with their owner (`toolcalls.Calls`)."""

from __future__ import annotations

import attrs

from .closecodes import Disposition
from .events import Failure


@attrs.frozen(kw_only=True)
class Loss:
    """Why the current connection is gone, classified."""

    disposition: Disposition
    why: str
    code: int | None = None
    reason: str = ""
    http_status: int | None = None
    failure: Failure = Failure.CLOSED
    spends_budget: bool = True
    hint: str = ""


@attrs.define(kw_only=True, slots=True)
class Counters:
    """Running totals for the audit summary and the application."""

    inputs: int = 0
    sent: int = 0
    replayed: int = 0
    replayed_as_history: int = 0
    repeated_replies: int = 0
    continued: int = 0
    dropped: int = 0
    confirmed: int = 0
    rotations: int = 0
    resumes: int = 0
    fresh_restarts: int = 0
    connections: int = 0


@attrs.define(kw_only=True, slots=True)
class Connection:
    """The current connection (generation 0: none yet); replaced by every open."""

    generation: int = 0
    open: bool = False  # opened and not yet left or lost
    setup_done: bool = False
    rtt: float | None = None  # measured round trip (bounds the crossing window)
    next_index: int = 1  # index of the next client message (transparent mode)
    go_away_deadline: float | None = None
    live_at: float | None = None  # when setup completed
    opened_at: float | None = None  # when it was opened (the reconnect time ends at setup)
    answered: bool = False  # a turn completed on it: it stayed up long enough to work


@attrs.define(kw_only=True, slots=True)
class Resumption:
    """The latest resumable handle and when it was issued (monotonic); emptied by a fresh
    restart."""

    handle: str | None = attrs.field(default=None, repr=False)
    at: float | None = None


@attrs.define(kw_only=True, slots=True)
class Span:
    """The server-side session that the caps and compression apply to; a fresh restart starts a
    new one."""

    started_at: float | None = None
    video_sent: bool = False
    compressed: bool = False
    prompt_tokens: int = 0
    #: the server holds something of the session (a resumable handle, a turn answered): a
    #: fresh session then loses context; before, it loses nothing
    confirmed: bool = False


@attrs.define(kw_only=True, slots=True)
class Turn:
    """The model's turn on the current connection; a connection's end replaces it."""

    in_flight: bool = False
    #: when its first message (a model chunk or a tool call) arrived
    began_at: float | None = None
    text: list[str] = attrs.Factory(list)
    #: the turn completed but the service says the interaction is still going on (3.x
    #: `interactionStatus: IN_PROGRESS`, extended thinking): not a safe point yet
    busy: bool = False
