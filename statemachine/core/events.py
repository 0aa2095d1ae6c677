"""What the I/O layer feeds the core: parsed server messages, closes, timers, application calls.

Every event carries `at`, a monotonic timestamp from the session's clock, so the core never reads
time itself. Events from a connection carry its `generation`; the core ignores (and audits) those
of a connection it has already left, so a late close of an old socket cannot disturb the new one.
"""

from __future__ import annotations

import enum
from typing import Any

import attrs


class InputKind(enum.StrEnum):
    """Kinds of client messages; replay rules differ per kind."""

    CONTENT = "content"  # send_client_content
    TEXT = "text"  # send_realtime_input(text=)
    AUDIO = "audio"
    VIDEO = "video"
    AUDIO_STREAM_END = "audio_stream_end"
    ACTIVITY_START = "activity_start"
    ACTIVITY_END = "activity_end"
    TOOL_RESPONSE = "tool_response"
    #: send_context_update: a new system instruction and/or tool list (3.x `contextUpdate`)
    CONTEXT_UPDATE = "context_update"


#: Input kinds after which the model answers (a turn boundary on the client side).
TURN_TRIGGERS = frozenset(
    {InputKind.TEXT, InputKind.AUDIO_STREAM_END, InputKind.ACTIVITY_END, InputKind.TOOL_RESPONSE}
)


class Timer(enum.StrEnum):
    """Timers the core arms through actions; the I/O layer reports them with `TimerFired`."""

    SETUP = "setup"  # setupComplete did not arrive in time
    ROTATE = "rotate"  # goAway deadline minus margin
    SESSION_CAP = "session_cap"  # session duration cap without compression
    BACKOFF = "backoff"  # wait before the next connection attempt
    LEASE = "lease"  # renew the store lease
    STORE_RETRY = "store_retry"  # try the store again after it failed
    TOKEN = "token"  # the connection's ephemeral token nears its expiry
    HAND_OFF = "hand_off"  # the hand-off's limit: hand off now, cutting what is under way


@attrs.frozen(kw_only=True)
class Event:
    at: float


@attrs.frozen(kw_only=True)
class ConnectionEvent(Event):
    generation: int


@attrs.frozen(kw_only=True)
class Connect(Event):
    """The application opens the session."""


@attrs.frozen(kw_only=True)
class SetupComplete(ConnectionEvent):
    session_id: str | None = None


@attrs.frozen(kw_only=True)
class TokenIssued(ConnectionEvent):
    """The connection of `generation` dials with an ephemeral token from the application's
    provider, valid until `expires_at` (this clock; None: the provider did not say)."""

    expires_at: float | None = None


@attrs.frozen(kw_only=True)
class GoAway(ConnectionEvent):
    """`time_left`: seconds until the server ends the connection; None when the server sent no
    usable value."""

    time_left: float | None


@attrs.frozen(kw_only=True)
class ResumptionUpdate(ConnectionEvent):
    handle: str | None
    resumable: bool
    last_consumed_index: int | None = None
    #: how long the update may have waited before `at` (the I/O layer's event loop ran this
    #: late recently): input written in that time may have crossed it too
    lag: float = 0.0


@attrs.frozen(kw_only=True)
class Latency(ConnectionEvent):
    """A measured round trip on this connection (a WebSocket ping after setup)."""

    rtt: float


@attrs.frozen(kw_only=True)
class ModelOutput(ConnectionEvent):
    """A `modelTurn` chunk: a turn is in flight. `text` feeds history replay."""

    text: str | None = None


@attrs.frozen(kw_only=True)
class ToolCall(ConnectionEvent):
    """`ids` of the calls in one `toolCall` message; `keys`, when the shell gives them, one
    per id: the call's name and arguments as canonical text (an identical call repeated in a
    turn has the same key)."""

    ids: tuple[str, ...]
    keys: tuple[str, ...] = ()


@attrs.frozen(kw_only=True)
class ToolCallCancellation(ConnectionEvent):
    ids: tuple[str, ...]


@attrs.frozen(kw_only=True)
class GenerationComplete(ConnectionEvent):
    pass


@attrs.frozen(kw_only=True)
class Interrupted(ConnectionEvent):
    pass


@attrs.frozen(kw_only=True)
class TurnComplete(ConnectionEvent):
    """`reply_text`: the turn's text as the I/O layer collected it; None: the core joins the
    texts it was given. `interaction_idle`: the service's `interactionStatus` sent with it
    (None where the service sends none, as 2.5 models)."""

    reply_text: str | None = None
    interaction_idle: bool | None = None


@attrs.frozen(kw_only=True)
class InteractionStatus(ConnectionEvent):
    """A later `interactionStatus` on its own (3.x: IDLE once extended thinking ended)."""

    idle: bool


@attrs.frozen(kw_only=True)
class Usage(ConnectionEvent):
    """`usageMetadata` as reported (the audio counts from its per-modality details)."""

    prompt_tokens: int
    total_tokens: int | None = None
    response_tokens: int | None = None
    prompt_audio_tokens: int | None = None
    response_audio_tokens: int | None = None


