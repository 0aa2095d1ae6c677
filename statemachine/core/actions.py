"""What the core asks the I/O layer to do, and what it tells the application.

Driver contract: after each `Lifecycle.feed`, perform the returned actions in order, before feeding
the next event. `OpenConnection` means: connect (closing nothing: a `CloseConnection` for the old
socket always comes first), wait for `setupComplete` and feed `SetupComplete`, or feed
`ConnectionLost` with what it saw (the failure, the `Operation` under way, the close frames;
`failures.settle` decides what that was). `Send` actions go out in order on the connection named;
report each written one with `Lifecycle.written()` (until then no handle covers it), and feed
`SendRefused` for one the SDK would not send (any error but a closed connection).
`ArmTimer` replaces any timer of the same kind; feed `TimerFired` with its token when it expires.
`StoreAction`s may be performed in the background, one at a time and in order, without holding
the session up; feed `StoreDone`, `StoreFailed` (on `StoreError`) or, when a lease renewal
finds another holder, `LeaseLost`. Model text: pass every chunk's text to
`Lifecycle.model_chunk()` and feed `ModelOutput` only when it returns True.
"""

from __future__ import annotations

from typing import Any

import attrs

from .events import StoreOp, Timer
from .journal import Entry
from .persistence import StoredHandle


@attrs.frozen(kw_only=True)
class Action:
    pass


@attrs.frozen(kw_only=True)
class OpenConnection(Action):
    generation: int
    handle: str | None = attrs.field(repr=False)
    transparent: bool = False
    #: what the setup carries besides the application's config: the latest
    #: `system_instruction` and `tools` of its context updates on a new session (the journal
    #: no longer holds those updates), the ones a handle covers on a resume (those it does
    #: not cover are replayed after it, in order). Empty: the config as given.
    context: dict[str, Any] = attrs.field(factory=dict, repr=False, eq=False)

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
    #: `entry` is a turn the resumed session holds: send `clientContent` with `turnComplete`
    #: and no turns, so the model answers it from the accumulated prompt
    continuation: bool = False


@attrs.frozen(kw_only=True)
class ArmTimer(Action):
    timer: Timer
    delay: float
    token: int


@attrs.frozen(kw_only=True)
class CancelTimer(Action):
    timer: Timer


@attrs.frozen(kw_only=True)
class StoreAction(Action):
    """Something the handle store must do for the session stored under `key`."""

    key: str

    @property
    def op(self) -> StoreOp:
        raise NotImplementedError


@attrs.frozen(kw_only=True)
class SaveHandle(StoreAction):
    """Save the handle; in the same atomic write, forget the stored entries in `forget` (the
    handle covers them, or they were reported dropped) and set the audio mark (`audio`, see
    `writethrough.audio_mark`; None: unchanged)."""

    record: StoredHandle
    forget: tuple[int, ...] = ()
    audio: str | None = None

    @property
    def op(self) -> StoreOp:
        return StoreOp.SAVE


@attrs.frozen(kw_only=True)
class WriteJournal(StoreAction):
    """Write journal entries through to the store (`put`: before they go on the wire), forget
    others, set the audio mark; `clear`: forget every entry first (the session is over)."""

    put: tuple[Entry, ...] = ()
    forget: tuple[int, ...] = ()
    audio: str | None = None
    clear: bool = False

    @property
    def op(self) -> StoreOp:
        return StoreOp.WRITE


@attrs.frozen(kw_only=True)
class HandOver(StoreAction):
    """A planned hand-off, in one atomic write: the latest handle (`record`, None when there is
    none to resume), every journal entry no handle covers (`entries`, audio included), a
    marker saying it was handed off, and the lease released so the next worker takes it at
    once. Feed `StoreDone`, or `StoreFailed` when the outcome is unknown."""

    record: StoredHandle | None
    entries: tuple[Entry, ...]
    cut: str = ""

    @property
    def op(self) -> StoreOp:
        return StoreOp.HAND_OVER


@attrs.frozen(kw_only=True)
class Reclaim(StoreAction):
    """After a failed hand-over: take the lease back if no other worker acquired it since
    (`StoreDone`), or learn that one did (`LeaseLost`: the hand-off happened after all)."""

    ttl: float

    @property
    def op(self) -> StoreOp:
        return StoreOp.RECLAIM


@attrs.frozen(kw_only=True)
class ForgetHandle(StoreAction):
    @property
    def op(self) -> StoreOp:
        return StoreOp.FORGET


@attrs.frozen(kw_only=True)
class RenewLease(StoreAction):
    ttl: float

    @property
    def op(self) -> StoreOp:
        return StoreOp.RENEW


@attrs.frozen(kw_only=True)
class ReleaseLease(StoreAction):
    @property
    def op(self) -> StoreOp:
        return StoreOp.RELEASE


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
    #: turns the resumed session holds whose reply was cut: the model was asked to answer them
    continued: int = 0


@attrs.frozen(kw_only=True)
class TokenExpiring(Notice):
    """The ephemeral token of the current connection expires in `expires_in` seconds, and its
    expiry ends the connection whatever the resumption. `renewing`: the session is moving to
    a connection with a fresh token from the provider; otherwise (no provider, or it gave no
    later token) the session ends then, with a fatal close."""

    expires_in: float
    renewing: bool


