"""`python -m statemachine demo`: one complete session through every part of the lifecycle.

Without a key it runs against the embedded emulator with time scaled (a 5-minute connection lasts
3 s): text and audio turns, a tool call, goAway -> drain -> resume with input held and replayed,
an unexpected drop -> resume, compression, an expired handle -> fresh session, close.

With `--api-key` or GEMINI_API_KEY (needs a real key and network) it runs the same turns against
the real service; the faults only the emulator can inject are skipped, and the service decides
when its goAway comes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
from pathlib import Path
from typing import Any

import attrs
import structlog
from google import genai
from google.genai import types

from .aio.session import LiveSession, connect, websocket_args
from .audit import jsonl as auditlog
from .audit.signing import SigningKey
from .core.actions import ContextLost, Notice
from .core.policy import Limits, Policy, ReplayPolicy, RetryPolicy
from .emulator import DEFAULT_MODEL, EmulatorSettings, LiveEmulator

log = structlog.get_logger("statemachine.demo")

SCALE = 0.01
EMULATOR = EmulatorSettings(
    time_scale=SCALE, connection_lifetime=300.0, go_away_lead=50.0, chunk_interval=3.0
)
POLICY = Policy(
    limits=Limits(go_away_lead=50.0, go_away_margin=5.0, setup_timeout=500.0),
    retry=RetryPolicy(base_delay=5.0, max_delay=100.0),
    replay=ReplayPolicy(audio_staleness=100.0),
    compression_trigger_tokens=400,
    compression_target_tokens=200,
).scaled(SCALE)
TOOLS: list[types.ToolUnion] = [types.Tool(function_declarations=[types.FunctionDeclaration(
    name="get_weather", description="The weather where the user is.")])]


class Conversation:
    """The demo's application: prints replies, answers tool calls, re-seeds lost context."""

    def __init__(self, session: LiveSession) -> None:
        self.session = session
        self.replies: list[str] = []
        self.lost: list[ContextLost] = []
        self._text = ""
        self._audio = 0
        self._turn = asyncio.Event()
        self._events = session.events()
        self._task = asyncio.get_running_loop().create_task(self._receive())

    def notice(self, notice: Notice) -> None:
        if isinstance(notice, ContextLost):
            self.lost.append(notice)
        log.info("notice", notice=type(notice).__name__, **_fields(notice))

    async def _receive(self) -> None:
        async for message in self.session.receive():
            content = message.server_content
            if message.tool_call:
                for call in message.tool_call.function_calls or []:
                    log.info("tool call", name=call.name)
                    await self.session.send_tool_response(function_responses=[
                        types.FunctionResponse(id=call.id, name=call.name,
                                               response={"forecast": "sunny, 21 C"})])
            if content and content.model_turn:
                for part in content.model_turn.parts or []:
                    self._text += part.text or ""
                    if part.inline_data and part.inline_data.data:
                        self._audio += len(part.inline_data.data)
            if content and content.turn_complete:
                if not content.interrupted:
                    reply = self._text or f"<{self._audio} bytes of audio>"
                    self.replies.append(reply)
                    log.info("reply", text=reply)
                self._text, self._audio = "", 0
                self._turn.set()

    async def ask(self, text: str, *, within: float = 30.0) -> str:
        log.info("user", text=text)
        count = len(self.replies)
        await self.session.send_client_content(
            turns=types.Content(role="user", parts=[types.Part(text=text)]), turn_complete=True)
        return await self.next_reply(count, within)

    async def next_reply(self, count: int, within: float = 30.0) -> str:
        async with asyncio.timeout(within):
            while len(self.replies) <= count:
                self._turn.clear()
                await self._turn.wait()
        return self.replies[count]

    async def speak(self, seconds: float) -> str:
        """Stream `seconds` of 16 kHz audio in 20 ms chunks, then end the audio stream."""
        log.info("user", audio_seconds=seconds)
        count = len(self.replies)
        chunk = bytes(640)
        for _ in range(int(seconds / 0.02)):
            await self.session.send_realtime_input(
                audio=types.Blob(data=chunk, mime_type="audio/pcm;rate=16000"))
        await self.session.send_realtime_input(audio_stream_end=True)
        return await self.next_reply(count)

    async def wait_state(self, state: str, within: float = 30.0) -> None:
        async with asyncio.timeout(within):
            async for record in self._events:
                if record.get("kind") == "transition" and record.get("dest") == state:
                    return

    async def stop(self) -> None:
        await self.session.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._task, 5)


