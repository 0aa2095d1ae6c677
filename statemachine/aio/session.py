"""LiveSession: the asyncio shell that performs the lifecycle core's actions with google-genai.

Every event (a server message, a close, a timer, an application send) goes through `_feed`, which
holds one lock while the core decides and while the returned actions are performed, in order:
that is the driver contract of `actions.py`. Connections run in their own tasks (connect, wait for
setupComplete, then one continuous receive loop); timers are `loop.call_later` callbacks, so a
silent server cannot stop the goAway deadline from firing.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import ssl
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable
from types import TracebackType
from typing import Any

import attrs
from google import genai
from google.genai import errors as genai_errors
from google.genai import types
from google.genai.live import AsyncSession
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from ..core.actions import (
    Action,
    ArmTimer,
    CancelTimer,
    CloseConnection,
    Ended,
    Notice,
    Notify,
    OpenConnection,
    ReplyInterrupted,
    Send,
)
from ..core.engine import Lifecycle
from ..core.events import (
    ClientInput,
    Close,
    Connect,
    ConnectionLost,
    Event,
    FatalError,
    GenerationComplete,
    GoAway,
    InputKind,
    Interrupted,
    Latency,
    ModelOutput,
    ResumptionUpdate,
    SetupComplete,
    Timer,
    TimerFired,
    ToolCall,
    ToolCallCancellation,
    TurnComplete,
    Usage,
)
from ..core.journal import Entry
from ..core.policy import Backend, Policy
from ..core.records import AuditRecord, AuditSink, QuietLogger, default_sink
from ..core.table import State
from ..core.wire import parse_duration
from ..errors import SessionTerminated
from ..stores import HandleStore, LeaseHeld, MemoryStore, StoredHandle, StoreError

Message = types.LiveServerMessage
_END = object()
#: how long the application may be away from receive() before a background reader takes over
_BACKGROUND_AFTER = 0.05
_log = QuietLogger("statemachine.session")


def websocket_args(policy: Policy | None = None) -> dict[str, Any]:
    """`HttpOptions.async_client_args` for the client: the policy's keepalive (the SDK's 20 s
    default causes false "1011 keepalive ping timeout" closes) and a short close timeout."""
    keepalive = (policy or Policy()).keepalive
    return {
        "ping_interval": keepalive.ping_interval,
        "ping_timeout": keepalive.ping_timeout,
        "close_timeout": keepalive.close_timeout,
    }


class _Fanout:
    """An unbounded async iterator per subscriber, fed by one producer; `_END` ends them all,
    including those who subscribe later."""

    def __init__(self) -> None:
        self._queues: list[asyncio.Queue[Any]] = []
        self._ended = False

    def put(self, item: Any) -> None:
        self._ended = self._ended or item is _END
        for queue in self._queues:
            queue.put_nowait(item)

    async def subscribe(self) -> AsyncIterator[Any]:
        queue: asyncio.Queue[Any] = asyncio.Queue()
        if self._ended:
            return
        self._queues.append(queue)
        try:
            while (item := await queue.get()) is not _END:
                yield item
        finally:
            self._queues.remove(queue)


@attrs.define
class _Conn:
    generation: int
    task: asyncio.Task[None] | None = None
    sdk: AsyncSession | None = None
    closing: bool = False
    #: the background's pending read, cancelled when the application takes over reading
    bg_read: asyncio.Task[Message] | None = None
    takeover: bool = False
    #: set when the application's own read failed: the connection task then ends
    failed: asyncio.Event = attrs.field(factory=asyncio.Event)


class LiveSession:
    """A Live API session that survives connection rotations, drops and session limits.

    A drop-in for google-genai's `AsyncSession`: the same `send_*` methods, plus `receive()`
    that keeps yielding across connections and turns until the session ends (the SDK's stops at
    every `turnComplete`). Use through `statemachine.connect(...)`.
    """

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
    ) -> None:
        if store is not None and session_key is None:
            raise ValueError("a store needs a session_key: the name the session is stored under")
        self._durable = (
            None if session_key is None
            else _Durable(store or DEFAULT_STORE, session_key, lease_ttl, lease_wait, self)
        )
        self._client = client
        self._model = model
        base = types.LiveConnectConfig.model_validate(config or {})
        self.backend = Backend.VERTEX if client.vertexai else Backend.GEMINI
        policy = policy or Policy()
        cwc = base.context_window_compression
        if cwc is not None and cwc.trigger_tokens:
            target = (cwc.sliding_window.target_tokens if cwc.sliding_window else None) or (
                cwc.trigger_tokens // 2
            )
            policy = attrs.evolve(
                policy, compression=True, compression_trigger_tokens=cwc.trigger_tokens,
                compression_target_tokens=target,
            )
        elif policy.compression:
            cwc = types.ContextWindowCompressionConfig(
                trigger_tokens=policy.compression_trigger_tokens,
                sliding_window=types.SlidingWindow(target_tokens=policy.compression_target_tokens),
            )
        self._base_config = base.model_copy(update={"context_window_compression": cwc})
        self._sink = audit if audit is not None else default_sink()
        self._on_event = on_event
        self._on_notice = on_notice
        self._core = Lifecycle(
            policy=policy, backend=self.backend, session_id=session_id, audit=self._audit
        )
        self._lock = asyncio.Lock()
        self._conns: dict[int, _Conn] = {}
        self._timers: dict[Timer, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._messages: asyncio.Queue[Any] = asyncio.Queue()
        self._live: _Conn | None = None  # the connection the application reads from
        self._reply_parts: list[str] = []  # the text of the model's turn in flight
        self._reply_gen: int | None = None  # the connection whose turn the core knows started
        self._app_reading = False
        self._app_wake = asyncio.Event()
        self._bg_allowed = asyncio.Event()
        self._bg_allowed.set()
        self._bg_idle = asyncio.Event()
        self._bg_idle.set()
        self._bg_timer: asyncio.TimerHandle | None = None
        self._app_left_at = 0.0
        self._events = _Fanout()
        self._notices = _Fanout()
        self._started = asyncio.Event()
        self._ended = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        self._last_at = 0.0
        #: the most recent notices (bounded: a session may run for hours)
        self.notices_seen: deque[Notice] = deque(maxlen=256)

    # -- what the application sees ---------------------------------------------------------------

    @property
    def state(self) -> str:
        """The lifecycle state: "connecting", "streaming", "draining", ..."""
        return self._core.state.value

    @property
    def session_id(self) -> str:
        return self._core.session_id

    @property
    def core(self) -> Lifecycle:
        """The sans-I/O engine (read-only use: counters, snapshot, journal)."""
        return self._core

    @property
    def ended(self) -> Ended | None:
        return self._core.end

    async def start(self) -> None:
        """Open the first connection (resuming a valid stored handle, if a store holds one);
        return once it is live, raise if the session ended."""
        if self._durable is not None:
            await self._durable.start()
        await self._feed(Connect(at=self._now()))
        await asyncio.wait(
            [self._spawn(self._started.wait()), self._spawn(self._ended.wait())],
            return_when=asyncio.FIRST_COMPLETED,
        )
        if not self._started.is_set():
            end = self._core.end
            await self._shutdown()
            raise SessionTerminated(
                end.reason if end else "session ended", code=end.code if end else None
            )

    async def send_client_content(
        self,
        *,
        turns: types.ContentListUnion | types.ContentListUnionDict | None = None,
        turn_complete: bool = True,
    ) -> None:
        """Like `AsyncSession.send_client_content`; journaled until a handle covers it."""
        await self._input(InputKind.CONTENT, {"turns": turns, "turn_complete": turn_complete},
                          turn_complete=turn_complete)

    async def send_realtime_input(
        self,
        *,
        audio: types.BlobOrDict | None = None,
        video: types.BlobImageUnionDict | None = None,
        text: str | None = None,
        audio_stream_end: bool | None = None,
        activity_start: types.ActivityStartOrDict | None = None,
        activity_end: types.ActivityEndOrDict | None = None,
    ) -> None:
        """Like `AsyncSession.send_realtime_input`: exactly one kind of input per call."""
        given = {
            InputKind.AUDIO: ("audio", audio),
            InputKind.VIDEO: ("video", video),
            InputKind.TEXT: ("text", text),
            InputKind.AUDIO_STREAM_END: ("audio_stream_end", audio_stream_end),
            InputKind.ACTIVITY_START: ("activity_start", activity_start),
            InputKind.ACTIVITY_END: ("activity_end", activity_end),
        }
        chosen = [(kind, kw) for kind, kw in given.items() if kw[1] is not None]
        if len(chosen) != 1:
            raise ValueError(
                "send_realtime_input takes exactly one of audio, video, text, audio_stream_end, "
                f"activity_start, activity_end; got {len(chosen)}"
            )
        kind, (name, value) = chosen[0]
        await self._input(kind, {name: value})

    async def send_tool_response(
        self, *, function_responses: types.FunctionResponseOrListOfFunctionResponseDict
    ) -> None:
        """Like `AsyncSession.send_tool_response`; never lost across a rotation."""
        responses = (
            function_responses if isinstance(function_responses, list) else [function_responses]
        )
        ids = tuple(
            str(r.get("id") if isinstance(r, dict) else r.id) for r in responses
        )
        await self._input(InputKind.TOOL_RESPONSE, {"function_responses": function_responses},
                          tool_ids=ids)

    async def receive(self) -> AsyncIterator[Message]:
        """Server messages from every connection, across turns, until the session ends.

        Ends normally after `close()`; raises `SessionTerminated` (with the reason and close
        code) when the session ended any other way. While the application waits here, its own
        task reads from the connection (no hand-off between tasks per message); when it stays
        away longer than `_BACKGROUND_AFTER`, a background reader keeps processing the server's
        messages (handles, goAway) and queues them."""
        while True:
            if not self._messages.empty():
                item = self._messages.get_nowait()
                if item is _END:
                    self._messages.put_nowait(_END)
                    end = self._core.end
                    if end is not None and not end.by_application:
                        raise SessionTerminated(end.reason, code=end.code)
                    return
                yield item
                continue
            conn = self._live
            if conn is None or conn.sdk is None or conn.closing or conn.failed.is_set():
                self._app_wake.clear()
                await self._app_wake.wait()
                continue
            message = await self._read_as_application(conn)
            if message is not None:
                yield message

    async def _read_as_application(self, conn: _Conn) -> Message | None:
        """One message read in the application's task (None: look again, something changed)."""
        self._app_reading = True
        self._bg_allowed.clear()
        try:
            pending = conn.bg_read
            if pending is not None and not pending.done():
                conn.takeover = True
                pending.cancel()
            if not self._bg_idle.is_set():
                await self._bg_idle.wait()  # the background finished with what it was reading
            if not self._messages.empty() or conn.sdk is None or conn.closing:
                return None
            try:
                message = await conn.sdk._receive()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not conn.failed.is_set():
                    conn.failed.set()
                    await self._read_failed(conn, exc, live=True)
                return None
            await self._on_message(conn.generation, message, deliver=False)
            return message
        finally:
            self._app_reading = False
            self._app_left_at = self._loop.time()
            if self._bg_timer is None:  # one watchdog, not a timer per message
                self._bg_timer = self._loop.call_later(_BACKGROUND_AFTER, self._allow_background)

    def _allow_background(self) -> None:
        """Let the background read once the application has been away long enough."""
        self._bg_timer = None
        if self._app_reading:
            return  # it is reading now; leaving will arm the watchdog again
        away = self._loop.time() - self._app_left_at
        if away >= _BACKGROUND_AFTER:
            self._bg_allowed.set()
        else:
            self._bg_timer = self._loop.call_later(_BACKGROUND_AFTER - away,
                                                   self._allow_background)

    def _deliver(self, item: Any) -> None:
        self._messages.put_nowait(item)
        self._app_wake.set()

    async def flush_handle(self) -> None:
        """Return once the latest resumable handle is written to the store (no-op without one):
        after it, a crash of this process loses nothing the model has acknowledged."""
        if self._durable is not None:
            await self._durable._flush()

    def events(self) -> AsyncIterator[AuditRecord]:
        """Every audit record of this session (the same records as the audit log), live. Each
        iterator buffers what it has not consumed yet: iterate it, or use `on_event`."""
        return self._events.subscribe()

    def notices(self) -> AsyncIterator[Notice]:
        """What the application is told: Resumed, InputDropped, ContextLost, RepeatedReply,
        Ended."""
        return self._notices.subscribe()

    async def close(self) -> None:
        """Close the session: the socket is closed, every task stops, nothing reconnects."""
        if self._core.state is not State.TERMINATED:
            await self._feed(Close(at=self._now()))
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
        await self._feed(ClientInput(at=self._now(), kind=kind, payload=payload,
                                     turn_complete=turn_complete, tool_ids=tool_ids))

    async def _feed(self, *events: Event) -> None:
        """Feed events stamped when they were observed; one waiting for the lock behind a later
        one is re-stamped, so the session's clock never runs backwards."""
        async with self._lock:
            for event in events:
                if event.at < self._last_at:
                    event = attrs.evolve(event, at=self._last_at)
                self._last_at = event.at
                actions = self._core.feed(event)
                if actions:
                    await self._perform(actions)
            if self._durable is not None:
                self._durable.track()

    async def _perform(self, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, Send):
                await self._send(action)
            elif isinstance(action, OpenConnection):
                conn = _Conn(generation=action.generation)
                self._conns[action.generation] = conn
                conn.task = self._spawn(self._run_connection(conn, action))
            elif isinstance(action, CloseConnection):
                await self._close_connection(action.generation)
            elif isinstance(action, ArmTimer):
                self._cancel_timer(action.timer)
                self._timers[action.timer] = self._loop.call_later(
                    action.delay, self._timer_fired, action.timer, action.token
                )
            elif isinstance(action, CancelTimer):
                self._cancel_timer(action.timer)
            elif isinstance(action, Notify):
                self._notify(action.notice)

    def _timer_fired(self, timer: Timer, token: int) -> None:
        self._timers.pop(timer, None)
        self._spawn(self._feed(TimerFired(at=self._now(), timer=timer, token=token)))

    def _cancel_timer(self, timer: Timer) -> None:
        handle = self._timers.pop(timer, None)
        if handle is not None:
            handle.cancel()

    def _audit(self, record: AuditRecord) -> None:
        self._sink(record)
        self._events.put(record)
        if self._on_event is not None:
            self._on_event(record)

    def _notify(self, notice: Notice) -> None:
        if isinstance(notice, ReplyInterrupted):
            # In-band, at the exact point of the stream: the SDK's own "discard what you were
            # playing" signal, which applications already handle.
            self._deliver(Message(server_content=types.LiveServerContent(
                interrupted=True, turn_complete=True)))
        self.notices_seen.append(notice)
        self._notices.put(notice)
        if self._on_notice is not None:
            self._on_notice(notice)
        if isinstance(notice, Ended):
            self._ended.set()
            self._deliver(_END)
            self._events.put(_END)
            self._notices.put(_END)

    # -- connections -----------------------------------------------------------------------------

    def _config_for(self, action: OpenConnection) -> types.LiveConnectConfig:
        resumption = types.SessionResumptionConfig(
            handle=action.handle, transparent=True if action.transparent else None
        )
        return self._base_config.model_copy(update={"session_resumption": resumption})

    async def _run_connection(self, conn: _Conn, action: OpenConnection) -> None:
        gen = conn.generation
        live = False
        try:
            async with self._client.aio.live.connect(
                model=self._model, config=self._config_for(action)
            ) as sdk:
                conn.sdk = sdk
                live = True
                session_id = sdk.setup_complete.session_id if sdk.setup_complete else None
                await self._feed(
                    SetupComplete(at=self._now(), generation=gen, session_id=session_id))
                self._started.set()
                self._reply_parts, self._reply_gen = [], None  # a new connection: no turn open
                self._live = conn
                self._app_wake.set()
                self._spawn(self._measure_rtt(conn, sdk))
                await self._read_in_background(conn, sdk)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            await self._read_failed(conn, exc, live=live)
        finally:
            conn.sdk = None
            if self._live is conn:
                self._live = None

    async def _read_in_background(self, conn: _Conn, sdk: AsyncSession) -> None:
        """Read while the application is not reading itself; stop when its read failed."""
        while not conn.failed.is_set():
            if not self._bg_allowed.is_set():
                allowed = self._loop.create_task(self._bg_allowed.wait())
                failed = self._loop.create_task(conn.failed.wait())
                try:
                    await asyncio.wait([allowed, failed], return_when=asyncio.FIRST_COMPLETED)
                finally:
                    allowed.cancel()
                    failed.cancel()
                continue
            self._bg_idle.clear()
            read = self._loop.create_task(sdk._receive())
            conn.bg_read = read
            try:
                message = await read
            except asyncio.CancelledError:
                if conn.takeover and not conn.closing:
                    conn.takeover = False
                    continue  # the application reads now
                read.cancel()
                raise
            finally:
                conn.bg_read = None
                self._bg_idle.set()
            await self._on_message(conn.generation, message)

    async def _read_failed(self, conn: _Conn, exc: BaseException, *, live: bool) -> None:
        """Classify why a connection failed (close code, handshake, TLS, malformed frame) and
        tell the core, whichever task was reading."""
        gen = conn.generation
        if isinstance(exc, genai_errors.APIError):
            await self._lost(conn, code=exc.code, reason=str(exc.details or exc.message or ""),
                             live=live)
        elif isinstance(exc, ConnectionClosed):
            code = exc.rcvd.code if exc.rcvd else 1006
            await self._lost(conn, code=code, reason=exc.rcvd.reason if exc.rcvd else "",
                             live=live)
        elif isinstance(exc, InvalidStatus):
            status = exc.response.status_code
            await self._lost(conn, http_status=status, reason=f"handshake refused: HTTP {status}",
                             live=live)
        elif isinstance(exc, ssl.SSLCertVerificationError):
            await self._fatal(conn, f"TLS certificate verification failed: {exc.verify_message}; "
                                    "check SSL_CERT_FILE or the client's ssl context")
        elif isinstance(exc, OSError | InvalidHandshake | TimeoutError):
            await self._lost(conn, reason=f"{type(exc).__name__}: {exc}", live=live)
        elif isinstance(exc, ValueError | TypeError):
            await self._lost(conn, reason=f"malformed server frame: {exc}"[:200], live=live)
        else:  # a bug, not a network condition: stop loudly
            await self._fatal(conn, f"unexpected {type(exc).__name__} on connection {gen}: {exc}")

    async def _measure_rtt(self, conn: _Conn, sdk: AsyncSession) -> None:
        """One WebSocket ping after setup: the round trip bounds which input may cross a handle
        update on the wire (see journal.py)."""
        with contextlib.suppress(Exception):
            async with asyncio.timeout(5):
                waiter = await sdk._ws.ping()
                rtt = await waiter
            if not conn.closing:
                await self._feed(
                    Latency(at=self._now(), generation=conn.generation, rtt=float(rtt)))

    async def _lost(self, conn: _Conn, *, code: int | None = None, reason: str = "",
                    http_status: int | None = None, live: bool) -> None:
        if conn.closing:
            return
        await self._feed(ConnectionLost(at=self._now(), generation=conn.generation, code=code,
                                        reason=reason, http_status=http_status,
                                        during_setup=not live))

    async def _fatal(self, conn: _Conn, reason: str) -> None:
        if not conn.closing:
            await self._feed(FatalError(at=self._now(), reason=reason))

    async def _on_message(self, gen: int, message: Message, *, deliver: bool = True) -> None:
        """Turn a server message into the core's events. Model chunks are the bulk of the
        traffic and the lifecycle needs only the first of each turn (a turn is in flight) and
        the reply's text at `turnComplete`: the rest are collected here, not fed one by one."""
        if deliver:
            self._deliver(message)
        sc = message.server_content
        if sc is not None and sc.model_turn is not None:
            text = "".join(p.text or "" for p in sc.model_turn.parts or [] if not p.thought)
            if not text and sc.output_transcription is not None:
                text = sc.output_transcription.text or ""
            if text:
                self._reply_parts.append(text)
            if self._reply_gen == gen and _only_model_turn(message):
                return  # a later chunk of a turn the core already knows is in flight
        now = self._now()
        events: list[Event] = []
        if sc is not None:
            if sc.model_turn is not None and self._reply_gen != gen:
                self._reply_gen = gen
                events.append(ModelOutput(at=now, generation=gen))
            if sc.generation_complete:
                events.append(GenerationComplete(at=now, generation=gen))
            if sc.interrupted:
                events.append(Interrupted(at=now, generation=gen))
        if message.usage_metadata is not None and message.usage_metadata.prompt_token_count:
            events.append(Usage(at=now, generation=gen,
                                prompt_tokens=message.usage_metadata.prompt_token_count,
                                total_tokens=message.usage_metadata.total_token_count))
        if sc is not None and sc.turn_complete:
            events.append(TurnComplete(at=now, generation=gen,
                                       reply_text="".join(self._reply_parts)))
            self._reply_parts, self._reply_gen = [], None
        if message.tool_call is not None:
            ids = tuple(c.id or "" for c in message.tool_call.function_calls or [])
            events.append(ToolCall(at=now, generation=gen, ids=ids))
        if message.tool_call_cancellation is not None:
            events.append(ToolCallCancellation(
                at=now, generation=gen, ids=tuple(message.tool_call_cancellation.ids or ())))
        if message.go_away is not None:
            left = parse_duration(message.go_away.time_left or "0s")
            events.append(GoAway(at=now, generation=gen, time_left=left))
        update = message.session_resumption_update
        if update is not None:
            index = update.last_consumed_client_message_index
            events.append(ResumptionUpdate(
                at=now, generation=gen, handle=update.new_handle, resumable=bool(update.resumable),
                last_consumed_index=int(index) if index is not None else None))
        if events:
            await self._feed(*events)

    async def _send(self, action: Send) -> None:
        conn = self._conns.get(action.generation)
        if conn is None or conn.sdk is None or conn.closing:
            return  # still journaled: the next connection replays it
        entry = action.entry
        try:
            if entry.kind is InputKind.CONTENT:
                if action.as_history:
                    await conn.sdk.send_client_content(turns=_as_history(entry),
                                                       turn_complete=False)
                else:
                    await conn.sdk.send_client_content(**entry.payload)
            elif entry.kind is InputKind.TOOL_RESPONSE:
                await conn.sdk.send_tool_response(**entry.payload)
            elif entry.kind is InputKind.TEXT and action.as_history:
                await conn.sdk.send_client_content(turns=_as_history(entry), turn_complete=False)
            else:
                await conn.sdk.send_realtime_input(**entry.payload)
        except ConnectionClosed:
            pass  # the receive loop reports the close; the entry stays journaled

    async def _close_connection(self, generation: int) -> None:
        conn = self._conns.pop(generation, None)
        if conn is None:
            return
        conn.closing = True
        timeout = self._core.policy.keepalive.close_timeout
        if conn.sdk is not None:
            # The SDK offers no bounded close; its websocket is reached to abort the transport
            # when the server does not answer the close frame in time.
            ws = conn.sdk._ws
            with contextlib.suppress(Exception):
                async with asyncio.timeout(timeout):
                    await conn.sdk.close()
            transport = getattr(ws, "transport", None)
            if transport is not None and not transport.is_closing():
                transport.abort()
        task = conn.task
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = self._loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _shutdown(self) -> None:
        """Stop everything this session started; safe to call more than once."""
        if self._durable is not None:
            await self._durable.stop()
        for timer in list(self._timers):
            self._cancel_timer(timer)
        if self._bg_timer is not None:
            self._bg_timer.cancel()
            self._bg_timer = None
        for generation in list(self._conns):
            await self._close_connection(generation)
        current = asyncio.current_task()
        tasks = [t for t in self._tasks if t is not current]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


