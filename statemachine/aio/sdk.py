"""Everything this library needs from google-genai beyond its public API, in one place.

The SDK offers no way to read one message without the per-turn `receive()` generator, to ping,
or to abort a socket whose server does not answer the close: those go through the private
members named in `PRIVATE_MEMBERS`. `tests/test_architecture.py` checks each of them against the
installed release and fails naming the member when a release changes it; CI runs it against the
oldest and the newest google-genai that `pyproject.toml` allows.

It also says what an exception raised by the SDK or websockets shows happened (`observe`: the
kind of failure, whether a close frame came and which one this client sent), and whether a
connect got as far as opening a connection (`watch_connect`); the core decides what that means.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import inspect
import logging
import re
import ssl
from collections.abc import Callable, Coroutine
from typing import Any

import attrs
from google import genai
from google.genai import _transformers as sdk_transformers
from google.genai import errors as genai_errors
from google.genai import live as genai_live
from google.genai import types
from google.genai.live import AsyncSession
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from ..core.events import Failure, Operation
from ..errors import SettingsError, TokenProviderError

Message = types.LiveServerMessage

#: The private members used, and what for.
PRIVATE_MEMBERS: dict[str, str] = {
    "AsyncSession._receive": "read exactly one server message (receive() stops at turnComplete)",
    "AsyncSession._ws": "the websockets connection: ping for the round trip, abort on close, "
                        "write audio chunks encoded once (frames.py, checked against the SDK)",
    "google.genai._transformers.t_model": "check the model name when the session is made",
    "BaseApiClient._websocket_ssl_ctx": "give the library's connections a logger that never "
                                         "shows the API key or a handle, and see when a "
                                         "connect opens its connection (watch_connect)",
    "BaseApiClient.api_key": "keep the key out of every text the library produces",
    "BaseApiClient._http_options": "a client for one ephemeral token with the application's "
                                   "base URL, TLS and headers",
    "websockets Connection.recv_messages.put": "when each server message arrived, so the "
                                               "replay window counts the time it waited",
    "websockets Connection.recv_messages.frames.queue": "the messages queued before arrivals "
                                                        "were stamped (stamp_arrivals)",
}


async def receive_one(sdk: AsyncSession) -> Message:
    """The next server message; raises as the SDK does (APIError on a close)."""
    return await sdk._receive()


def stamp_arrivals(sdk: AsyncSession, clock: Callable[[], float]) -> Callable[[], float | None]:
    """Stamp each server message with `clock()` when websockets queues it; the returned
    function gives the stamp of the message read last (call it once per message read). Without
    the member (another websockets) every stamp is None and the caller falls back.

    Messages queued already (the service's first handle comes with setupComplete, before
    `connect()` returns) get the time of this call: they arrived before it, so before any input
    the connection carries was written. Left without a stamp, the first of them would take the
    stamp of the next message to arrive, and every message after it its successor's, for the
    life of the connection: a handle would look as if it had waited less than it did, and
    input written meanwhile would count as covered (lost at the next resume)."""
    assembler = getattr(sdk._ws, "recv_messages", None)
    put = getattr(assembler, "put", None)
    if put is None:
        return lambda: None
    queued = getattr(getattr(assembler, "frames", None), "queue", ())
    waiting = sum(1 for frame in queued if getattr(frame, "fin", True))
    # rarely more than one: a list (an empty deque is 0.6 KB)
    stamps: list[float] = [clock()] * waiting if waiting else []

    def stamped(frame: Any) -> None:
        put(frame)
        if frame.fin:
            stamps.append(clock())

    assembler.put = stamped  # type: ignore[union-attr]  # the instance's, not the class's
    return lambda: stamps.pop(0) if stamps else None


def api_client(client: genai.Client) -> Any:
    """The client's `BaseApiClient`, which an `AsyncSession` is made with."""
    return client._api_client


def websocket(sdk: AsyncSession) -> Any:
    """The session's websockets connection (None if the SDK no longer keeps it as `_ws`)."""
    return getattr(sdk, "_ws", None)


def write_text(sdk: AsyncSession, text: str) -> Coroutine[Any, Any, None]:
    """Send a client message the library encoded itself (`frames`) on the session's websocket,
    as the SDK's own send methods do."""
    send: Coroutine[Any, Any, None] = sdk._ws.send(text)
    return send


async def ping(sdk: AsyncSession, within: float) -> float:
    """One WebSocket ping: the round trip in seconds."""
    async with asyncio.timeout(within):
        waiter = await sdk._ws.ping()
        return float(await waiter)