def _fields(notice: Notice) -> dict[str, Any]:
    return {k: v for k, v in attrs.asdict(notice, recurse=False).items() if k != "unsent"}


async def run_emulated() -> dict[str, Any]:
    async with LiveEmulator(EMULATOR) as emu:
        log.info("emulator", base_url=emu.base_url, note="time scaled: 1 emulated s = 10 ms")
        return await _script(emu.client(**websocket_args(POLICY)), DEFAULT_MODEL, emu)


async def run_real(api_key: str, model: str) -> dict[str, Any]:
    """Needs a real Gemini API key and network access."""
    client = genai.Client(api_key=api_key, http_options=types.HttpOptions(
        async_client_args=websocket_args()))
    return await _script(client, model, None)


async def _script(client: genai.Client, model: str, emu: LiveEmulator | None) -> dict[str, Any]:
    config = types.LiveConnectConfig(
        response_modalities=[types.Modality.TEXT], tools=TOOLS,
        system_instruction="You are a concise assistant.")
    conversation: Conversation | None = None

    def on_notice(notice: Notice) -> None:
        if conversation is not None:
            conversation.notice(notice)

    policy = POLICY if emu is not None else Policy()
    async with connect(client, model=model, config=config, policy=policy,
                       on_notice=on_notice) as session:
        conversation = c = Conversation(session)
        log.info("step", step="1. text turn")
        await c.ask("Hello, my name is Ada.")
        log.info("step", step="2. audio turn")
        await c.speak(0.5)
        log.info("step", step="3. tool call")
        await c.ask("What is the weather? Please call get_weather.")
        if emu is not None:
            log.info("step", step="4. goAway: drain, rotate at the safe point, input held")
            await c.wait_state("draining")
            reply = await c.ask("Sent while draining: do you still know my name?")
            assert "Ada" in reply, reply
            log.info("step", step="5. an unexpected drop mid-reply: resume and replay")
            count = len(c.replies)
            await session.send_client_content(
                turns=types.Content(role="user", parts=[types.Part(text="Tell me a story.")]))
            await asyncio.sleep(0.01)
            emu.connections[-1].drop()
            await c.next_reply(count)
            log.info("step", step="6. a long conversation: the server compresses the context")
            for i in range(12):
                if session.state == "compressed":
                    break
                await c.ask(f"Here is a long remark number {i} to fill the context window.")
            log.info("step", step="7. the handle expires: a fresh session, context re-seeded")
            emu.settings = attrs.evolve(emu.settings, handle_validity=0.0)
            emu.connections[-1].drop()
            await c.wait_state("connecting")
            assert c.lost, "the application must be told that context was lost"
            await session.send_client_content(turns=types.Content(
                role="user", parts=[types.Part(text="Context: my name is Ada.")]),
                turn_complete=False)
            await c.ask("Do you know my name?")
        log.info("step", step="8. close")
        summary = session.core.snapshot()
        await c.stop()
    return summary


def main(log_path: str | None, api_key: str | None, model: str,
         signing_key: SigningKey | None = None) -> int:
    path = Path(log_path) if log_path else Path(tempfile.gettempdir()) / "statemachine-demo.jsonl"
    if path.exists():
        path.unlink()
    writer = auditlog.configure(path, signing_key=signing_key)
    try:
        script = run_real(api_key, model) if api_key else run_emulated()
        summary = asyncio.run(script)
    finally:
        if writer is not None:
            writer.close()
    counters = summary["counters"]
    print(f"\nsession {summary['session']} ended; audit log (JSON Lines): {path}")
    print("  " + ", ".join(f"{k}={v}" for k, v in counters.items()))
    return 0


def api_key_from_env() -> str | None:
    return os.environ.get("GEMINI_API_KEY") or None
