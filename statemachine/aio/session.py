"""LiveSession: the asyncio shell that performs the lifecycle core's actions with google-genai.

Every event (a server message, a close, a timer, an application send, a store answer) goes
through `_feed`, which is synchronous: the core decides and the returned actions are performed
(or handed to a task) before anything else runs, in order, as `actions.py`'s driver contract
asks. Nothing in it awaits, so there is no lock to hold and nothing an application can cancel
half-way (an `asyncio.timeout` around `receive()` cannot leave actions unperformed). Sends go to a
writer task per connection, so a server that stops reading blocks only that writer, never the
lifecycle; a connection's close runs in a task that the next connection waits for (the old socket
is closed first). Timers are `loop.call_later` callbacks, so a silent server cannot stop the
goAway deadline from firing.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import warnings
from collections import deque
from collections.abc import AsyncIterator, Callable
from types import TracebackType
from typing import Any, cast

import attrs
from google import genai
from google.genai import errors as genai_errors
from google.genai import types
from google.genai.live import AsyncSession

from ..core import writethrough
from ..core.actions import (
    Action,
    ArmTimer,
    CancelTimer,
    CloseConnection,
    Ended,
    InputDropped,
    Notice,
    Notify,
    OpenConnection,
    ReplyInterrupted,
    Send,
    StoreAction,
    ToolCallsCancelled,
)
from ..core.engine import Lifecycle
from ..core.events import (
    CallbackFailed,
    ClientInput,
    Close,
    Connect,
    ConnectionLost,
    Event,
    InputKind,
    Latency,
    ModelOutput,
    Operation,
    SendRefused,
    SetupComplete,
    Timer,
    TimerFired,
    TokenIssued,
)
from ..core.persistence import Persistence
from ..core.policy import Backend, Policy
from ..core.records import AuditRecord, AuditSink, capture_notice_hooks, default_sink
from ..core.wording import ends_in_error, shown_cause, terminated_error
from ..errors import (
    CallbackError,
    LocalMisuse,
    SessionTerminated,
    SettingsError,
)
from ..stores import HandleStore, MemoryStore
from ..telemetry import Telemetry, session_observer
from ..telemetry import resolve as telemetry_settings
from . import dropin, fleet, frames, lag, setupconfig, tokens, translate
from . import sdk as adapter
from .arguments import check_session_args
from .callbacks import Callbacks
from .fanout import END, Fanout
from .flag import Flag
from .persistence import StoreWorker
from .reader import Reader
from .tokens import TokenProvider
from .writer import Outbox, write_now, write_queued

Message = types.LiveServerMessage
#: notices `notices_seen` keeps: a resume's drops of stale audio fill it (a notice per chunk);
#: 256 of them were 20-25 KB a busy session, 64 about 4 KB (every notice reaches `notices()`)
NOTICES_KEPT = 16


def websocket_args(policy: Policy | None = None) -> dict[str, Any]:
    """`HttpOptions.async_client_args` for the client: the policy's keepalive (the SDK's 20 s
    default causes false "1011 keepalive ping timeout" closes) and a short close timeout."""
    keepalive = (policy or Policy()).keepalive
    return {
        "ping_interval": keepalive.ping_interval,
        "ping_timeout": keepalive.ping_timeout,
        "close_timeout": keepalive.close_timeout,
        "logger": adapter.WEBSOCKET_LOGGER,  # never shows the API key or a handle
    }


@attrs.define
class _Conn:
    generation: int
    task: asyncio.Task[None] | None = None
    sdk: AsyncSession | None = None
    closing: bool = False
    #: the sends for this connection, in order, written by `writer`
    outbox: Outbox = attrs.field(factory=Outbox)
    writer: asyncio.Task[None] | None = None
    #: the background's pending read, cancelled when the application takes over reading
    bg_read: asyncio.Task[Message] | None = None
    takeover: bool = False
    #: set when the application's own read failed: the connection task then ends
    failed: Flag = attrs.field(factory=Flag)
    #: when the message read last arrived (`adapter.stamp_arrivals`), one call per message
    arrived: Callable[[], float | None] | None = None


class LiveSession:
    """A Live API session that survives connection rotations, drops and session limits.

    A drop-in for google-genai's `AsyncSession`: every public method of the installed SDK's
    (`send_*`, `send_context_update`, the deprecated `send` and `start_stream`), with
    `receive()` that keeps yielding across connections and turns until the session ends (the
    SDK's stops at every `turnComplete`). Use through `statemachine.connect(...)`.
    """

    #: slots: a session's attribute dict alone was 1.7 KB (`__dict__` stays for subclasses'
    #: and applications' own attributes, made only when first used)
    __slots__ = (
        "__dict__",
        "__weakref__",
        "_app_wake",
        "_base_config",
        "_callbacks",
        "_client",
        "_closing",
        "_conns",
        "_core",
        "_ended",
        "_events",
        "_frames",
        "_handoff",
        "_lag",
        "_lag_held",
        "_last_error",
        "_live",
        "_loop",
        "_messages",
        "_model",
        "_notices",
        "_on_event",
        "_on_notice",
        "_reader",
        "_seen",
        "_sink",
        "_started",
        "_store",
        "_store_settled",
        "_stored",
        "_tasks",
        "_timers",
        "_token_client",
        "_token_provider",
        "backend",
    )

    def __init__(
        self,
        client: genai.Client,
        *,
        model: str,
        config: types.LiveConnectConfig | dict[str, Any] | None = None,
        policy: Policy | None = None,
        session_id: str | None = None,
        audit: AuditSink | None = None,
        on_event: Callable[[AuditRecord], None] | None = None,
        on_notice: Callable[[Notice], None] | None = None,
        store: HandleStore | None = None,
        session_key: str | None = None,
        lease_ttl: float = 30.0,
        lease_wait: float = 0.0,
        token_provider: TokenProvider | None = None,
        telemetry: Telemetry | bool | None = None,
    ) -> None:
        fleet.refuse_if_draining()
        check_session_args(
            "LiveSession", policy=policy, on_event=on_event, on_notice=on_notice, audit=audit,
            store=store, session_key=session_key, session_id=session_id, lease_ttl=lease_ttl,
            lease_wait=lease_wait, token_provider=token_provider)
        reporting = telemetry_settings(telemetry)
        if store is not None and session_key is None:
            raise SettingsError("a store needs a session_key: the name the session is stored "
                                f"under (store={type(store).__name__}, session_key=None)")
        adapter.check_model(client, model)
        adapter.quiet_websocket_logs(client)
        adapter.watch_connections(client)
        if token_provider is not None:
            _check_token_provider(client, token_provider)
        self._token_provider = token_provider
        self._token_client: tuple[str, genai.Client] | None = None
        self._store: StoreWorker | None = None
        persistence = None
        if session_key is not None:
            persistence = Persistence(key=session_key, lease_ttl=lease_ttl)
            self._store = StoreWorker(store or DEFAULT_STORE, persistence, lease_wait,
                                      self._feed_one, self._now)
        self._client = client
        #: audio chunks are journaled as bytes and MIME text, written as the SDK would (`frames`)
        self._frames = frames.available(client)
        self._model = model
        self.backend = Backend.VERTEX if client.vertexai else Backend.GEMINI
        policy, self._base_config = setupconfig.base_config(client, config, policy)
        self._sink = audit if audit is not None else default_sink()
        self._on_event = on_event
        self._on_notice = _with_captures(on_notice)
        #: the application's callables are called through it: an exception is its own
        self._callbacks = Callbacks()
        self._core = Lifecycle(
            policy=policy, backend=self.backend, session_id=session_id, audit=self._audit,
            persistence=persistence, fresh_tokens=token_provider is not None,
        )
        if reporting is not None:  # off: nothing imported, nothing on the record path
            self._on_event = _both(session_observer(
                reporting, core=self._core, model=model, vertex=self.backend is Backend.VERTEX),
                on_event)
        key = adapter.api_key(client)
        if key:
            self._core.add_secret(key, "[api key]")
        self._conns: dict[int, _Conn] = {}
        #: closes in progress: the next connection opens once they are done
        self._closing: set[asyncio.Task[None]] = set()
        self._timers: dict[Timer, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._messages: deque[Any] = deque()  # read by receive(), never awaited
        self._live: _Conn | None = None  # the connection the application reads from
        #: why the last connection failed, chained to `SessionTerminated`
        self._last_error: BaseException | None = None
        self._store_settled = Flag()
        self._store_settled.set()
        #: no input written through waits for the store's answer
        self._stored = Flag()
        self._stored.set()
        self._app_wake = Flag()
        self._events = Fanout()
        self._notices = Fanout()
        self._started = Flag()
        self._ended = Flag()
        self._loop = asyncio.get_running_loop()
        self._reader = Reader(self._loop, self._on_message, self._read_lost)
        self._lag = lag.monitor(self._loop)
        self._lag_held = False
        #: the last notices, oldest first: a list (a deque's block alone is 0.5 KB), made at the
        #: first notice
        self._seen: list[Notice] | None = None
        self._handoff: asyncio.Future[Notice] | None = None  # a hand-off's outcome

    # -- what the application sees ---------------------------------------------------------------

    @property
    def notices_seen(self) -> deque[Notice]:
        """The most recent notices (the last `NOTICES_KEPT`: a session may run for hours, and a
        resume can drop seconds of stale audio, a notice per chunk), oldest first, as a copy:
        changing it changes nothing in the session. Every notice reaches `on_notice` and
        `notices()`."""
        return deque(self._seen or (), maxlen=NOTICES_KEPT)

    @property
    def state(self) -> str:
        """The lifecycle state: "connecting", "streaming", "draining", ..."""
        return self._core.state.value

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The event loop the session runs on."""
        return self._loop

    @property
    def session_id(self) -> str:
        """The session's id in every audit record (given, or made up)."""
        return self._core.session_id

    @property
    def core(self) -> Lifecycle:
        """The sans-I/O engine (read-only use: counters, snapshot, journal)."""
        return self._core

    @property
    def ended(self) -> Ended | None:
        """How the session ended (`Ended`), None while it runs."""
        return self._core.end

    async def start(self) -> None:
        """Open the first connection (resuming a valid stored handle, if a store holds one);
        return once it is live, raise if the session ended."""
        if not self._core.transparent and not self._lag_held:  # the window needs the lag
            self._lag.acquire()
            self._lag_held = True
        if self._store is not None:
            record = await self._store.start()
            wall = time.time()
            if record is not None and self._core.restore(
                    record.handle, at=self._now(), age=wall - record.issued_at,
                    compressed=record.compressed, generation=record.generation,
                    expires_in=record.expires_at - wall):
                age = wall - record.issued_at
                self._core.note("handle_restored", at=self._now(),
                                key=self._store.persistence.key, age_s=round(age, 3),
                                generation=record.generation)
                self._report_callback_error()
            restored = self._store.restored  # the core says whether it was a take-over
            self._perform(self._core.restore_journal(
                self._store.entries(self._now), handed_off=restored.hand_off is not None,
                audio=writethrough.read_mark(restored.audio)))
        self._feed(Connect(at=self._now()))
        waiters = [self._spawn(self._started.wait()), self._spawn(self._ended.wait())]
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:  # the other waits as long as the session lives (1.5 KB a session): not kept
            for waiter in waiters:
                waiter.cancel()
        if not self._started.is_set():
            await self._shutdown()
            raise self._terminated()
        fleet.register(self)

    async def hand_off(self, within: float = 10.0) -> fleet.HandOffResult:
        """Hand this session to the next worker that connects its session_key: at the next
        safe point (no reply cut), or after `within` seconds cutting what is under way (the
        result says what), the store gets the latest handle and every input no handle covers,
        the lease is released at once, and the session ends here (`HandedOff`, `Ended`). If
        the store does not take it, the session stays live here (`HandOffFailed`, and the
        result's reason). Needs a session_key and a store the next worker shares."""
        return await fleet.hand_off(self, within)

    def _await_hand_off(self) -> asyncio.Future[Notice]:
        """The future a hand-off's outcome (`HandedOff` or `HandOffFailed`) completes."""
        if self._handoff is None or self._handoff.done():
            self._handoff = self._loop.create_future()
        return self._handoff

    async def send_client_content(
        self,
        *,
        turns: types.ContentListUnion | types.ContentListUnionDict | None = None,
        turn_complete: bool = True,
    ) -> None:
        """Like `AsyncSession.send_client_content`; journaled until a handle covers it. With a
        store, it returns once the store holds it (written before it goes on the wire): a crash
        of this process then loses nothing of it (docs/fleet.md)."""
        await self._input(InputKind.CONTENT, {"turns": turns, "turn_complete": turn_complete},
                          turn_complete=turn_complete)

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
        """Like `AsyncSession.send_realtime_input`, `media=` included; several kinds in one
        call go out as one message each, each journaled, in the order `dropin.realtime_parts`
        gives."""
        if audio is not None and media is None and video is None and text is None \
                and audio_stream_end is None and activity_start is None and activity_end is None:
            # the hot path, 50 a second: `_input` inlined
            frame = frames.chunk(audio) if self._frames else None
            self._feed(ClientInput(at=self._loop.time(), kind=InputKind.AUDIO,
                                   payload={"audio": audio} if frame is None else frame))
            return
        parts = dropin.realtime_parts(
            media=media, audio=audio, audio_stream_end=audio_stream_end, video=video,
            text=text, activity_start=activity_start, activity_end=activity_end)
        if not parts and audio_stream_end is False:
            return  # `audioStreamEnd: false` tells the model nothing
        if not parts:
            raise LocalMisuse(
                "send_realtime_input needs at least one of media, audio, video, text, "
                "audio_stream_end=True, activity_start, activity_end")
        for kind, payload in parts:
            await self._input(kind, payload)

    async def send_tool_response(
        self, *, function_responses: types.FunctionResponseOrListOfFunctionResponseDict
    ) -> None:
        """Like `AsyncSession.send_tool_response`; never lost across a rotation, never sent
        for a call the server cancelled (`ToolCallEnded` says what became of each call); with
        a store, written to it before it goes on the wire, as turns are."""
        ids, scheduled = dropin.tool_response_ids(function_responses)
        self._feed(ClientInput(at=self._now(), kind=InputKind.TOOL_RESPONSE,
                               payload={"function_responses": function_responses},
                               tool_ids=ids, scheduled=scheduled))
        await self._durable()

    async def send_context_update(
        self,
        *,
        system_instruction: types.ContentUnion | None = None,
        tools: types.ToolListUnion | None = None,
    ) -> None:
        """Like `AsyncSession.send_context_update` (3.x): a new system instruction and/or tool
        list, journaled and sent in order with the other input, replayed after a resume until a
        handle covers it. A fresh session's setup carries the latest of them (see
        docs/models-and-tools.md)."""
        if system_instruction is None and tools is None:
            raise LocalMisuse("send_context_update needs system_instruction or tools (tools=[] "
                              "clears the tool list)")
        payload: dict[str, Any] = {}
        if system_instruction is not None:
            payload["system_instruction"] = system_instruction
        if tools is not None:
            payload["tools"] = tools
        await self._input(InputKind.CONTEXT_UPDATE, payload)

    async def send(self, *, input: Any = None, end_of_turn: bool | None = False) -> None:
        """The SDK's deprecated `send`, with its warning: each kind of input it takes goes
        through the journaled calls above."""
        dropin.warn_send()
        await self._send_deprecated(input, end_of_turn)

    async def _send_deprecated(self, input: Any, end_of_turn: bool | None) -> None:
        """The SDK's deprecated `send()`, mapped to the send method its input calls for."""
        if not input:  # the SDK's: no input is the end of the turn
            await self.send_client_content(turns=None, turn_complete=True)
            return
        input = dropin.parse_send(input)
        if isinstance(input, types.LiveClientContent):
            await self.send_client_content(
                turns=cast(types.ContentListUnion, input.turns or []),
                turn_complete=bool(input.turn_complete or end_of_turn))
        elif isinstance(input, types.LiveClientRealtimeInput):
            for chunk in input.media_chunks or []:
                await self.send_realtime_input(media=chunk)
            if any(v is not None for v in (input.audio, input.video, input.text,
                                           input.activity_start, input.activity_end)) \
                    or input.audio_stream_end:
                await self.send_realtime_input(
                    audio=input.audio, video=input.video, text=input.text,
                    audio_stream_end=input.audio_stream_end,
                    activity_start=input.activity_start, activity_end=input.activity_end)
        elif isinstance(input, types.LiveClientToolResponse):
            await self.send_tool_response(function_responses=input.function_responses or [])
        elif dropin.is_function_responses(input):
            await self.send_tool_response(function_responses=cast(Any, input))
        elif isinstance(input, types.Blob):
            await self.send_realtime_input(media=input)
        else:
            await self.send_client_content(turns=dropin.as_turns(input),
                                           turn_complete=bool(end_of_turn))

    async def start_stream(
        self, *, stream: AsyncIterator[bytes], mime_type: str
    ) -> AsyncIterator[Message]:
        """The SDK's deprecated `start_stream`, with its warning: each chunk of `stream` is sent
        as realtime media (journaled) while the server's messages are yielded; it ends when the
        stream does. An exception from `stream` is raised here."""
        dropin.warn_start_stream()
        async for message in self._start_stream(stream, mime_type):
            yield message

    async def _start_stream(
        self, stream: AsyncIterator[bytes], mime_type: str
    ) -> AsyncIterator[Message]:
        """`start_stream`: send the stream's chunks while yielding the server's messages; the
        stream ending ends it."""
        pump = self._loop.create_task(self._pump(stream, mime_type))
        messages = self.receive()
        try:
            while not pump.done():
                read: asyncio.Task[Message] = self._loop.create_task(
                    _next(messages))
                await asyncio.wait([read, pump], return_when=asyncio.FIRST_COMPLETED)
                if not read.done():
                    read.cancel()
                    with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                        await read
                    break
                try:
                    yield read.result()
                except StopAsyncIteration:
                    break
            if pump.done() and not pump.cancelled() and pump.exception() is not None:
                raise cast(BaseException, pump.exception())
        finally:
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await pump

    async def _pump(self, stream: AsyncIterator[bytes], mime_type: str) -> None:
        """Send each chunk of the application's stream as realtime input."""
        async for data in stream:
            await self.send_realtime_input(media=types.Blob(data=data, mime_type=mime_type))

    async def receive(self) -> AsyncIterator[Message]:
        """Server messages from every connection, across turns, until the session ends.

        Ends normally after `close()`; raises `SessionTerminated` (with the reason and close
        code) when the session ended any other way. While the application waits here, its own
        task reads from the connection; while it is away, a background reader processes the
        server's messages (handles, goAway) and queues them (`reader.py`). One task at a time: a
        second task waiting here while another does gets `LocalMisuse`."""
        while True:
            messages = self._messages
            if messages:
                item = messages.popleft()
                if item is END:
                    messages.append(END)
                    if ends_in_error(self._core.end, self._callbacks.error is not None):
                        raise self._terminated()
                    return
                yield item
                continue
            self._reader.claim()
            try:
                conn = self._live
                if conn is None or conn.sdk is None or conn.closing or conn.failed.is_set():
                    self._app_wake.clear()
                    await self._app_wake.wait()
                    continue
                message = await self._reader.read_as_application(
                    conn, lambda: bool(self._messages))
            finally:
                self._reader.release()
            if message is not None:
                yield message

    def _deliver(self, item: Any) -> None:
        """Queue a message for `receive()` and wake it."""
        self._messages.append(item)
        self._app_wake.set()

    async def flush_handle(self, within: float | None = None) -> bool:
        """Wait until the latest resumable handle is written to the store: after it, a crash of
        this process loses nothing the model has acknowledged. False when the store is down
        (the handle is kept in memory and the store retried) or `within` seconds (default: the
        lease time) ran out; True without a store."""
        if self._store is None:
            return True
        bound = within if within is not None else self._store.persistence.lease_ttl
        try:
            async with asyncio.timeout(bound):
                await self._store_settled.wait()
        except TimeoutError:
            return False
        return self._core.store_holds_handle

    def events(self) -> AsyncIterator[AuditRecord]:
        """Every audit record of this session (the same records as the audit log), live. Each
        iterator buffers what it has not consumed yet: iterate it, or use `on_event`."""
        return self._events.subscribe()

    def notices(self) -> AsyncIterator[Notice]:
        """What the application is told: Resumed, InputDropped, ContextLost, RepeatedReply,
        ToolCallEnded, ToolCallRepeated, Ended, ..."""
        return self._notices.subscribe()

    async def close(self) -> None:
        """Close the session: the socket is closed, every task stops, nothing reconnects."""
        self._feed(Close(at=self._now()))  # the core ignores it once the session has ended
        await self._shutdown()

    async def __aenter__(self) -> LiveSession:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await asyncio.shield(self.close())

    # -- feeding the core ------------------------------------------------------------------------

    def _now(self) -> float:
        return self._loop.time()

    async def _input(self, kind: InputKind, payload: dict[str, Any], *, turn_complete: bool = False,
                     tool_ids: tuple[str, ...] = ()) -> None:
        """Journal an input with the core (which sends it when it may), then wait while it is
        written through to the store."""
        self._feed(ClientInput(at=self._now(), kind=kind, payload=payload,
                                     turn_complete=turn_complete, tool_ids=tool_ids))
        await self._durable()

    async def _durable(self) -> None:
        """Wait until the input just fed is in the store, when it is written through
        (core/writethrough.py): after it, a crash of this process loses nothing of it. Bounded,
        as every store operation is."""
        if not self._stored.is_set() and self._store is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(2 * self._store.persistence.store_timeout + 0.5):
                    await self._stored.wait()

    def _feed(self, *events: Event) -> None:
        """Feed events in order and perform the actions each returns (synchronously: see the
        module's docstring)."""
        core = self._core
        for event in events:
            actions = core.feed(event)
            if actions:
                self._perform(actions)
        if self._callbacks.error is not None and not self._callbacks.reported:
            self._report_callback_error()
        if self._store is None:
            return  # nothing to settle: flush_handle() answers True without a store
        if core.store_settled:
            self._store_settled.set()
        else:
            self._store_settled.clear()
        if core.sends_wait_for_store:
            self._stored.clear()
        else:
            self._stored.set()

    async def _feed_one(self, event: Event) -> None:
        """`_feed` for one event, as a coroutine (the store worker's callback)."""
        self._feed(event)

    def _report_callback_error(self) -> None:
        """An application callback raised: tell the core (once), which ends the session; the
        exception itself reaches the application from `receive()` (`CallbackError`)."""
        callbacks = self._callbacks
        if callbacks.error is None or callbacks.reported:
            return
        callbacks.reported = True
        self._feed(CallbackFailed(at=self._now(), callback=callbacks.name,
                                  error=callbacks.describe()))

    def _terminated(self) -> SessionTerminated | CallbackError:
        """The exception for a session that ended other than by `close()`, chained to the last
        connection failure that led there; `CallbackError` (the callback's exception chained)
        when an application callback raised."""
        callbacks = self._callbacks
        error = terminated_error(self._core.end,
                                 callbacks.name if callbacks.error is not None else None)
        if isinstance(error, CallbackError):  # the application's own exception, chained
            error.__cause__ = callbacks.error
            return error
        error.__cause__ = shown_cause(self._last_error, self._core.redact)
        return error

    def _perform(self, actions: list[Action]) -> None:
        """Perform the core's actions, in order: sends, connections, closes, timers, store
        operations, notices. Nothing here decides: each action says what to do."""
        for action in actions:
            if isinstance(action, Send):
                conn = self._conns.get(action.generation)
                if conn is None or conn.closing:
                    continue  # still journaled: replayed later
                if conn.sdk is not None and conn.outbox.idle:
                    write_now(conn.outbox, conn.sdk, action, conn.generation,
                              self._core.written, self._now, self._refused)
                else:
                    conn.outbox.put_nowait(action)
            elif isinstance(action, OpenConnection):
                conn = _Conn(generation=action.generation)
                self._conns[action.generation] = conn
                conn.task = self._spawn(self._run_connection(conn, action))
            elif isinstance(action, CloseConnection):
                self._close_connection(action.generation)
            elif isinstance(action, ArmTimer):
                self._cancel_timer(action.timer)
                self._timers[action.timer] = self._loop.call_later(
                    action.delay, self._timer_fired, action.timer, action.token
                )
            elif isinstance(action, CancelTimer):
                self._cancel_timer(action.timer)
            elif isinstance(action, Notify):
                self._notify(action.notice)
            elif isinstance(action, StoreAction) and self._store is not None:
                self._store.perform(action)

    def _timer_fired(self, timer: Timer, token: int) -> None:
        """A timer the core armed fell due: feed it back with its token."""
        self._timers.pop(timer, None)
        self._feed(TimerFired(at=self._now(), timer=timer, token=token))

    def _cancel_timer(self, timer: Timer) -> None:
        """Cancel a timer the core no longer wants."""
        handle = self._timers.pop(timer, None)
        if handle is not None:
            handle.cancel()

    def _audit(self, record: AuditRecord) -> None:
        """One audit record: to the audit sink, the live `events()` stream and `on_event`."""
        self._callbacks.call("audit", self._sink, record)
        self._events.put(record)
        if self._on_event is not None:
            self._callbacks.call("on_event", self._on_event, record)

    def _notify(self, notice: Notice) -> None:
        """One notice: to the live `notices()` stream, `on_notice`, and, for a cut reply or a
        dropped turn, a mark in the stream where the application reads."""
        if self._seen is None:
            self._seen = []
        elif len(self._seen) >= NOTICES_KEPT:
            del self._seen[0]
        self._seen.append(notice)
        self._notices.put(notice)  # the notice first, then its mark in the stream
        if self._on_notice is not None:
            self._callbacks.call("on_notice", self._on_notice, notice)
        if isinstance(notice, ReplyInterrupted) or (
                isinstance(notice, InputDropped) and notice.in_band):
            # In-band, at the exact point of the stream: the SDK's own "discard what you were
            # playing" signal, which applications already handle. For a dropped turn it also
            # ends the wait for a reply that will never come.
            self._deliver(Message(server_content=types.LiveServerContent(
                interrupted=True, turn_complete=True)))
        elif isinstance(notice, ToolCallsCancelled):
            self._deliver(Message(tool_call_cancellation=types.LiveServerToolCallCancellation(
                ids=list(notice.ids))))
        if self._handoff is not None and fleet.outcome_of(notice) and not self._handoff.done():
            self._handoff.set_result(notice)
        if isinstance(notice, Ended):
            self._ended.set()
            self._deliver(END)
            self._events.put(END)
            self._notices.put(END)

    # -- connections -----------------------------------------------------------------------------

    async def _run_connection(self, conn: _Conn, action: OpenConnection) -> None:
        """Open a connection as the core asked and read from it until it ends; what ended it
        goes back to the core (`_read_failed`)."""
        gen = conn.generation
        live = False
        operation: Operation | None = Operation.TOKEN
        opened = adapter.NOT_WATCHED
        try:
            if self._closing:  # the old socket of the session is closed first
                await asyncio.wait(list(self._closing))
            client = self._client
            if self._token_provider is not None:
                client = await self._client_with_fresh_token(gen)
            operation = Operation.REQUEST
            opened = adapter.watch_connect(client)
            async with client.aio.live.connect(
                model=self._model, config=setupconfig.for_open(self._base_config, action)
            ) as sdk:
                operation = Operation.RECEIVE
                conn.sdk = sdk
                if not self._core.transparent:  # Vertex's consumed index needs no timing
                    conn.arrived = adapter.stamp_arrivals(sdk, self._lag.arrived)
                live = True
                conn.writer = self._spawn(write_queued(
                    conn.outbox, sdk, gen, self._core.written, self._now, self._refused))
                self._feed(SetupComplete(at=self._now(), generation=gen,
                                         session_id=adapter.session_id(sdk)))
                self._started.set()
                self._live = conn
                self._app_wake.set()
                self._spawn(self._measure_rtt(conn, sdk))
                await self._reader.read_in_background(conn, sdk)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if operation is Operation.REQUEST:  # did the connect get as far as a connection?
                made = opened()
                operation = None if made is None else Operation.SETUP if made else operation
            self._read_failed(conn, exc, operation, live=live)
        finally:
            conn.sdk = None
            if conn.writer is not None:
                conn.writer.cancel()
            if self._live is conn:
                self._live = None
            if not conn.closing:  # lost, not closed by us: nothing else will forget it
                self._conns.pop(gen, None)

    async def _client_with_fresh_token(self, gen: int) -> genai.Client:
        """Ask the provider for this connection's token (bounded by the setup timeout), keep it
        secret, tell the core when it expires, and make a client that dials with it."""
        assert self._token_provider is not None
        token = await tokens.fetch(self._token_provider, self._core.policy.limits.setup_timeout)
        self._core.add_token(token.value)
        left = token.seconds_left()
        now = self._now()
        self._feed(TokenIssued(at=now, generation=gen,
                               expires_at=None if left is None else now + left))
        cached = self._token_client
        if cached is not None and cached[0] == token.value:
            return cached[1]
        # making a client takes tens of milliseconds: not on the loop, where every session runs
        client = await asyncio.to_thread(adapter.with_token, self._client, token.value)
        self._token_client = (token.value, client)
        return client

    def _read_lost(self, conn: _Conn, exc: BaseException) -> None:
        """The application's own read of a live connection failed."""
        self._read_failed(conn, exc, Operation.RECEIVE, live=True)

    def _read_failed(self, conn: _Conn, exc: BaseException, operation: Operation | None, *,
                     live: bool) -> None:
        """Tell the core what ended a connection during `operation` (None: the shell cannot
        tell; the adapter says what it saw; the core decides what it was and what it calls
        for), whichever task was reading."""
        if conn.closing:
            return
        self._last_error = exc
        seen = adapter.observe(exc, operation)
        self._feed(ConnectionLost(
            at=self._now(), generation=conn.generation, code=seen.code, reason=seen.reason,
            http_status=seen.http_status, during_setup=not live, failure=seen.failure,
            operation=seen.operation, close_received=seen.close_received,
            sent_code=seen.sent_code, sent_reason=seen.sent_reason))

    async def _measure_rtt(self, conn: _Conn, sdk: AsyncSession) -> None:
        """One WebSocket ping after setup: the round trip bounds which input may cross a handle
        update on the wire (see journal.py)."""
        try:
            rtt = await adapter.ping(sdk, within=5)
        except Exception:
            return  # no measurement: the core uses the policy's default window
        if not conn.closing:
            self._feed(Latency(at=self._now(), generation=conn.generation, rtt=rtt))

    def _on_message(self, gen: int, message: Message, *, deliver: bool = True,
                    arrived: float | None = None) -> None:
        """Feed the core what a server message says (`translate.py`). Model chunks are the bulk
        of the traffic: their text goes to the core's turn, and only the first of a turn is fed
        as an event."""
        if deliver:
            self._deliver(message)
        now = self._now()
        events: list[Event] = []
        text = translate.chunk_text(message)
        if text is not None:
            if self._core.model_chunk(gen, text):
                events.append(ModelOutput(at=now, generation=gen))
            elif translate.only_model_turn(message):
                return
        # a resumption update arrived at `arrived` at the earliest (stamped as websockets
        # queued it), or the loop's lateness bounds how long it waited
        waited = max(0.0, now - arrived) if arrived is not None else self._lag.lag()
        events += translate.translate(message, generation=gen, now=now, lag=waited)
        if events:
            self._feed(*events)

    def _refused(self, action: Send, exc: Exception) -> None:
        """Tell the core (once the actions in hand are performed) that the SDK would not send
        an input; it decides what becomes of it."""
        reason = f"{type(exc).__name__}: {exc}"[:300]
        self._loop.call_soon(self._feed, SendRefused(at=self._now(), seq=action.entry.seq,
                                                     reason=reason))

    def _close_connection(self, generation: int) -> None:
        """Close a connection in a task of its own (bounded by the close timeout); the next
        connection waits for it."""
        conn = self._conns.pop(generation, None)
        if conn is None:
            return
        conn.closing = True
        task = self._spawn(self._closed(conn))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def _closed(self, conn: _Conn) -> None:
        """Close a connection the core left: its writer, its socket (bounded), its task."""
        if conn.writer is not None:
            conn.writer.cancel()
        if conn.sdk is not None:
            await adapter.close(conn.sdk, self._core.policy.keepalive.close_timeout)
        task = conn.task
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        """Start a task this session owns (`_shutdown` stops every one)."""
        task = self._loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _shutdown(self) -> None:
        """Stop everything this session started; safe to call more than once."""
        if self._lag_held:
            self._lag_held = False
            self._lag.release()
        if self._store is not None:
            await self._store.stop(self._core.policy.keepalive.close_timeout)
        for timer in list(self._timers):
            self._cancel_timer(timer)
        self._reader.stop()
        for generation in list(self._conns):
            self._close_connection(generation)
        if self._closing:
            await asyncio.wait(list(self._closing))
        current = asyncio.current_task()
        tasks = [t for t in self._tasks if t is not current]
        for task in tasks:
            task.cancel()
        if tasks:  # bounded: a task that ignores its cancellation must not hang close()
            await asyncio.wait(tasks, timeout=self._core.policy.keepalive.close_timeout)


#: The store used when a session_key is given without a store: shared by the process's sessions.
DEFAULT_STORE: HandleStore = MemoryStore()


async def _next(messages: AsyncIterator[Message]) -> Message:
    return await anext(messages)


def _with_captures(on_notice: Callable[[Notice], None] | None
                   ) -> Callable[[Notice], None] | None:
    """`on_notice`, also feeding the active `statemachine.testing.capture()` blocks."""
    hooks = capture_notice_hooks()
    if not hooks:
        return on_notice
    every = (*hooks, on_notice) if on_notice is not None else hooks

    def tee(notice: Notice) -> None:
        for hook in every:
            hook(notice)

    return tee


def _both(first: Callable[[AuditRecord], None],
          then: Callable[[AuditRecord], None] | None) -> Callable[[AuditRecord], None]:
    """`first`, then `then` (when given), for each record."""
    if then is None:
        return first

    def both(record: AuditRecord) -> None:
        first(record)
        then(record)

    return both


def _check_token_provider(client: genai.Client, provider: object) -> None:
    if not callable(provider):
        raise SettingsError(f"token_provider must be callable (it is asked before every "
                            f"connection), not {type(provider).__name__}")
    if client.vertexai:
        raise SettingsError("ephemeral tokens are a Gemini API feature: a Vertex client "
                            "authenticates with its own credentials (drop token_provider)")
    # the application chose ephemeral tokens: the SDK's note that its support is experimental
    # would otherwise be printed at the first connection (a library is quiet)
    warnings.filterwarnings("ignore", message="The SDK's ephemeral token support",
                            category=genai_errors.ExperimentalWarning)


#: the keyword arguments `connect` checks before passing them to `LiveSession`
SESSION_ARGS = ("on_event", "on_notice", "audit", "store", "session_key", "session_id",
                "lease_ttl", "lease_wait", "token_provider")


def connect(
    client: genai.Client,
    *,
    model: str,
    config: types.LiveConnectConfig | dict[str, Any] | None = None,
    policy: Policy | None = None,
    **kwargs: Any,
) -> LiveSession:
    """`async with statemachine.connect(client, model=..., config=..., policy=...) as session:`

    Entering opens the session and returns once its first connection is live; it raises
    `SessionTerminated` if the session could not start (the reason says why). Leaving closes it.
    Keyword arguments go to `LiveSession` (audit, on_event, on_notice, session_id, store,
    session_key, lease_ttl, lease_wait, token_provider, telemetry); each is checked here (a
    wrong one is a `SettingsError` naming it). `telemetry=True` reports traces and metrics to
    OpenTelemetry's global providers, `telemetry=statemachine.Telemetry(tracer_provider=...,
    meter_provider=...)` to the ones given (docs/telemetry.md)."""
    check_session_args("connect", policy=policy, **{
        k: v for k, v in kwargs.items() if k in SESSION_ARGS})
    return LiveSession(client, model=model, config=config, policy=policy, **kwargs)
