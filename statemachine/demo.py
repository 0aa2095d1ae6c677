"""`python -m statemachine demo`: one complete session through every part of the lifecycle.

Without a key it runs against the embedded emulator with time scaled (a 5-minute connection lasts
3 s): text and audio turns, a tool call, goAway -> drain -> resume with input held and replayed,
an unexpected drop -> resume, compression, a handle the server refuses -> fresh session, close.
It prints the session as a story (see `story.py`); the audit log keeps every field.

Only with `--real` (needs a real key: `--api-key`, GEMINI_API_KEY or GOOGLE_API_KEY, and
network) does it run the same turns against the real service, and its first line says so; a key
in the environment alone never sends the demo to the real service. There the faults only the
emulator can inject are skipped, and the service decides when its goAway comes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import tempfile
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import attrs
from google import genai
from google.genai import types

from .aio.session import LiveSession, connect, websocket_args
from .audit import jsonl as auditlog
from .audit.signing import SigningKey
from .core.actions import ContextLost, Notice
from .core.policy import Limits, Policy, ReplayPolicy, RetryPolicy
from .core.records import AuditRecord
from .emulator import DEFAULT_MODEL, EmulatorSettings, LiveEmulator
from .emulator.profiles import profile_for
from .errors import OutputError
from .outputs import failed
from .story import Story
from .telemetry import Telemetry

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
    """The demo's application: tells the story, answers tool calls, re-seeds lost context."""

    def __init__(self, session: LiveSession, story: Story) -> None:
        self.session = session
        self.story = story
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
        self.story.notice(notice)

    async def _receive(self) -> None:
        async for message in self.session.receive():
            content = message.server_content
            if message.tool_call:
                for call in message.tool_call.function_calls or []:
                    answer = {"forecast": "sunny, 21 C"}
                    self.story.tool(call.name or "?", answer)
                    await self.session.send_tool_response(function_responses=[
                        types.FunctionResponse(id=call.id, name=call.name, response=answer)])
            if content and content.model_turn:
                for part in content.model_turn.parts or []:
                    self._text += part.text or ""
                    if part.inline_data and part.inline_data.data:
                        self._audio += len(part.inline_data.data)
            if content and content.output_transcription:  # what the audio says
                self._text += content.output_transcription.text or ""
            if content and content.turn_complete:
                if not content.interrupted:
                    reply = self._text or f"({self._audio} bytes of audio)"
                    self.replies.append(reply)
                    self.story.model(reply)
                self._text, self._audio = "", 0
                self._turn.set()

    async def say(self, text: str, *, turn_complete: bool = True) -> None:
        """Send one text input (echoed first, so every reply has its question)."""
        self.story.user(text if turn_complete else f"{text}   (context only, no reply wanted)")
        await self.session.send_client_content(
            turns=types.Content(role="user", parts=[types.Part(text=text)]),
            turn_complete=turn_complete)

    async def ask(self, text: str, *, within: float = 30.0) -> str:
        count = len(self.replies)
        await self.say(text)
        return await self.next_reply(count, within)

    async def ask_tool(self, text: str, model: str, *, within: float = 30.0) -> None:
        """Ask for a tool call and wait for the reply that uses its result: with a model whose
        tool calls do not block (3.x), the turn that asked ends first and the result comes in
        a turn of its own, so both are waited for here, under this step."""
        count = len(self.replies)
        await self.say(text)
        profile = profile_for(model)
        await self.next_reply(count + (1 if profile and profile.tools_non_blocking else 0),
                              within)

    async def next_reply(self, count: int, within: float = 30.0) -> str:
        async with asyncio.timeout(within):
            while len(self.replies) <= count:
                self._turn.clear()
                await self._turn.wait()
        return self.replies[count]

    async def speak(self, seconds: float) -> str:
        """Stream `seconds` of 16 kHz audio in 20 ms chunks, then end the audio stream."""
        self.story.user(f"({seconds:g} s of audio, in 20 ms chunks)")
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


async def run_emulated(story: Story, model: str = DEFAULT_MODEL,
                       telemetry: Telemetry | None = None) -> dict[str, Any]:
    """The demo against the embedded emulator, which speaks as `model`'s generation does (2.5:
    handles at turn boundaries; 3.x: mid-turn handles, interactionStatus)."""
    async with LiveEmulator(EMULATOR) as emu:
        story.line(f"The Live API emulator on {emu.base_url}, as {model}, time scaled by "
                   f"{SCALE:g}: a {EMULATOR.connection_lifetime / 60:g} min connection lasts "
                   f"{EMULATOR.connection_lifetime * SCALE:g} s.")
        return await _script(emu.client(**websocket_args(POLICY)), model, emu, story,
                             telemetry)


async def run_real(api_key: str, model: str, story: Story, key_source: str = "--api-key",
                   telemetry: Telemetry | None = None) -> dict[str, Any]:
    """Needs a real Gemini API key and network access."""
    story.line(f"The REAL Live API (--real, key from {key_source}), model {model}: this uses "
               "your quota; the faults only the emulator can inject are skipped.")
    client = genai.Client(api_key=api_key, http_options=types.HttpOptions(
        async_client_args=websocket_args()))
    return await _script(client, model, None, story, telemetry)