async def close(sdk: AsyncSession, within: float) -> None:
    """Close within `within` seconds; when the server does not answer the close frame in time, abort
    the transport (the SDK's close has no bound)."""
    ws = sdk._ws
    transport = getattr(ws, "transport", None)
    if transport is not None and _backed_up(transport):
        transport.abort()  # the server stopped reading: a close frame would only queue
        return
    with contextlib.suppress(Exception):
        async with asyncio.timeout(within):
            await sdk.close()
    if transport is not None and not transport.is_closing():
        transport.abort()


def _backed_up(transport: Any) -> bool:
    """Whether the socket's write buffer is at its high-water mark (writing is paused)."""
    try:
        return bool(transport.get_write_buffer_size() >= transport.get_write_buffer_limits()[1])
    except (AttributeError, NotImplementedError):
        return False


#: What a send on a connection that has closed raises (the receiving side reports the close).
SEND_AFTER_CLOSE = (ConnectionClosed,)


def session_id(sdk: AsyncSession) -> str | None:
    done = getattr(sdk, "setup_complete", None)
    return getattr(done, "session_id", None) if done is not None else None


def time_scale(client: genai.Client) -> float:
    """The clock of the service the client talks to: 1 for the real one; the emulator's
    clients carry the emulator's `time_scale`."""
    scale = getattr(client, "_statemachine_time_scale", 1.0)
    return float(scale) if isinstance(scale, int | float) and scale > 0 else 1.0


def api_key(client: genai.Client) -> str | None:
    """The client's API key or ephemeral token, so the core can keep it out of every text."""
    key = getattr(getattr(client, "_api_client", None), "api_key", None)
    return key if isinstance(key, str) else None


#: websockets' client logger for this library's connections: at DEBUG, websockets writes every
#: request header (the API key) and the first bytes of every frame (handles) to its logger.
WEBSOCKET_LOGGER = logging.getLogger("statemachine.websockets")
_SECRET_HEADERS = frozenset({"x-goog-api-key", "authorization"})
_HANDLE_FIELD = re.compile(r'("(?:new_?[hH]andle|handle)"\s*:\s*")[^"]*')


class _RedactWebsocketLogs(logging.Filter):
    """Never let a key, a token or a handle through the websockets logger."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) == 2 and record.msg == "> %s: %s" \
                and str(args[0]).lower() in _SECRET_HEADERS:
            record.args = (args[0], "[redacted]")
        elif isinstance(args, tuple) and args and "handle" in str(args[-1]).lower():
            record.msg, record.args = _HANDLE_FIELD.sub(r"\1[redacted]",
                                                        record.getMessage()), ()
        if "key=" in str(record.msg) or "key=" in str(record.args):
            record.msg = re.sub(r"([?&](?:key|access_token)=)[^&\s]*", r"\1[redacted]",
                                record.getMessage())
            record.args = ()
        return True


WEBSOCKET_LOGGER.addFilter(_RedactWebsocketLogs())


def with_token(client: genai.Client, token: str) -> genai.Client:
    """A client like `client` (base URL, TLS, proxy, the application's headers) that dials
    with the ephemeral `token`: the SDK then takes the constrained endpoint, on v1alpha as it
    requires. The key header of `client` is not carried over."""
    options: types.HttpOptions = client._api_client._http_options
    headers = {k: v for k, v in (options.headers or {}).items()
               if k.lower() not in _SECRET_HEADERS}
    made = genai.Client(api_key=token, vertexai=False, http_options=options.model_copy(
        update={"api_version": "v1alpha", "headers": headers}))
    made._statemachine_time_scale = time_scale(client)  # type: ignore[attr-defined]
    quiet_websocket_logs(made)
    watch_connections(made)
    return made


def quiet_websocket_logs(client: genai.Client) -> None:
    """Give the client's WebSocket connections the redacting logger (unless the application
    chose one): `async_client_args` reach websockets' `connect`, whose `logger` is this."""
    options = getattr(getattr(client, "_api_client", None), "_websocket_ssl_ctx", None)
    if isinstance(options, dict):
        options.setdefault("logger", WEBSOCKET_LOGGER)


def check_model(client: genai.Client, model: str) -> None:
    """Refuse a model name the SDK would refuse at every connect, now, with its reason."""
    try:
        sdk_transformers.t_model(client._api_client, model)
    except (ValueError, TypeError) as exc:
        raise SettingsError(f"model={model!r} is refused by google-genai: {exc}") from exc


@attrs.frozen(kw_only=True)
class Observed:
    """What the shell saw end a connection, for `ConnectionLost` (facts only: the core settles
    what they amount to, `core/failures.py`)."""

    failure: Failure
    operation: Operation | None
    code: int | None = None
    reason: str = ""
    http_status: int | None = None
    #: whether a close frame came from the server (None: not a close)
    close_received: bool | None = None
    #: the close frame this client sent, if any
    sent_code: int | None = None
    sent_reason: str = ""