@attrs.frozen(kw_only=True)
class InputDropped(Notice):
    """An input will never reach the model: `reason` says why. `turn`: it was a turn the
    model would have answered. `in_band`: the receive stream marks it right here with
    `interrupted`+`turnComplete` (this notice comes first), so a reader waiting for its reply
    is not left waiting; False for a turn whose end is marked already (the cut reply that was
    answering it, or the `toolCallCancellation` of the call a dropped response answers)."""

    seq: int
    kind: str
    reason: str
    turn: bool = False
    in_band: bool = False


@attrs.frozen(kw_only=True)
class ToolCallsCancelled(Notice):
    """Calls the model issued on a connection that ended before a handle covered them: the
    resumed session does not know them. The stream carries a `toolCallCancellation` for them;
    a response the application still sends is dropped (`InputDropped`), and the replayed turn
    makes the model ask again."""

    ids: tuple[str, ...]


@attrs.frozen(kw_only=True)
class ToolCallEnded(Notice):
    """How the tool call `id` ended; exactly one per call id the model issued. `outcome`:
    "answered" (the application's response went out), "cancelled" (the server cancelled it
    with `toolCallCancellation`, as on barge-in or, on 3.8 with Vertex, new input during a
    BLOCKING call: a response sent for it later is dropped, never sent), or "lost" (it will
    never be answered: the connection that issued it ended before a handle covered it, the
    context was lost, or the session ended; `reason` says which)."""

    id: str
    outcome: str
    reason: str = ""


@attrs.frozen(kw_only=True)
class ToolCallRepeated(Notice):
    """The model called a tool again with the same name and arguments in the same turn (3.8
    does, 2-5 times, when a tool returned nothing): `id` is the new call, `first` the earlier
    one. The application can answer it from what it answered `first` with."""

    id: str
    first: str
    name: str = ""


@attrs.frozen(kw_only=True)
class RepeatedReply(Notice):
    """The model will answer `seq` again: its first reply arrived, its handle did not. With
    `possible`: the turn went out less than a round trip before a mid-turn handle (3.x), so
    the resumed session may hold it already; it is sent again (the model may take it in twice
    and answer twice: a possible duplicate, never a loss)."""

    seq: int
    possible: bool = False


@attrs.frozen(kw_only=True)
class ReplyInterrupted(Notice):
    """A connection ended while the model was replying (a forced rotation at the goAway deadline,
    or a drop). Discard the partial reply: the unanswered input is replayed and answered anew."""

    generation: int
    reason: str


@attrs.frozen(kw_only=True)
class ResumeWaiting(Notice):
    """The server refused to resume the session because it still holds the session's old
    socket (1011 at setup: it never saw that socket close). The session tries again in
    `retry_in` seconds (attempt `attempt`); a refusal `gives_up_in` seconds from now or later
    gives the handle up (`RetryPolicy.old_socket_wait`): a fresh session (`ContextLost`) or
    the end, as `Policy.on_expired` says."""

    reason: str
    attempt: int
    retry_in: float
    gives_up_in: float


@attrs.frozen(kw_only=True)
class ContextLost(Notice):
    """A fresh session replaced one that expired: re-seed the conversation.

    `unsent` holds the input the old session never confirmed; it was not sent to the new session
    (it would arrive before the re-seeded history) and is also reported as dropped."""

    reason: str
    unsent: tuple[Entry, ...] = attrs.field(repr=False)


@attrs.frozen(kw_only=True)
class StoreDegraded(Notice):
    """The handle store failed: the session goes on with its handle in memory and retries the
    store with backoff. A crash of this process now would lose the handle."""

    error: str


@attrs.frozen(kw_only=True)
class StoreRecovered(Notice):
    """The handle store answers again; the latest handle is being written to it."""


@attrs.frozen(kw_only=True)
class HandedOff(Notice):
    """The session was handed to another worker (`hand_off()`): the store holds its latest
    handle and the `transferred` inputs no handle covered; `connect(..., session_key=key)`
    anywhere resumes it and replays them. `cut`: what the hand-off's limit cut (a reply, tool
    calls), empty at a safe point. Input sent here after the hand-off was written is reported
    dropped (`InputDropped`; audio as one `AudioGap`)."""

    key: str
    transferred: int
    resumable: bool
    cut: str = ""


@attrs.frozen(kw_only=True)
class HandOffFailed(Notice):
    """The hand-off could not be made durable (`reason`): the session stays live on this
    worker, where it was, and replays what it holds. `taken_over`: False (it stays here)."""

    reason: str


@attrs.frozen(kw_only=True)
class TookOver(Notice):
    """This session took `key` over from another worker: `handed_off` (a planned hand-off) or
    not (that worker stopped without one: a crash). `restored`: the inputs read back from the
    store, replayed once the session is live as a local resume would."""

    key: str
    handed_off: bool
    restored: int


@attrs.frozen(kw_only=True)
class AudioGap(Notice):
    """Audio that never reached the model: `chunks` chunks sent from `since` to `until` (Unix
    times). After a crash it is what the worker that died had written to the store when it
    last wrote (`at_least`: it may have taken more until it died); audio is not stored per
    chunk. After a hand-off, the audio sent to the old worker once the hand-off was written."""

    since: float
    until: float
    chunks: int
    at_least: bool
    reason: str


@attrs.frozen(kw_only=True)
class Ended(Notice):
    """The session is over: `reason` says why and what to do; `failure` names the kind of
    connection failure that ended it (`events.Failure`), if one did."""

    reason: str
    code: int | None = None
    by_application: bool = False
    failure: str | None = None


@attrs.frozen(kw_only=True)
class Notify(Action):
    notice: Notice