#: The store used when a session_key is given without a store: shared by the process's sessions.
DEFAULT_STORE: HandleStore = MemoryStore()


class _Durable:
    """The store side of one session: the lease, restoring the handle, writing handles through,
    and falling back to memory (with a warning and an audit record) when the store fails."""

    def __init__(self, store: HandleStore, key: str, lease_ttl: float, lease_wait: float,
                 session: LiveSession) -> None:
        if lease_ttl <= 0:
            raise ValueError("lease_ttl must be > 0 seconds")
        self.store = store
        self.key = key
        self.ttl = lease_ttl
        self.wait = lease_wait
        self.session = session
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.degraded = False
        self._written: str | None = None
        self._pending: StoredHandle | bool | None = False  # False: nothing to write
        self._wake = asyncio.Event()
        self._flush_lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []
        self._leased = False

    async def start(self) -> None:
        core = self.session.core
        deadline = time.monotonic() + self.wait
        while True:
            try:
                await self.store.acquire(self.key, self.holder, self.ttl)
                self._leased = True
                break
            except LeaseHeld as held:
                if time.monotonic() + min(held.expires_in, 0.05) > deadline:
                    raise
                await asyncio.sleep(min(max(held.expires_in, 0.01), 0.25))
            except StoreError as exc:
                # Not live yet: starting without the lease could put the session on two
                # workers at once, so this fails instead of degrading.
                raise StoreError(
                    f"session {self.key!r} not started: its lease could not be taken ({exc}); "
                    "without it two workers could run the same session. Check the store, or "
                    "start without store/session_key"
                ) from exc
        try:
            record = await self.store.load(self.key)
        except StoreError as exc:
            with contextlib.suppress(StoreError):
                await self.store.release(self.key, self.holder)
            self._leased = False
            raise StoreError(f"session {self.key!r} not started: {exc}") from exc
        now = time.time()
        if record is not None and record.valid(now):
            age = now - record.issued_at
            core.restore(record.handle, at=self.session._now(), age=age,
                         compressed=record.compressed, generation=record.generation)
            self._written = record.handle
            core.note("handle_restored", at=self.session._now(), key=self.key,
                      age_s=round(age, 3), generation=record.generation)
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._writer()), loop.create_task(self._renewer())]

    def track(self) -> None:
        """After each event: queue the latest resumable handle (or its removal) for the store."""
        core = self.session.core
        handle = core.handle
        if handle == self._written:
            return
        self._written = handle
        if handle is None or core.handle_at is None:
            self._pending = None
        else:
            issued = time.time() - (self.session._now() - core.handle_at)
            self._pending = StoredHandle(
                handle=handle, issued_at=issued,
                expires_at=issued + core.policy.limits.handle_validity,
                generation=core.generation, compressed=core.compressed)
        self._wake.set()

    async def _writer(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            await self._flush()

    async def _flush(self) -> None:
        async with self._flush_lock:
            await self._flush_locked()

    async def _flush_locked(self) -> None:
        pending, self._pending = self._pending, False
        if pending is False:
            return
        try:
            if pending is None:
                await self.store.delete(self.key)
            else:
                assert isinstance(pending, StoredHandle)
                await self.store.save(self.key, pending)
        except StoreError as exc:
            self._degrade(exc)
            if pending is not None:
                assert isinstance(pending, StoredHandle)
                await self.store.save(self.key, pending)

    async def _renewer(self) -> None:
        while self._leased:
            await asyncio.sleep(self.ttl / 3)
            try:
                ours = await self.store.renew(self.key, self.holder, self.ttl)
            except StoreError as exc:
                self._degrade(exc)
                continue
            if not ours:
                self._leased = False
                self.session._spawn(self.session._feed(FatalError(
                    at=self.session._now(),
                    reason=f"lease on session {self.key!r} lost: another worker took it "
                                 "(this worker stalled past the lease)")))
                return

    def _degrade(self, exc: Exception) -> None:
        if self.degraded:
            return
        self.degraded = True
        _log.warning("handle store unreachable: continuing in memory", key=self.key,
                     error=str(exc))
        self.session.core.note("store_degraded", at=self.session._now(), key=self.key,
                               error=str(exc)[:200])
        self.store = MemoryStore()

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        with contextlib.suppress(StoreError):
            await self._flush()
        if self._leased:
            self._leased = False
            with contextlib.suppress(StoreError):
                await self.store.release(self.key, self.holder)


def _only_model_turn(message: Message) -> bool:
    """A plain model chunk: nothing in it but `serverContent.modelTurn` (and transcriptions)."""
    sc = message.server_content
    return (
        sc is not None
        and not (sc.turn_complete or sc.generation_complete or sc.interrupted)
        and message.usage_metadata is None
        and message.tool_call is None
        and message.tool_call_cancellation is None
        and message.go_away is None
        and message.session_resumption_update is None
    )


def _as_history(entry: Entry) -> list[types.Content | types.ContentDict]:
    """The user's input and the reply it already got, as history the model will not answer."""
    user: list[Any]
    if entry.kind is InputKind.TEXT:
        user = [types.Content(role="user", parts=[types.Part(text=entry.payload["text"])])]
    else:
        turns = entry.payload["turns"]
        user = list(turns) if isinstance(turns, list) else [turns]
    return [*user, types.Content(role="model", parts=[types.Part(text=entry.reply_text)])]


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
    Keyword arguments go to `LiveSession` (audit, on_event, on_notice, session_id)."""
    return LiveSession(client, model=model, config=config, policy=policy, **kwargs)