def observe(exc: BaseException, operation: Operation | None) -> Observed:
    """What an exception from connecting or reading says happened, during `operation` (None:
    the shell cannot tell; the core decides what it calls for). The order is the lookup order:
    the first matching row wins."""
    if isinstance(exc, TokenProviderError):
        return Observed(failure=Failure.TOKEN_PROVIDER, operation=operation,
                        reason=str(exc)[:200])
    closed = _closed_by(exc)
    if closed is not None:  # google-genai's APIError for a close wraps what websockets saw
        rcvd, sent = closed.rcvd, closed.sent
        return Observed(failure=Failure.CLOSED, operation=operation,
                        code=rcvd.code if rcvd is not None else None,
                        reason=rcvd.reason if rcvd is not None else "",
                        close_received=rcvd is not None,
                        sent_code=sent.code if sent is not None else None,
                        sent_reason=sent.reason if sent is not None else "")
    if isinstance(exc, genai_errors.APIError):  # an error message from the server
        return Observed(failure=Failure.CLOSED, operation=operation, code=exc.code,
                        reason=str(exc.details or exc.message or ""))
    if isinstance(exc, InvalidStatus):
        status = exc.response.status_code
        return Observed(failure=Failure.REFUSED, operation=operation, http_status=status,
                        reason=f"handshake refused: HTTP {status}")
    if isinstance(exc, ssl.SSLCertVerificationError):
        return Observed(failure=Failure.TLS, operation=operation, reason=f"{exc.verify_message}")
    if isinstance(exc, OSError | InvalidHandshake | TimeoutError):
        return Observed(failure=Failure.NETWORK, operation=operation, reason=_describe(exc))
    if isinstance(exc, ValueError | TypeError | AttributeError | KeyError):
        return Observed(failure=Failure.INVALID_DATA, operation=operation,
                        reason=_describe(exc))
    return Observed(failure=Failure.UNEXPECTED, operation=operation, reason=_describe(exc))


def _closed_by(exc: BaseException) -> ConnectionClosed | None:
    """The websockets close behind `exc`: itself, or the one google-genai's `APIError` was
    raised while handling (the SDK raises it inside `except ConnectionClosed`, and gives 1006
    when no close frame came; the close itself says whether one did)."""
    if isinstance(exc, ConnectionClosed):
        return exc
    context = exc.__context__
    if isinstance(exc, genai_errors.APIError) and isinstance(context, ConnectionClosed):
        return context
    return None


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:200]


#: set in the task that connects (`watch_connect`): whether google-genai opened a connection
_OPENED: contextvars.ContextVar[list[bool] | None] = contextvars.ContextVar(
    "statemachine_connection_opened", default=None)


def _unknown() -> bool | None:
    return None


#: what `watch_connect` returns when it cannot watch the client's connect
NOT_WATCHED: Callable[[], bool | None] = _unknown


def watch_connect(client: Any) -> Callable[[], bool | None]:
    """Watch the connect about to run in the current task on `client`: the returned function
    says whether google-genai got as far as opening a connection (before that it was building
    the request; after, the server took part), or None when the client's connections cannot be
    watched (`watch_connections` could not hook them)."""
    options = _websocket_options(client)
    if options is None or not isinstance(options.get("create_connection"), _Opening):
        return NOT_WATCHED
    opened: list[bool] = []
    _OPENED.set(opened)
    return lambda: bool(opened)


class _Opening:
    """websockets' `create_connection`, marking the connect of the current task as opened."""

    def __init__(self, make: Callable[..., Any]) -> None:
        self.make = make

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        opened = _OPENED.get()
        if opened is not None:
            opened.append(True)
        return self.make(*args, **kwargs)


def _websocket_options(client: Any) -> dict[str, Any] | None:
    options = getattr(getattr(client, "_api_client", None), "_websocket_ssl_ctx", None)
    return options if isinstance(options, dict) else None


def _connect_takes_create_connection() -> bool:
    """Whether the websockets connect google-genai calls takes `create_connection` (websockets'
    asyncio client, 13.0 on; google-genai falls back to the legacy one without it)."""
    try:
        connect = getattr(genai_live, "ws_connect")  # noqa: B009  (not in its __all__)
        return "create_connection" in inspect.signature(connect).parameters
    except (AttributeError, TypeError, ValueError):
        return False


CAN_WATCH = _connect_takes_create_connection()


def watch_connections(client: Any) -> None:
    """Let `watch_connect` see the client's WebSocket connections open: websockets makes each
    with `create_connection` (the application's own, if it gave one, still does the work).
    Without the member or the parameter, nothing changes and the watch says it cannot tell."""
    options = _websocket_options(client)
    if not CAN_WATCH or options is None or isinstance(options.get("create_connection"),
                                                      _Opening):
        return
    options["create_connection"] = _Opening(options.get("create_connection") or ClientConnection)
