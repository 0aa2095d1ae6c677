"""One line for frameworks: `statemachine.instrument()` makes every google-genai Live connection
a lifecycle-managed session.

Voice frameworks (Pipecat, LiveKit Agents, Google ADK, pydantic-ai) open their Live sessions with
`client.aio.live.connect(...)` and drive them with their own reconnect logic. After
`instrument()`, that call returns an `InstrumentedSession`: google-genai's `AsyncSession` surface
over a `LiveSession`. To the framework it is one endless healthy connection: `goAway` and
resumption updates never reach it (so it does not restart or resume on its own), rotations and
resumes happen underneath without losing input or cutting a reply, and its `close()` ends the
session. `wrap_client(client)` does the same for one client object instead of the whole process.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any, cast

import attrs
from google import genai
from google.genai import errors as genai_errors
from google.genai import types
from google.genai.live import AsyncLive

from ..core.actions import Ended, Notice
from ..core.events import Failure
from ..core.policy import Policy
from ..core.records import AuditRecord, AuditSink
from ..errors import SessionTerminated
from ..stores import HandleStore
from ..telemetry import Telemetry, resolve
from . import dropin
from .arguments import check_session_args, unknown_options
from .session import LiveSession
from .translate import interaction_idle

Message = types.LiveServerMessage
Connect = Callable[..., contextlib.AbstractAsyncContextManager[Any]]
#: a fixed key, or one derived from the model and config of each connect
SessionKey = str | Callable[[str, types.LiveConnectConfig], str]

#: google-genai's own connect, as it was before this module replaced anything
_SDK_CONNECT: Connect = AsyncLive.connect
_lock = threading.Lock()


@attrs.frozen(kw_only=True)
class Options:
    """What `connect` accepts, for every session the instrumented connect opens."""

    policy: Policy | None = None
    store: HandleStore | None = None
    session_key: SessionKey | None = None
    audit: AuditSink | None = None
    on_event: Callable[[AuditRecord], None] | None = None
    on_notice: Callable[[Notice], None] | None = None
    lease_ttl: float = 30.0
    lease_wait: float = 0.0
    telemetry: Telemetry | bool | None = None


@attrs.define
class _State:
    options: Options | None = None
    replaced: Connect | None = None


_state = _State()


def instrument(
    *,
    policy: Policy | None = None,
    store: HandleStore | None = None,
    session_key: SessionKey | None = None,
    audit: AuditSink | None = None,
    on_event: Callable[[AuditRecord], None] | None = None,
    on_notice: Callable[[Notice], None] | None = None,
    lease_ttl: float = 30.0,
    lease_wait: float = 0.0,
    telemetry: Telemetry | bool | None = None,
) -> None:
    """Make every `client.aio.live.connect(...)` in this process return a lifecycle-managed
    session, with the same options as `statemachine.connect` (`telemetry=True`: each session
    reports OpenTelemetry traces and metrics). Calling it again replaces the options;
    `uninstrument()` restores google-genai's own connect."""
    check_session_args("instrument", policy=policy, store=store, session_key=session_key,
                       audit=audit, on_event=on_event, on_notice=on_notice, lease_ttl=lease_ttl,
                       lease_wait=lease_wait, key_may_be_callable=True)
    resolve(telemetry)  # a missing OpenTelemetry is said now, not at the first connect
    options = Options(policy=policy, store=store, session_key=session_key, audit=audit,
                      on_event=on_event, on_notice=on_notice, lease_ttl=lease_ttl,
                      lease_wait=lease_wait, telemetry=telemetry)
    with _lock:
        if _state.replaced is None:
            _state.replaced = AsyncLive.connect
            AsyncLive.connect = _instrumented_connect  # type: ignore[method-assign,assignment]
        _state.options = options


def uninstrument() -> None:
    """Give google-genai its own connect back; sessions already open stay managed."""
    with _lock:
        if _state.replaced is not None:
            AsyncLive.connect = _state.replaced  # type: ignore[method-assign,assignment]
        _state.replaced = None
        _state.options = None


def is_instrumented() -> bool:
    return _state.replaced is not None