class Failure(enum.StrEnum):
    """What kind of failure ended a connection, as the shell observed it (the core decides what
    it calls for: `closecodes.FAILURE_RULES`)."""

    CLOSED = "closed"  # a WebSocket close: `code` and `reason`
    REFUSED = "refused"  # the handshake was answered with an HTTP status
    NETWORK = "network"  # connect failed or the socket broke without a close code
    TLS = "tls"  # the server's certificate was not trusted
    MALFORMED = "malformed"  # the server sent a frame the protocol does not allow
    LOCAL = "local"  # the client library refused the request before it was sent
    SETUP_TIMEOUT = "setup_timeout"  # no setupComplete in time (the core's own timer)
    TOKEN_PROVIDER = "token_provider"  # the application's token provider failed or timed out
    #: an application callback (on_notice, on_event, the audit sink) raised: the application's
    #: error, never a connection's (`CallbackFailed`; it ends the session, no retry)
    CALLBACK = "callback"
    #: observed only (the core settles it, `failures.settle`; never in a record): google-genai
    #: raised on data it was handling (ValueError, TypeError, KeyError, AttributeError). Whose
    #: data, the request being built (LOCAL) or a message the server sent (MALFORMED), follows
    #: from `ConnectionLost.operation`
    INVALID_DATA = "invalid_data"
    #: observed only (settled as LOCAL): an exception of a kind the shell does not know
    UNEXPECTED = "unexpected"


class Operation(enum.StrEnum):
    """What the shell was doing when a connection failed: a fact it knows for certain, since it
    is the one doing it."""

    #: asking the application's token provider for this connection's token
    TOKEN = "token"
    #: google-genai building the connect request (model, config, URL) and dialing: no
    #: connection made yet, so nothing the server sent can be involved
    REQUEST = "request"
    #: a connection is made: TLS, the WebSocket handshake, the setup message and its answer
    SETUP = "setup"
    #: reading a server message on a live connection
    RECEIVE = "receive"


@attrs.frozen(kw_only=True)
class ConnectionLost(ConnectionEvent):
    """The connection of `generation` is gone: a close code, a refused handshake, a failure.

    The shell reports what it saw; the core settles what it was (`failures.settle`) before it
    records or acts on it. For a close: `close_received` False says no close frame came (then
    `code` is None: RFC 6455 calls that 1006, a rule the core applies, `closecodes`), and
    `sent_code`/`sent_reason` give the close frame this client had sent, if any (1009 for a
    server frame over the size limit, 1011 for a keepalive timeout). None: not said (`code`
    is then taken as it is)."""

    code: int | None = None
    reason: str = ""
    http_status: int | None = None
    during_setup: bool = False
    failure: Failure = Failure.CLOSED
    #: what the shell was doing (None: not said)
    operation: Operation | None = None
    close_received: bool | None = None
    sent_code: int | None = None
    sent_reason: str = ""


@attrs.frozen(kw_only=True)
class CallbackFailed(Event):
    """An application-supplied callable (`callback` names it: on_notice, on_event, audit)
    raised `error`. It is the application's bug, not the network's: the session ends at once
    (no retry, no resume), and the shell hands the exception itself to the application."""

    callback: str
    error: str


@attrs.frozen(kw_only=True)
class TimerFired(Event):
    timer: Timer
    token: int


@attrs.frozen(kw_only=True)
class ClientInput(Event):
    """The application sends a message. `payload` is opaque to the core (the SDK's kwargs)."""

    kind: InputKind
    payload: Any = attrs.field(default=None, eq=False, repr=False)
    turn_complete: bool = False
    tool_ids: tuple[str, ...] = ()
    #: a tool response whose every part carries a `scheduling` (the answer to NON_BLOCKING
    #: calls): the model does not answer it as a turn (SILENT never, WHEN_IDLE later)
    scheduled: bool = False


@attrs.frozen(kw_only=True)
class Close(Event):
    """The application closes the session."""

    reason: str = "closed by the application"


@attrs.frozen(kw_only=True)
class FatalError(Event):
    reason: str


@attrs.frozen(kw_only=True)
class SendRefused(Event):
    """google-genai refused to send the input `seq` for a reason other than a closed connection
    (a payload it cannot serialise, for example): sent again, it would be refused again."""

    seq: int
    reason: str


class StoreOp(enum.StrEnum):
    """The store operations the core asks for."""

    SAVE = "save"
    FORGET = "forget"
    RENEW = "renew"
    RELEASE = "release"
    WRITE = "write"  # journal entries written through, the audio mark
    HAND_OVER = "hand_over"  # handle and journal made durable, lease released, marker set
    RECLAIM = "reclaim"  # a hand-off whose outcome is unknown: take the lease back if ours


@attrs.frozen(kw_only=True)
class StoreDone(Event):
    """A store action succeeded."""

    op: StoreOp


@attrs.frozen(kw_only=True)
class StoreFailed(Event):
    """A store action raised `StoreError` (unreachable or failing): `error` says how."""

    op: StoreOp
    error: str


@attrs.frozen(kw_only=True)
class HandOff(Event):
    """The application hands the session to another worker (`LiveSession.hand_off`): at the
    next safe point, or at the latest `limit` seconds from now."""

    limit: float


@attrs.frozen(kw_only=True)
class LeaseLost(Event):
    """The store answered that another worker holds this session's lease."""


def is_turn_trigger(event: ClientInput) -> bool:
    """Whether the model will answer after this input."""
    if event.kind is InputKind.CONTENT:
        return event.turn_complete
    if event.kind is InputKind.TOOL_RESPONSE and event.scheduled:
        return False
    return event.kind in TURN_TRIGGERS
