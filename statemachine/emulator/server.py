"""One emulated Live API connection: handshake, the scripted model's turns, resumption handles,
connection and session limits, and faults on demand. Everything it sends or receives is recorded.

The model's behaviour in a turn (streaming, tools, interruptions, voice activity) is in turns.py;
this module owns the socket, the setup and the timers."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import re
import secrets
import socket
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import attrs
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from .model import Context, Turn
from .profiles import GEMINI_25, Profile, api_version, profile_for, served
from .tokens import EphemeralToken
from .turns import TurnEngine
from .wire import (
    CLOSE_DEADLINE,
    CLOSE_HARD_LIMIT,
    CLOSE_IDLE,
    CLOSE_INVALID,
    CLOSE_INVALID_REASON,
    CLOSE_OLD_SOCKET,
    CLOSE_TOKEN_EXPIRED,
    CLOSE_TOKEN_USED,
    EXHAUSTION_REASONS,
    close_reason,
    duration,
    normalize,
)

if TYPE_CHECKING:
    from . import LiveEmulator

_MODEL_RE = re.compile(r"(?:^|/)models/([^/]+)$")
_MAX_FRAME = 1 << 20


@attrs.frozen(kw_only=True)
class ConnectionPlan:
    """Faults scripted for one connection (queued with `LiveEmulator.plan`). Times are emulated
    seconds (scaled by the time scale), counted from `setupComplete`."""

    setup_delay: float | None = None
    no_setup: bool = False
    refuse_resume: int | None = None
    lifetime: float | None = None
    silent_after_go_away: bool = False
    drop_after: float | None = None
    close_after: float | None = None
    close_code: int = 1011
    close_reason: str = "Internal error occurred."
    garbage_after: float | None = None
    #: what the garbage is: "text" (not JSON), "array" (JSON, not an object), "binary" (bytes
    #: that are not UTF-8) or "oversized" (a frame over the client's 1 MiB limit)
    garbage: str = "text"
    #: answer the setup with a frame the protocol does not allow (a kind of `garbage`) instead
    #: of setupComplete, then wait for the client to close
    setup_garbage: str | None = None
    #: drop the connection (1006) instead of sending the n-th handle issued after a turn, so the
    #: client holds a reply whose covering handle never came
    drop_at_turn_handle: int | None = None
    #: send `goAway` (the settings' `go_away_lead` of notice) right after the first chunk of the
    #: n-th reply on this connection, then close at the deadline as the lifetime does: a notice
    #: that certainly comes while a reply streams, however slow the machine
    go_away_in_reply: int | None = None


@attrs.frozen(kw_only=True)
class Frame:
    """One recorded frame: direction `in` (client to server) or `out`, emulator time, content."""

    direction: str
    at: float
    data: Any


@attrs.define(kw_only=True)
class EmulatedSession:
    id: str
    context: Context
    started_at: float
    compression: tuple[int, int] | None = None
    video_sent: bool = False
    capped: bool = False
    active: Connection | None = None
    last_closed_at: float | None = None
    connections: int = 0
    #: when the hard-close clock started: the session's start, then each hard close
    hard_close_clock: float | None = None


@attrs.define(kw_only=True)
class HandleEntry:
    session: EmulatedSession
    context: Context
    issued_at: float


class Connection:
    """Server side of one WebSocket. Tests reach it as `emu.connections[i]` to inject faults."""

    def __init__(
        self,
        emu: LiveEmulator,
        ws: ServerConnection,
        number: int,
        plan: ConnectionPlan,
        token: EphemeralToken | None = None,
    ) -> None:
        self.emu = emu
        self.ws = ws
        self.number = number
        self.plan = plan
        self.token = token
        self.path = ws.request.path if ws.request else ""
        self.vertex = "aiplatform" in self.path
        self.api_version = api_version(self.path)
        self.profile: Profile = GEMINI_25
        self.model = ""
        self.frames: list[Frame] = []
        self.session: EmulatedSession | None = None
        self.resumed = False
        self.transparent = False
        self.resumption = False
        self.consumed = 0  # client messages consumed on this connection (setup is 0)
        self.silent = False
        self.closed_code: int | None = None
        self.closed_reason: str | None = None
        self.opened_at = emu.now()
        self.closed_at: float | None = None
        self.last_input_at = self.opened_at
        #: the connection ended while the model was streaming a reply (the reply was cut)
        self.cut_reply = False
        self.setup_sent = asyncio.Event()
        self.done = asyncio.Event()
        self.turns = TurnEngine(self)
        self._tasks: set[asyncio.Task[None]] = set()
        self._reading = asyncio.Event()
        self._reading.set()

    # -- faults and controls, for tests -----------------------------------------------------------

    def drop(self) -> None:
        """Abort the TCP connection without a close frame: the client sees 1006."""
        self.closed_code, self.closed_reason = 1006, "dropped"
        self.ws.transport.abort()
        self._reading.set()  # a read loop held by `stop_reading` sees the end (else it waits on)

    async def close(self, code: int, reason: str = "") -> None:
        """Close with `code`, unless the client's close frame came first: then the client
        closed the connection, and its code is the one recorded (`closed_code`)."""
        if self.ws.protocol.close_rcvd is not None:
            return
        self.closed_code, self.closed_reason = code, close_reason(reason)
        await self.ws.close(code, close_reason(reason))

    async def go_away(self, time_left: float) -> None:
        """Send `goAway` now; `time_left` in emulated seconds (scaled)."""
        scaled = time_left * self.emu.settings.time_scale
        await self.send({"goAway": {"timeLeft": duration(scaled)}})

    async def exhaust(self, kind: str) -> None:
        """Close now as the service does when the quota ("quota") or credits ("credits") ran
        out: 1011 with a reason that tells it from a deadline."""
        await self.close(1011, EXHAUSTION_REASONS[kind])

    def silence(self) -> None:
        """Stop sending anything; keep the socket open."""
        self.silent = True

    def stop_reading(self) -> None:
        """Stop reading client messages (the socket stays open and still sends): the client's
        sends back up and block once the buffers are full, as with a stalled server."""
        self._reading.clear()
        transport = self.ws.transport
        sock = transport.get_extra_info("socket")
        if sock is not None:  # a small, fixed window: the client blocks after kilobytes
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65_536)
        transport.pause_reading()  # the TCP window closes: nothing more is taken in

    def resume_reading(self) -> None:
        """Read again after `stop_reading` (a server that was slow, not gone): what the client
        held back arrives now."""
        self.ws.transport.resume_reading()
        self._reading.set()

    async def send_garbage(self, kind: str | None = None) -> None:
        """A frame the protocol does not allow (`ConnectionPlan.garbage` says which)."""
        kind = kind or self.plan.garbage
        if kind == "array":
            await self._send_raw(b'[{"serverContent": {"turnComplete": true}}]')
        elif kind == "binary":
            await self._send_raw(bytes(range(256)) * 4)
        elif kind == "oversized":
            await self._send_raw(b'{"serverContent": {"modelTurn": {"parts": [{"text": "'
                                 + b"x" * (1 << 20) + b'"}]}}}')
        else:
            await self._send_raw(b"this is not JSON {")

    @property
    def received(self) -> list[dict[str, Any]]:
        """Client messages as received (normalized to snake_case keys), setup first."""
        return [f.data for f in self.frames if f.direction == "in"]

    @property
    def sent(self) -> list[dict[str, Any]]:
        return [f.data for f in self.frames if f.direction == "out"]

    # -- the connection ---------------------------------------------------------------------------

    async def run(self) -> None:
        try:
            if await self._handshake():
                self._start_timers()
                await self._read_loop()
        except ConnectionClosed:
            pass
        finally:
            await self._finish()

    async def _refuse(self, code: int, reason: str) -> bool:
        await self.close(code, reason)
        return False

    async def _handshake(self) -> bool:
        setup_msg = await self._recv()
        if setup_msg is None or "setup" not in setup_msg:
            return await self._refuse(CLOSE_INVALID, CLOSE_INVALID_REASON)
        setup = setup_msg["setup"] or {}
        model = str(setup.get("model", ""))
        match = _MODEL_RE.search(model)
        name = match.group(1) if match else model
        profile = profile_for(name, self.emu.settings.extra_models)
        if profile is not None and self.emu.settings.profile_switches:
            profile = attrs.evolve(profile, **self.emu.settings.profile_switches)
        if profile is None or name in self.emu.unknown_models \
                or not served(name, self.api_version, self.vertex):
            return await self._refuse(
                1008,
                f"models/{name} is not found for API version {self.api_version}, or is not "
                "supported for bidiGenerateContent.",
            )
        self.profile, self.model = profile, name
        if self.emu.settings.exhausted is not None:
            return await self._refuse(1011, EXHAUSTION_REASONS[self.emu.settings.exhausted])
        if not self._setup_allowed(setup):
            return await self._refuse(CLOSE_INVALID, CLOSE_INVALID_REASON)
        resumption = setup.get("session_resumption")
        self.resumption = resumption is not None
        self.transparent = bool((resumption or {}).get("transparent"))
        handle = (resumption or {}).get("handle")
        session = await self._resolve_session(handle)
        if session is None:
            return False
        self.turns.configure(session, setup)
        if self.plan.no_setup or self.plan.setup_garbage is not None:
            if self.plan.setup_garbage is not None:
                await self.send_garbage(self.plan.setup_garbage)
            await self.ws.wait_closed()
            return False
        delay = self.plan.setup_delay if self.plan.setup_delay is not None else 0.0
        delay = delay * self.emu.settings.time_scale + self.emu.settings.seconds("setup_delay")
        if delay:
            await asyncio.sleep(delay)
        await self.send({"setupComplete": {"sessionId": session.id} if self.vertex else {}})
        self.last_input_at = self.emu.now()
        self.setup_sent.set()
        if self.resumption and self.emu.settings.handle_on_setup:
            await self.issue_handle()
        return True

    def _setup_allowed(self, setup: dict[str, Any]) -> bool:
        """3.x: proactive audio cannot be turned off, and extended thinking needs a level;
        3.8: no thinking level at all, and audio output only."""
        profile = self.profile
        generation = setup.get("generation_config") or {}
        thinking = generation.get("thinking_config") or setup.get("thinking_config") or {}
        if profile.thinking_level_refused and thinking.get("thinking_level"):
            return False
        if profile.audio_only:
            modalities = generation.get("response_modalities") \
                or setup.get("response_modalities") or ["AUDIO"]
            if [str(m).upper() for m in modalities] != ["AUDIO"]:
                return False
        if not profile.proactive_audio:
            return True
        proactivity = setup.get("proactivity") or {}
        if proactivity.get("proactive_audio") is False:
            return False
        if self.emu.settings.extended_thinking and not profile.thinking_level_refused:
            return bool(thinking.get("thinking_level") or thinking.get("thinking_budget"))
        return True

    async def _resolve_session(self, handle: str | None) -> EmulatedSession | None:
        emu = self.emu
        if not handle:
            if self.token is not None:
                if emu.now() >= self.token.new_session_until or self.token.uses_left <= 0:
                    await self.close(1008, CLOSE_TOKEN_USED)
                    return None
                self.token.uses_left -= 1
            session = emu.new_session()
        else:
            entry = emu.handles.get(handle)
            refuse = self.plan.refuse_resume or (
                emu.settings.reject_resume_code if emu.refuse_resumes else None
            )
            code = refuse or emu.settings.reject_resume_code
            if refuse or entry is None or emu.handle_expired(entry) or entry.session.capped:
                await self.close(code, CLOSE_INVALID_REASON)
                return None
            session = entry.session
            hold = emu.settings.old_socket_hold
            closed = session.last_closed_at
            if hold is not None and closed is not None \
                    and emu.now() < closed + hold * emu.settings.time_scale:
                emu.old_socket_refusals += 1
                await self.close(1011, CLOSE_OLD_SOCKET)  # it never saw that socket close
                return None
            active = session.active
            if active is not None and not active.done.is_set():
                if active._reading.is_set():
                    await self.close(1011, "The session is still connected on another stream.")
                    return None
                active.drop()  # a stalled stream (stop_reading) is superseded by the resume
            session.context = entry.context.snapshot()
            self.resumed = True
        session.active = self
        session.connections += 1
        self.session = session
        return session

    def _start_timers(self) -> None:
        emu = self.emu
        settings = emu.settings
        scale = settings.time_scale
        lifetime = (
            self.plan.lifetime * scale
            if self.plan.lifetime is not None
            else settings.seconds("connection_lifetime")
        )
        lead = min(settings.seconds("go_away_lead"), lifetime)
        if settings.go_away_on_connect is not None:
            # the field's early goAway: right after connecting, with a long timeLeft
            lifetime = lead = settings.go_away_on_connect * scale
        self._spawn(lambda: self._lifetime(lifetime, lead))
        session = self.session
        assert session is not None
        if session.compression is None:
            self._spawn(self._session_cap)
        if settings.hard_close_after is not None:
            clock = session.hard_close_clock or session.started_at
            at = clock + settings.hard_close_after * scale
            self._spawn(functools.partial(self._at, at, self._hard_close))
        if settings.idle_timeout is not None:
            self._spawn(self._idle_watch)
        if self.token is not None:
            self._spawn(functools.partial(
                self._at, self.token.expire_at,
                lambda: self.close(1008, CLOSE_TOKEN_EXPIRED),
            ))
        plan = self.plan
        faults: list[tuple[float | None, Callable[[], Awaitable[None]]]] = [
            (plan.drop_after, self._drop_now),
            (plan.close_after, lambda: self.close(plan.close_code, plan.close_reason)),
            (plan.garbage_after, self.send_garbage),
        ]
        for after, fault in faults:
            if after is not None:
                self._spawn(functools.partial(self._after, after * scale, fault))

    async def _drop_now(self) -> None:
        self.drop()

    async def _after(self, delay: float, action: Callable[[], Awaitable[None]]) -> None:
        await asyncio.sleep(delay)
        await action()

    async def _at(self, when: float, action: Callable[[], Awaitable[None]]) -> None:
        await asyncio.sleep(max(0.0, when - self.emu.now()))
        await action()

    async def _lifetime(self, lifetime: float, lead: float) -> None:
        await asyncio.sleep(max(0.0, lifetime - lead))
        await self.expire(lead)

    async def expire(self, lead: float) -> None:
        """`goAway` with `lead` seconds of notice now, the close when they have run out (the
        lifetime's end, or `ConnectionPlan.go_away_in_reply`)."""
        await self.send({"goAway": {"timeLeft": duration(lead)}})
        self._spawn(lambda: self._deadline(lead))

    async def _deadline(self, lead: float) -> None:
        if self.plan.silent_after_go_away:
            self.silence()
            return
        await asyncio.sleep(lead)
        await self.close(1011, CLOSE_DEADLINE)

    async def _session_cap(self) -> None:
        session = self.session
        assert session is not None
        while True:
            cap = self.emu.settings.seconds(
                "session_cap_video" if session.video_sent else "session_cap_audio"
            )
            left = session.started_at + cap - self.emu.now()
            if left <= 0:
                break
            await asyncio.sleep(min(left, 0.05 + left / 2))
        session.capped = True
        await self.close(1011, "Session duration limit reached.")

    async def _hard_close(self) -> None:
        if self.session is not None:
            self.session.hard_close_clock = self.emu.now()
            self.session.capped = self.session.capped or self.emu.settings.hard_close_ends_session
        await self.close(1011, CLOSE_HARD_LIMIT)

    async def _idle_watch(self) -> None:
        limit = self.emu.settings.seconds("idle_timeout")
        while True:  # input moves the deadline; look again when the last one would pass
            left = self.last_input_at + limit - self.emu.now()
            if left <= 0:
                break
            await asyncio.sleep(left)
        await self.close(1011, CLOSE_IDLE)

    async def _read_loop(self) -> None:
        while True:
            await self._reading.wait()
            msg = await self._recv()
            if msg is None:
                await self.close(CLOSE_INVALID, CLOSE_INVALID_REASON)
                return
            self.consumed += 1
            self.last_input_at = self.emu.now()
            if not await self.turns.consume(msg):
                await self.close(CLOSE_INVALID, CLOSE_INVALID_REASON)
                return

    async def issue_handle(self, partial_reply: str | None = None) -> None:
        """A resumable handle for the session's state now; mid-turn (3.x) it also holds the
        part of the reply streamed so far."""
        session = self.session
        assert session is not None
        state = session.context.snapshot()
        if partial_reply is not None:
            state.add(Turn(role="model", text=partial_reply, cut=True))
        handle = "emu-" + secrets.token_urlsafe(18)
        self.emu.handles[handle] = HandleEntry(
            session=session, context=state, issued_at=self.emu.now()
        )
        self.emu.issued_handles.append(handle)
        update: dict[str, Any] = {"newHandle": handle, "resumable": True}
        if self.transparent:
            update["lastConsumedClientMessageIndex"] = str(self.consumed)
        await self.send({"sessionResumptionUpdate": update})

    # -- frames -----------------------------------------------------------------------------------

    async def _recv(self) -> dict[str, Any] | None:
        raw = await self.ws.recv()
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            self.frames.append(Frame(direction="in", at=self.emu.now(), data={"raw": repr(raw)}))
            return None
        msg = normalize(data) if isinstance(data, dict) else {}
        if self.emu.settings.record_frames:
            self.frames.append(Frame(direction="in", at=self.emu.now(), data=msg))
        return msg

    async def send(self, message: dict[str, Any]) -> None:
        """Send one server message as JSON in a binary frame, like the service."""
        if self.silent or self.done.is_set():
            return
        data = json.dumps(message, separators=(",", ":")).encode()
        if len(data) >= _MAX_FRAME:
            raise ValueError("emulator frame over 1 MiB: split the reply")
        if self.emu.settings.record_frames:
            self.frames.append(Frame(direction="out", at=self.emu.now(), data=message))
        with contextlib.suppress(ConnectionClosed):
            await self.ws.send(data)

    async def _send_raw(self, data: bytes) -> None:
        self.frames.append(Frame(direction="out", at=self.emu.now(), data={"raw": repr(data)}))
        with contextlib.suppress(ConnectionClosed):
            await self.ws.send(data)

    def _spawn(self, make: Callable[[], Awaitable[None]]) -> None:
        async def guarded() -> None:
            with contextlib.suppress(ConnectionClosed):
                await make()

        self.track(asyncio.get_running_loop().create_task(guarded()))

    def track(self, task: asyncio.Task[None]) -> None:
        """Keep a task of this connection; it is cancelled when the connection ends."""
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _finish(self) -> None:
        self.closed_at = self.emu.now()
        self.cut_reply = self.turns.generating()
        if self.closed_code is None:
            self.closed_code = self.ws.close_code
            self.closed_reason = self.ws.close_reason
        self.done.set()
        current = asyncio.current_task()
        tasks = [t for t in self._tasks if t is not current]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self.session is not None and self.session.active is self:
            self.session.active = None
            self.session.last_closed_at = self.emu.now()