def wrap_client(client: genai.Client, **options: Any) -> genai.Client:
    """A copy of `client` whose `aio.live.connect` opens managed sessions (the rest is shared
    with `client`), for frameworks that accept a client object. Options as `instrument()`."""
    known = tuple(f.name for f in attrs.fields(Options))
    unknown_options("wrap_client", options, known)
    check_session_args("wrap_client", key_may_be_callable=True,
                       **{k: v for k, v in options.items() if k != "telemetry"})
    resolve(options.get("telemetry"))
    wrapped = copy.copy(client)
    aio = copy.copy(client.aio)
    aio._live = _ManagedLive(client.aio.live, Options(**options))
    wrapped._aio = aio
    return wrapped


class _ManagedLive(AsyncLive):
    """`client.aio.live` of a wrapped client."""

    def __init__(self, live: AsyncLive, options: Options) -> None:
        self.__dict__.update(live.__dict__)
        self._options = options

    def connect(  # type: ignore[override]
        self, *, model: str, config: types.LiveConnectConfigOrDict | None = None
    ) -> contextlib.AbstractAsyncContextManager[InstrumentedSession]:
        return _managed(self, model, config, self._options)


def _instrumented_connect(
    self: AsyncLive, *, model: str, config: types.LiveConnectConfigOrDict | None = None
) -> contextlib.AbstractAsyncContextManager[Any]:
    options = _state.options
    if options is None or isinstance(self, _ManagedLive):
        return _sdk_connect()(self, model=model, config=config)
    return _managed(self, model, config, options)


def _sdk_connect() -> Connect:
    return _state.replaced or _SDK_CONNECT


class _Direct:
    """The client LiveSession sees: its own connections use google-genai's connect, so they
    are not managed a second time."""

    def __init__(self, live: AsyncLive) -> None:
        self.vertexai = bool(live._api_client.vertexai)
        self._api_client = live._api_client  # the model name is checked against it
        self.aio = self
        self.live = self
        self._live = live

    def connect(self, *, model: str, config: Any = None) -> Any:
        return _sdk_connect()(self._live, model=model, config=config)


@contextlib.asynccontextmanager
async def _managed(
    live: AsyncLive, model: str, config: types.LiveConnectConfigOrDict | None, options: Options
) -> AsyncIterator[InstrumentedSession]:
    session = await _open(live, model, config, options)
    try:
        yield session
    finally:
        await asyncio.shield(session.close())


async def _open(
    live: AsyncLive, model: str, config: types.LiveConnectConfigOrDict | None, options: Options
) -> InstrumentedSession:
    base = types.LiveConnectConfig.model_validate(config or {})
    resumption = base.session_resumption
    handle = resumption.handle if resumption is not None else None
    base = base.model_copy(update={"session_resumption": None})
    key = options.session_key
    if callable(key):
        key = key(model, base)
    lifecycle = LiveSession(
        cast(genai.Client, _Direct(live)), model=model, config=base, policy=options.policy,
        audit=options.audit, on_event=options.on_event, on_notice=options.on_notice,
        store=options.store, session_key=key, lease_ttl=options.lease_ttl,
        lease_wait=options.lease_wait, telemetry=options.telemetry,
    )
    if handle:
        # The framework's own handle (from an earlier run): resumed like a stored one; the
        # lifecycle falls back to a fresh session if the service refuses it.
        lifecycle.core.restore(handle, at=asyncio.get_running_loop().time(), age=0.0)
    try:
        await lifecycle.start()
    except SessionTerminated as exc:
        raise _as_sdk_error(exc, lifecycle.ended) from exc
    return InstrumentedSession(lifecycle)


def _as_sdk_error(exc: SessionTerminated, ended: Ended | None) -> BaseException:
    """What google-genai itself raises for the same end, so a framework's own error handling
    sees what it was written for: a request the SDK refused before dialing (a local failure:
    a config it rejects) as the SDK's own exception, which no framework retries; an end the
    service caused as `APIError` with its close code (1011 when there was none). Raise it
    `from exc`: the session's account (what happened, what to do) stays its cause."""
    cause = exc.__cause__
    if ended is not None and ended.failure == Failure.LOCAL.value and isinstance(cause, Exception):
        exc.__cause__ = None  # the SDK's exception is raised with this one as its cause
        return cause
    code = exc.code if exc.code is not None else 1011
    return genai_errors.APIError(code, {"message": f"session ended: {exc}", "status": None})


def _interaction_complete(content: types.LiveServerContent | None) -> bool:
    """The SDK's end of `receive()`: `interactionStatus` IDLE where sent, else `turnComplete`."""
    if content is None:
        return False
    idle = interaction_idle(content)
    return idle if idle is not None else bool(content.turn_complete)