async def _script(client: genai.Client, model: str, emu: LiveEmulator | None,
                  story: Story, telemetry: Telemetry | None = None) -> dict[str, Any]:
    # audio out (3.8 speaks only), with its transcription for the story
    config = types.LiveConnectConfig(
        response_modalities=[types.Modality.AUDIO], tools=TOOLS,
        output_audio_transcription=types.AudioTranscriptionConfig(),
        system_instruction="You are a concise assistant.")
    conversation: Conversation | None = None

    def on_notice(notice: Notice) -> None:
        if conversation is not None:
            conversation.notice(notice)

    def on_event(record: AuditRecord) -> None:
        story.record(record)

    policy = POLICY if emu is not None else Policy()
    story.headline("Open the session")
    async with connect(client, model=model, config=config, policy=policy,
                       on_notice=on_notice, on_event=on_event, telemetry=telemetry) as session:
        conversation = c = Conversation(session, story)
        story.headline("A text turn")
        await c.ask("Hello, my name is Ada.")
        story.headline("An audio turn")
        await c.speak(0.5)
        story.headline("A tool call: the model asks, the application answers")
        await c.ask_tool("What is the weather? Please call get_weather.", model)
        if emu is not None:
            story.headline("goAway: the session drains, rotates at a safe point, and holds "
                           "what is sent meanwhile")
            await c.wait_state("draining")
            reply = await c.ask("Sent while draining: do you still know my name?")
            assert "Ada" in reply, reply
            story.headline("The connection drops mid-turn: resume, and replay the unanswered "
                           "input")
            count = len(c.replies)
            await c.say("Tell me a story.")
            await asyncio.sleep(0.01)
            story.line("(the emulator cuts the connection without a close frame)")
            emu.connections[-1].drop()
            await c.next_reply(count)
            story.headline("A long conversation: the server compresses the context")
            for i in range(12):
                if session.state == "compressed":
                    break
                await c.ask(f"Here is a long remark number {i} to fill the context window.")
            story.headline("The server refuses the old handle (close 1007 on resume): a fresh "
                           "session, context re-seeded")
            story.line("(the emulator now treats every handle as expired, then cuts the "
                       "connection)")
            emu.settings = attrs.evolve(emu.settings, handle_validity=0.0)
            emu.connections[-1].drop()
            await c.wait_state("connecting")
            assert c.lost, "the application must be told that context was lost"
            await c.say("Context: my name is Ada.", turn_complete=False)
            await c.ask("Do you know my name?")
        story.headline("Close")
        summary = session.core.snapshot()
        await c.stop()
    return summary


def open_log(log_path: str | None, force: bool = False) -> Path:
    """The audit log's file, created here: `log_path` as a new file (replaced only with
    `force`), or, by default, a new file of its own in the temp folder, so two demos at once
    never share or delete each other's log."""
    if log_path is None:
        folder = os.environ.get("TMPDIR") or "the temp folder"
        try:
            folder = tempfile.gettempdir()
            fd, name = tempfile.mkstemp(prefix="statemachine-demo-", suffix=".jsonl")
        except OSError as exc:
            raise OutputError(f"cannot create the demo's audit log in {folder}: "
                              f"{exc.strerror or exc} (pass --log FILE, or set TMPDIR to a "
                              "folder you can write to)") from exc
        os.close(fd)
        return Path(name)
    path = Path(log_path)
    try:
        if path.parent != Path():
            path.parent.mkdir(parents=True, exist_ok=True)
        if force and path.is_file():
            path.unlink()
        with open(path, "x", encoding="utf-8"):
            pass
    except FileExistsError:
        raise OutputError(f"{path} exists: pass --force to overwrite it, or choose another "
                          "--log") from None
    except OSError as exc:
        raise failed(path, exc) from exc
    return path


def main(log_path: str | None, api_key: str | None, model: str = DEFAULT_MODEL,
         signing_key: SigningKey | None = None, *, key_source: str = "--api-key",
         force: bool = False, telemetry: str | None = None) -> int:
    """Run the demo: against the embedded emulator, or, only when `api_key` is given (the
    command line passes it only with --real), against the real service. `telemetry`:
    "console" or a file for the session's OpenTelemetry spans and metrics."""
    export = None
    if telemetry is not None:
        from .telemetry.export import DemoExport

        export = DemoExport(telemetry)
    reporting = export.telemetry if export is not None else None
    path = open_log(log_path, force)
    try:
        writer = auditlog.configure(path, console=False, signing_key=signing_key)
    except OSError as exc:
        raise failed(path, exc) from exc
    story = Story()
    try:
        script = run_real(api_key, model, story, key_source, reporting) if api_key else \
            run_emulated(story, model, reporting)
        summary = asyncio.run(_interruptible(script, story))
    finally:
        if writer is not None:
            writer.close()
    story.ending(summary, path)
    if export is not None:
        for line in export.finish():
            print(line)
    return 0


async def _interruptible(script: Coroutine[Any, Any, dict[str, Any]], story: Story,
                         ) -> dict[str, Any]:
    """Run the script; Ctrl-C silences the story at once (what the session does while it
    unwinds is in the audit log, not narrated as if it were part of the demo), then stops it
    with KeyboardInterrupt."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    interrupted = False

    def on_interrupt() -> None:
        nonlocal interrupted
        interrupted = True
        story.silence()
        task.cancel()

    loop.add_signal_handler(signal.SIGINT, on_interrupt)
    try:
        return await script
    except asyncio.CancelledError:
        if interrupted:
            raise KeyboardInterrupt from None
        raise
    finally:
        loop.remove_signal_handler(signal.SIGINT)


def api_key_from_env() -> tuple[str | None, str]:
    """A real key from the environment (for --real only) and the variable it came from."""
    for name in ("GEMINI_API_KEY", "GOOGLE_API_KEY"):
        if os.environ.get(name):
            return os.environ[name], name
    return None, ""
