"""One emulated Live API connection: handshake, the scripted model's turns, resumption handles,
connection and session limits, and faults on demand. Everything it sends or receives is recorded."""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import functools
import json
import re
import secrets
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import attrs
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from .model import Context, Turn, reply_audio, split
from .wire import (
    CLOSE_DEADLINE,
    CLOSE_INVALID,
    close_reason,
    duration,
    normalize,
)

if TYPE_CHECKING:
    from . import LiveEmulator

_MODEL_RE = re.compile(r"(?:^|/)models/([^/]+)$")
_TOOL_RE = re.compile(r"\bcall (\w+)")
#: "firehose N": N one-character chunks with no pause (for throughput measurements)
_FIREHOSE_RE = re.compile(r"^firehose (\d+)$")
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
    #: drop the connection (1006) instead of sending the n-th handle issued after a turn, so the
    #: client holds a reply whose covering handle never came
    drop_at_turn_handle: int | None = None


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


@attrs.define(kw_only=True)
class HandleEntry:
    session: EmulatedSession
    context: Context
    issued_at: float


class Connection:
    """Server side of one WebSocket. Tests reach it as `emu.connections[i]` to inject faults."""

    def __init__(
        self, emu: LiveEmulator, ws: ServerConnection, number: int, plan: ConnectionPlan
    ) -> None:
        self.emu = emu
        self.ws = ws
        self.number = number
        self.plan = plan
        self.path = ws.request.path if ws.request else ""
        self.vertex = "aiplatform" in self.path
        self.frames: list[Frame] = []
        self.session: EmulatedSession | None = None
        self.resumed = False
        self.transparent = False
        self.resumption = False
        self.audio_out = False
        self.tools: set[str] = set()
        self.consumed = 0  # client messages consumed on this connection (setup is 0)
        self.silent = False
        self.closed_code: int | None = None
        self.closed_reason: str | None = None
        self.opened_at = emu.now()
        self.closed_at: float | None = None
        self.setup_sent = asyncio.Event()
        self.done = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._generation: asyncio.Task[None] | None = None
        self._tool_wait: asyncio.Future[dict[str, Any]] | None = None
        self._call_ids = 0
        self._turn_handles = 0

    # -- faults and controls, for tests -----------------------------------------------------------

    def drop(self) -> None:
        """Abort the TCP connection without a close frame: the client sees 1006."""
        self.closed_code, self.closed_reason = 1006, "dropped"
        self.ws.transport.abort()

    async def close(self, code: int, reason: str = "") -> None:
        self.closed_code, self.closed_reason = code, close_reason(reason)
        await self.ws.close(code, close_reason(reason))

    async def go_away(self, time_left: float) -> None:
        """Send `goAway` now; `time_left` in emulated seconds (scaled)."""
        scaled = time_left * self.emu.settings.time_scale
        await self.send({"goAway": {"timeLeft": duration(scaled)}})

    def silence(self) -> None:
        """Stop sending anything; keep the socket open."""
        self.silent = True

    async def send_garbage(self) -> None:
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

    async def _handshake(self) -> bool:
        setup_msg = await self._recv()
        if setup_msg is None or "setup" not in setup_msg:
            await self.close(CLOSE_INVALID, "Request contains an invalid argument.")
            return False
        setup = setup_msg["setup"] or {}
        model = str(setup.get("model", ""))
        match = _MODEL_RE.search(model)
        name = match.group(1) if match else model
        if not self.emu.knows_model(name):
            await self.close(
                1008,
                f"models/{name} is not found for API version v1beta, or is not supported "
                "for bidiGenerateContent.",
            )
            return False
        resumption = setup.get("session_resumption")
        self.resumption = resumption is not None
        self.transparent = bool((resumption or {}).get("transparent"))
        handle = (resumption or {}).get("handle")
        session = await self._resolve_session(handle)
        if session is None:
            return False
        self._configure(session, setup)
        if self.plan.no_setup:
            await self.ws.wait_closed()
            return False
        delay = self.plan.setup_delay if self.plan.setup_delay is not None else 0.0
        delay = delay * self.emu.settings.time_scale + self.emu.settings.seconds("setup_delay")
        if delay:
            await asyncio.sleep(delay)
        await self.send({"setupComplete": {"sessionId": session.id} if self.vertex else {}})
        self.setup_sent.set()
        if self.resumption and self.emu.settings.handle_on_setup:
            await self._issue_handle()
        return True

    async def _resolve_session(self, handle: str | None) -> EmulatedSession | None:
        emu = self.emu
        if not handle:
            session = emu.new_session()
        else:
            entry = emu.handles.get(handle)
            refuse = self.plan.refuse_resume or (
                emu.settings.reject_resume_code if emu.refuse_resumes else None
            )
            code = refuse or emu.settings.reject_resume_code
            if refuse or entry is None or emu.handle_expired(entry) or entry.session.capped:
                await self.close(code, "Request contains an invalid argument.")
                return None
            session = entry.session
            if session.active is not None and not session.active.done.is_set():
                await self.close(1011, "The session is still connected on another stream.")
                return None
            session.context = entry.context.snapshot()
            self.resumed = True
        session.active = self
        session.connections += 1
        self.session = session
        return session

    def _configure(self, session: EmulatedSession, setup: dict[str, Any]) -> None:
        generation = setup.get("generation_config") or {}
        modalities = generation.get("response_modalities") or setup.get("response_modalities")
        self.audio_out = [str(m).upper() for m in (modalities or ["AUDIO"])] == ["AUDIO"]
        for tool in setup.get("tools") or []:
            for decl in tool.get("function_declarations") or []:
                self.tools.add(decl.get("name", ""))
        system = setup.get("system_instruction")
        if system and not self.resumed:
            session.context.system = " ".join(
                p.get("text", "") for p in (system.get("parts") or [])
            )
        cwc = setup.get("context_window_compression")
        if cwc is not None:
            trigger = int(cwc.get("trigger_tokens") or self.emu.settings.context_window * 0.8)
            window = cwc.get("sliding_window") or {}
            target = int(window.get("target_tokens") or trigger // 2)
            session.compression = (trigger, target)
        elif not self.resumed:
            session.compression = None

    def _start_timers(self) -> None:
        emu = self.emu
        scale = emu.settings.time_scale
        lifetime = (
            self.plan.lifetime * scale
            if self.plan.lifetime is not None
            else emu.settings.seconds("connection_lifetime")
        )
        lead = min(emu.settings.seconds("go_away_lead"), lifetime)
        self._spawn(lambda: self._lifetime(lifetime, lead))
        if self.session is not None and self.session.compression is None:
            self._spawn(self._session_cap)
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

    async def _lifetime(self, lifetime: float, lead: float) -> None:
        await asyncio.sleep(max(0.0, lifetime - lead))
        await self.send({"goAway": {"timeLeft": duration(lead)}})
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

    async def _read_loop(self) -> None:
        while True:
            msg = await self._recv()
            if msg is None:
                await self.close(CLOSE_INVALID, "Request contains an invalid argument.")
                return
            self.consumed += 1
            await self._consume(msg)

    async def _consume(self, msg: dict[str, Any]) -> None:
        session = self.session
        assert session is not None
        if "client_content" in msg:
            content = msg["client_content"] or {}
            turns = content.get("turns") or []
            texts: list[str] = []
            for turn in turns:
                role = turn.get("role", "user")
                text = "".join(p.get("text", "") for p in turn.get("parts") or [])
                if content.get("turn_complete") and role == "user":
                    texts.append(text)
                else:
                    session.context.add(Turn(role=role, text=text))
            if content.get("turn_complete"):
                if self.emu.settings.track_inputs:
                    session.context.consumed.extend("t:" + t for t in texts)
                await self._start_turn(" ".join(texts))
        elif "realtime_input" in msg:
            await self._realtime(msg["realtime_input"] or {})
        elif "tool_response" in msg:
            responses = (msg["tool_response"] or {}).get("function_responses") or []
            if self._tool_wait is not None and not self._tool_wait.done():
                self._tool_wait.set_result({"responses": responses})
            else:
                session.context.add(Turn(role="user", tool={"responses": responses}))
        else:
            await self.close(CLOSE_INVALID, "Request contains an invalid argument.")

    async def _realtime(self, rt: dict[str, Any]) -> None:
        session = self.session
        assert session is not None
        ctx = session.context
        if rt.get("audio") is not None:
            data = _b64(rt["audio"].get("data", ""))
            ctx.pending_audio += len(data)
            if self.emu.settings.track_inputs:
                ctx.consumed.append("a:" + data[:8].hex())
        if rt.get("media_chunks"):
            for chunk in rt["media_chunks"]:
                data = _b64(chunk.get("data", ""))
                ctx.pending_audio += len(data)
                if self.emu.settings.track_inputs:
                    ctx.consumed.append("a:" + data[:8].hex())
        if rt.get("video") is not None:
            ctx.pending_video += 1
            if not session.video_sent:
                session.video_sent = True
        if rt.get("activity_start") is not None and self._generating():
            await self._interrupt()
        if rt.get("text"):
            if self.emu.settings.track_inputs:
                ctx.consumed.append("t:" + str(rt["text"]))
            await self._start_turn(str(rt["text"]))
        if (rt.get("audio_stream_end") or rt.get("activity_end") is not None) and (
            ctx.pending_audio or ctx.pending_video
        ):
            await self._start_turn(None)

    def _generating(self) -> bool:
        return self._generation is not None and not self._generation.done()

    async def _interrupt(self) -> None:
        assert self._generation is not None
        self._generation.cancel()
        await asyncio.gather(self._generation, return_exceptions=True)
        await self.send({"serverContent": {"interrupted": True}})
        await self.send({"serverContent": {"turnComplete": True}})

    async def _start_turn(self, text: str | None) -> None:
        if self._generating():
            await self._interrupt()
        session = self.session
        assert session is not None
        ctx = session.context
        if text is None:
            n_bytes, frames = ctx.pending_audio, ctx.pending_video
            ctx.add(Turn(role="user", audio_bytes=n_bytes, video_frames=frames))
            reply = ctx.reply_to_audio(n_bytes)
        else:
            ctx.add(Turn(role="user", text=text, audio_bytes=ctx.pending_audio))
            reply = ctx.reply_to(text)
        ctx.pending_audio = ctx.pending_video = 0
        task = asyncio.get_running_loop().create_task(self._generate(text, reply))
        self._generation = task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _generate(self, text: str | None, reply: str) -> None:
        session = self.session
        assert session is not None
        ctx = session.context
        emu = self.emu
        if session.compression is not None:
            ctx.compress(*session.compression)
        prompt_tokens = ctx.tokens
        if self.resumption:
            await self.send({"sessionResumptionUpdate": {"newHandle": "", "resumable": False}})
        firehose = _FIREHOSE_RE.match(text or "")
        if firehose:
            reply = "x" * int(firehose.group(1))
            chunks = [reply[i:i + 1] for i in range(len(reply))]
            for chunk in chunks:
                await self.send({"serverContent": {"modelTurn": {"parts": [{"text": chunk}]}}})
            ctx.add(Turn(role="model", text="firehose"))
            await self.send({"serverContent": {"turnComplete": True}})
            return
        call = _TOOL_RE.search(text or "")
        if call and call.group(1) in self.tools:
            reply = await self._call_tool(call.group(1), reply)
        sent = ""
        try:
            for chunk in split(reply, emu.settings.chunks_per_reply):
                part: dict[str, Any]
                if self.audio_out:
                    data = base64.b64encode(reply_audio(chunk)).decode()
                    part = {"inlineData": {"mimeType": "audio/pcm;rate=24000", "data": data}}
                else:
                    part = {"text": chunk}
                await self.send({"serverContent": {"modelTurn": {"parts": [part]}}})
                sent += chunk
                await asyncio.sleep(emu.settings.seconds("chunk_interval"))
        finally:
            ctx.add(Turn(role="model", text=sent))
        await self.send({"serverContent": {"generationComplete": True}})
        await asyncio.sleep(emu.settings.seconds("playback_delay"))
        usage = {
            "promptTokenCount": prompt_tokens,
            "responseTokenCount": max(1, len(reply) // 4),
            "totalTokenCount": prompt_tokens + max(1, len(reply) // 4),
        }
        await self.send({"serverContent": {"turnComplete": True}, "usageMetadata": usage})
        self._turn_handles += 1
        if self.plan.drop_at_turn_handle == self._turn_handles:
            self.drop()
            return
        if self.resumption:
            await self._issue_handle()

    async def _call_tool(self, name: str, reply: str) -> str:
        session = self.session
        assert session is not None
        self._call_ids += 1
        call_id = f"call-{self.number}-{self._call_ids}"
        self._tool_wait = asyncio.get_running_loop().create_future()
        await self.send(
            {"toolCall": {"functionCalls": [{"id": call_id, "name": name, "args": {}}]}}
        )
        if self.resumption:
            await self.send({"sessionResumptionUpdate": {"newHandle": "", "resumable": False}})
        result = await self._tool_wait
        self._tool_wait = None
        session.context.add(Turn(role="user", tool=result))
        responses = result.get("responses") or [{}]
        result_text = json.dumps(responses[0].get("response"), sort_keys=True)
        return f"{name} returned {result_text}. {reply}"

    async def _issue_handle(self) -> None:
        session = self.session
        assert session is not None
        handle = "emu-" + secrets.token_urlsafe(18)
        self.emu.handles[handle] = HandleEntry(
            session=session, context=session.context.snapshot(), issued_at=self.emu.now()
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

        task = asyncio.get_running_loop().create_task(guarded())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _finish(self) -> None:
        self.closed_at = self.emu.now()
        self.done.set()
        if self._tool_wait is not None and not self._tool_wait.done():
            self._tool_wait.cancel()
        current = asyncio.current_task()
        tasks = [t for t in self._tasks if t is not current]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self.closed_code is None:
            self.closed_code = self.ws.close_code
            self.closed_reason = self.ws.close_reason
        if self.session is not None and self.session.active is self:
            self.session.active = None
            self.session.last_closed_at = self.emu.now()


def _b64(data: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))
    except (binascii.Error, ValueError):
        return base64.b64decode(data + "=" * (-len(data) % 4))