def absorb(message: Message) -> Message | None:
    """The message without `goAway` and `sessionResumptionUpdate` (None when nothing is left):
    the lifecycle acts on them; a framework that saw them would restart or resume itself."""
    if message.go_away is None and message.session_resumption_update is None:
        return message
    rest = message.model_copy(update={"go_away": None, "session_resumption_update": None})
    return rest if rest.model_dump(exclude_none=True) else None


class InstrumentedSession:
    """google-genai's `AsyncSession` surface over a `LiveSession` (`.lifecycle`).

    `receive()` behaves like the SDK's (it returns after each complete turn, so a framework that
    re-enters it per turn works, and so does one that stays in it); `_receive()` returns one
    message. Messages come across connections without the lifecycle's own signals."""

    def __init__(self, lifecycle: LiveSession) -> None:
        self.lifecycle = lifecycle
        self.session_id: str | None = lifecycle.session_id
        self.setup_complete = types.LiveServerSetupComplete(session_id=lifecycle.session_id)
        self._stream: AsyncIterator[Message] | None = None

    # -- sending ---------------------------------------------------------------------------------

    async def send_client_content(
        self,
        *,
        turns: types.ContentListUnion | types.ContentListUnionDict | None = None,
        turn_complete: bool = True,
    ) -> None:
        await self.lifecycle.send_client_content(turns=turns, turn_complete=turn_complete)

    async def send_realtime_input(
        self,
        *,
        media: types.BlobImageUnionDict | None = None,
        audio: types.BlobOrDict | None = None,
        audio_stream_end: bool | None = None,
        video: types.BlobImageUnionDict | None = None,
        text: str | None = None,
        activity_start: types.ActivityStartOrDict | None = None,
        activity_end: types.ActivityEndOrDict | None = None,
    ) -> None:
        """Like the SDK's: several kinds in one call go out as one message each, in order."""
        await self.lifecycle.send_realtime_input(
            media=media, audio=audio, audio_stream_end=audio_stream_end, video=video, text=text,
            activity_start=activity_start, activity_end=activity_end)

    async def send_tool_response(
        self, *, function_responses: types.FunctionResponseOrListOfFunctionResponseDict
    ) -> None:
        await self.lifecycle.send_tool_response(function_responses=function_responses)

    async def send_context_update(
        self,
        *,
        system_instruction: types.ContentUnion | None = None,
        tools: types.ToolListUnion | None = None,
    ) -> None:
        """A new system instruction and/or tool list, journaled like any input; a fresh session
        starts with the latest ones (see `LiveSession.send_context_update`)."""
        await self.lifecycle.send_context_update(system_instruction=system_instruction,
                                                 tools=tools)

    async def send(self, *, input: Any = None, end_of_turn: bool | None = False) -> None:
        """The SDK's deprecated `send` (still used by some frameworks), with its warning,
        mapped to the journaled kinds of input."""
        dropin.warn_send()
        await self.lifecycle._send_deprecated(input, end_of_turn)

    async def start_stream(
        self, *, stream: AsyncIterator[bytes], mime_type: str
    ) -> AsyncIterator[Message]:
        """The SDK's deprecated `start_stream`, with its warning (see `LiveSession`)."""
        dropin.warn_start_stream()
        async for message in self.lifecycle._start_stream(stream, mime_type):
            kept = absorb(message)
            if kept is not None:
                yield kept

    # -- receiving -------------------------------------------------------------------------------

    async def receive(self) -> AsyncIterator[Message]:
        """Messages until the current turn is complete, like `AsyncSession.receive()`."""
        while True:
            message = await self._receive()
            yield message
            if _interaction_complete(message.server_content):
                return

    async def _receive(self) -> Message:
        """The next message for the framework; after the session ended, the error google-genai
        raises on a closed connection."""
        while True:
            if self._stream is None:
                self._stream = self.lifecycle.receive()
            try:
                message = await anext(self._stream)
            except StopAsyncIteration:
                self._stream = None
                raise genai_errors.APIError(
                    1000, {"message": "the session was closed", "status": None}) from None
            except SessionTerminated as exc:
                self._stream = None
                raise _as_sdk_error(exc, self.lifecycle.ended) from exc
            except BaseException:
                self._stream = None  # a cancelled read ended the generator: start a new one
                raise
            kept = absorb(message)
            if kept is not None:
                return kept

    async def close(self) -> None:
        """End the session: nothing reconnects after it."""
        await self.lifecycle.close()
